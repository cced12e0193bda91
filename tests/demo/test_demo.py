"""``silverline demo``: its run report and conservation check, and the whole demo end to end.

The unit tests feed :mod:`jobs.demo.report` hand-built files and batches; every
expected number is written by hand. The integration tests run the demo in its
own process (its own JVM and moto server) and check its exit code and output,
and, where the lake is kept, the lake itself with pyiceberg and the
simulator's ground truth.
"""

from __future__ import annotations

import json
import re
import subprocess
import sys
from pathlib import Path
from typing import Any

import pytest

from jobs.demo.report import Conservation, bronze_bodies, conservation, read_batches, table_activity
from jobs.simulate import DATASETS, GroundTruth, tenant_names
from tests import streamkit as kit
from tests.event_cases import TEST_EVENT, s3_message, s3_record

# ---- unit: jobs.demo.report ------------------------------------------------------------------------

TWO_RECORDS = s3_message(s3_record("acme/raw/orders/a.csv"), s3_record("acme/raw/orders/b.csv"))
ONE_RECORD = s3_message(s3_record("acme/raw/clicks/c.jsonl"))
NOT_JSON = "{not json"
NO_OUTCOMES = {o: 0 for o in ("applied", "duplicate", "stale", "ignored", "test")} | {
    o: 0 for o in ("parked", "quarantined", "rejected", "deferred", "dropped")
}


def write_lines(path: Path, items: list[dict[str, Any]], *, blank_line: bool = False) -> None:
    path.parent.mkdir(parents=True, exist_ok=True)
    text = "".join(json.dumps(item) + "\n" for item in items)
    path.write_text(text + ("\n" if blank_line else ""), encoding="utf-8")


def batch(batch_id: int, records_in: int, retried_in: int = 0, balanced: bool = True, **outcomes: int):
    """One batch as the JSON-lines metrics copy holds it (only the fields the report reads)."""
    return {
        "batch_id": batch_id,
        "records_in": records_in,
        "retried_in": retried_in,
        "balanced": balanced,
        **NO_OUTCOMES,
        **outcomes,
    }


# Three messages published; m2 landed twice (the stream's dedupe drops its second copy).
# 5 records landed = 1 dropped + 4 to the writer; 4 + 1 retried = 2 applied + 1 stale + 1 rejected + 1 deferred.
BRONZE = [("m1", TWO_RECORDS), ("m2", ONE_RECORD), ("m3", NOT_JSON), ("m2", ONE_RECORD)]
BATCHES = [
    batch(0, 3, applied=1, rejected=1, deferred=1),
    batch(1, 1, stale=1),
    batch(-1, 0, retried_in=1, applied=1),
]


def balanced_check(**changes: Any) -> Conservation:
    args: dict[str, Any] = {
        "sent": 3,
        "bronze": BRONZE,
        "queue_left": 0,
        "dlq": 0,
        "batches": BATCHES,
        "dedupe_dropped": 1,
    }
    return conservation(**(args | changes))


@pytest.mark.unit
def test_read_batches_reads_every_jsonl_file_stream_batches_first_then_retry_passes(tmp_path):
    metrics = tmp_path / "metrics" / "batches"
    write_lines(metrics / "query=q1" / "batch-00000000000000000002.jsonl", [{"batch_id": 2}])
    write_lines(
        metrics / "query=q1" / "batch-00000000000000000000.jsonl",
        [{"batch_id": 1}, {"batch_id": 0}],
        blank_line=True,
    )
    write_lines(metrics / "query=q1" / "retry-00000000000000000003.jsonl", [{"batch_id": -3}])
    write_lines(metrics / "query=q2" / "retry-00000000000000000001.jsonl", [{"batch_id": -1}])
    write_lines(metrics / "query=q2" / "batch-00000000000000000010.jsonl", [{"batch_id": 10, "x": None}])
    (metrics / "query=q1" / "notes.txt").write_text('{"batch_id": 99}\n', encoding="utf-8")

    got = read_batches(metrics)

    assert [b["batch_id"] for b in got] == [0, 1, 2, 10, -1, -3]
    assert got[3] == {"batch_id": 10, "x": None}


@pytest.mark.unit
def test_read_batches_of_a_missing_directory_is_empty(tmp_path):
    assert read_batches(tmp_path / "nothing-here") == []


@pytest.mark.unit
def test_bronze_bodies_reads_landed_lines_in_path_order_and_skips_tmp_files(tmp_path):
    bronze = tmp_path / "bronze"
    write_lines(bronze / "dt=2024-03-02" / "b.jsonl", [{"message_id": "m3", "body": None}])
    write_lines(
        bronze / "dt=2024-03-01" / "a.jsonl",
        [{"message_id": "m1", "body": "one", "received_at": "x"}, {"message_id": "m2"}],
        blank_line=True,
    )
    write_lines(bronze / "_tmp" / "c.jsonl", [{"message_id": "in-flight", "body": "tmp"}])
    write_lines(bronze / "dt=2024-03-01" / "_tmp" / "d.jsonl", [{"message_id": "in-flight-2", "body": "t"}])

    assert bronze_bodies(bronze) == [("m1", "one"), ("m2", None), ("m3", None)]


@pytest.mark.unit
def test_table_activity_sums_each_tables_counters_over_all_batches():
    orders_0 = dict(files=3, rows_read=30, rows_written=25, applied=2, quarantined=1, status="committed")
    clicks_0 = dict(files=1, rows_written=4, applied=1, stale=2, status="committed")
    orders_1 = dict(files=2, rows_written=7, applied=1, deleted=1, duplicate=3, deferred=1, ignored=5)
    globex_1 = dict(files=0, deleted=2, parked=1, applied=0)
    batches = [
        {"batch_id": 0, "tables": {"acme/orders": orders_0, "acme/clicks": clicks_0}},
        {"batch_id": 1, "tables": None},
        {"batch_id": 2},
        {"batch_id": -1, "tables": {"acme/orders": orders_1, "globex-eu/orders": globex_1}},
    ]

    got = table_activity(batches)

    assert sorted(got) == [("acme", "clicks"), ("acme", "orders"), ("globex-eu", "orders")]
    orders = got[("acme", "orders")]
    assert (orders.tenant, orders.dataset) == ("acme", "orders")
    assert (orders.files, orders.rows_written, orders.deleted) == (5, 32, 1)
    assert dict(orders.outcomes) == {"applied": 3, "quarantined": 1, "duplicate": 3, "deferred": 1}
    clicks = got[("acme", "clicks")]
    assert (clicks.files, clicks.rows_written, clicks.deleted) == (1, 4, 0)
    assert dict(clicks.outcomes) == {"applied": 1, "stale": 2}
    globex = got[("globex-eu", "orders")]
    assert (globex.files, globex.rows_written, globex.deleted) == (0, 0, 2)
    assert dict(globex.outcomes) == {"parked": 1}


@pytest.mark.unit
def test_table_activity_of_no_batches_is_empty():
    assert table_activity([]) == {}


@pytest.mark.unit
def test_conservation_of_a_balanced_run_read_from_its_files(tmp_path):
    ops = tmp_path / "ops"
    write_lines(
        ops / "bronze" / "dt=2024-03-01" / "f1.jsonl",
        [{"message_id": "m1", "body": TWO_RECORDS}, {"message_id": "m2", "body": ONE_RECORD}],
    )
    write_lines(
        ops / "bronze" / "dt=2024-03-01" / "f2.jsonl",
        [{"message_id": "m3", "body": NOT_JSON}, {"message_id": "m2", "body": ONE_RECORD}],
    )
    write_lines(ops / "bronze" / "_tmp" / "f3.jsonl", [{"message_id": "m9", "body": ONE_RECORD}])
    write_lines(ops / "metrics" / "batches" / "query=q" / "batch-0.jsonl", BATCHES[:2])
    write_lines(ops / "metrics" / "batches" / "query=q" / "retry-1.jsonl", BATCHES[2:])

    check = conservation(
        sent=3,
        bronze=bronze_bodies(ops / "bronze"),
        queue_left=0,
        dlq=0,
        batches=read_batches(ops / "metrics" / "batches"),
        dedupe_dropped=1,
    )

    assert check == Conservation(
        sent=3,
        landed=3,
        left_in_queue=0,
        in_dlq=0,
        records_landed=5,
        dedupe_dropped=1,
        records_in=4,
        retried_in=1,
        outcomes=NO_OUTCOMES | {"applied": 2, "stale": 1, "rejected": 1, "deferred": 1},
        unbalanced_batches=[],
    )
    assert check.messages_ok and check.records_ok and check.ok
    messages, records = check.lines()
    assert "3 published = 3 landed in bronze" in messages and messages.endswith("[ok]")
    assert "5 landed = 1 dropped by the watermark dedupe + 4 to the writer" in records
    assert "2 applied + 1 stale + 1 rejected + 1 deferred" in records and records.endswith("[ok]")


@pytest.mark.unit
def test_conservation_counts_test_events_and_malformed_bodies_as_one_record_each():
    check = conservation(
        sent=3,
        bronze=[("t", TEST_EVENT), ("x", NOT_JSON), ("n", None)],
        queue_left=0,
        dlq=0,
        batches=[batch(0, 3, test=1, rejected=2)],
        dedupe_dropped=0,
    )
    assert (check.landed, check.records_landed, check.records_in) == (3, 3, 3)
    assert check.ok


@pytest.mark.unit
def test_conservation_a_published_message_missing_from_bronze_breaks_the_message_check():
    check = balanced_check(sent=4)
    assert (check.sent, check.landed) == (4, 3)
    assert not check.messages_ok
    assert check.records_ok
    assert not check.ok
    assert check.lines()[0].endswith("[MISMATCH]")
    assert check.lines()[1].endswith("[ok]")


@pytest.mark.unit
@pytest.mark.parametrize(("queue_left", "dlq"), [(1, 0), (0, 1), (2, 3)])
def test_conservation_a_message_left_in_the_queue_or_dead_lettered_breaks_the_message_check(queue_left, dlq):
    check = balanced_check(queue_left=queue_left, dlq=dlq)
    assert (check.left_in_queue, check.in_dlq) == (queue_left, dlq)
    assert not check.messages_ok
    assert not check.ok


@pytest.mark.unit
def test_conservation_outcomes_that_do_not_add_up_break_the_record_check():
    # Each batch claims to be balanced, but 4 + 1 records in end in only 4 outcomes.
    batches = [
        batch(0, 3, applied=1, rejected=1, deferred=1),
        batch(1, 1),
        batch(-1, 0, retried_in=1, applied=1),
    ]
    check = balanced_check(batches=batches)
    assert sum(check.outcomes.values()) == 4
    assert (check.records_in, check.retried_in) == (4, 1)
    assert check.unbalanced_batches == []
    assert check.messages_ok
    assert not check.records_ok
    assert not check.ok
    assert check.lines()[1].endswith("[MISMATCH]")


@pytest.mark.unit
def test_conservation_an_unbalanced_batch_breaks_the_record_check():
    batches = [
        batch(0, 3, applied=1, rejected=1, deferred=1),
        batch(1, 1, stale=1, balanced=False),
        {k: v for k, v in batch(-1, 0, retried_in=1, applied=1).items() if k != "balanced"},
    ]
    check = balanced_check(batches=batches)
    assert sum(check.outcomes.values()) == 5
    assert check.unbalanced_batches == [1, -1]
    assert not check.records_ok
    assert not check.ok


@pytest.mark.unit
def test_conservation_dedupe_dropped_records_make_up_the_difference_between_landed_and_written():
    # m2 landed twice: 5 records landed, 4 reached the writer.
    assert balanced_check(dedupe_dropped=1).records_ok
    assert not balanced_check(dedupe_dropped=0).records_ok
    assert not balanced_check(dedupe_dropped=2).records_ok
    # Without the second copy of m2 in bronze, 4 landed = 4 in + 0 dropped.
    assert balanced_check(bronze=BRONZE[:3], dedupe_dropped=0).records_ok
    assert not balanced_check(bronze=BRONZE[:3], dedupe_dropped=1).records_ok


# ---- integration: the demo in its own process ------------------------------------------------------

ANSI = re.compile(r"\x1b\[[0-9;]*m")
# The verifier's summary line of a table, e.g. "MISMATCH acme/orders: 3 rows (expected 5), missing 2, ..."
RESULT_LINE = re.compile(
    r"^(?P<state>ok|MISMATCH)\s+(?P<tenant>[^/\s]+)/(?P<dataset>\S+): (?P<rows>\d+) rows "
    r"\(expected (?P<expected>\d+)\), missing (?P<missing>\d+), unexpected (?P<unexpected>\d+), "
    r"duplicates (?P<duplicates>\d+)"
)
OUTCOME_COLUMNS = (
    "applied", "duplicate", "stale", "ignored", "test", "parked", "quarantined", "rejected", "deferred",
    "dropped",
)  # fmt: skip

# Runs the demo with a batch writer that silently loses every row of the inventory dataset: the
# commit becomes a no-op while the events are still counted as applied. (Turning the MERGE into a
# plain append would not do: the demo uploads everything before the job starts, so an object's
# older versions are already gone when the job reads them, they are counted as stale, and no
# commit ever has keys to replace.)
LOSE_INVENTORY = """\
import dataclasses
import sys

import jobs.stream.microbatch
from jobs.cli import main

commit_changes = jobs.stream.microbatch.commit_changes


def lose(change):
    if change.files is not None:  # a metadata-only append of the tasks' data files
        return dataclasses.replace(change, files=(), row_count=0)
    return dataclasses.replace(change, rows=change.rows.limit(0), row_count=0)


def lose_inventory(spark, changes, **kwargs):
    changes = [lose(c) if c.contract.name == "inventory" else c for c in changes]
    return commit_changes(spark, changes, **kwargs)


jobs.stream.microbatch.commit_changes = lose_inventory
sys.exit(main(sys.argv[1:]))
"""


def run_demo(*args: str, code: str | None = None, timeout: float = 900) -> subprocess.CompletedProcess[str]:
    """``python -m jobs demo --config conf/local.yaml ARGS`` (or ``python -c CODE demo ...``)."""
    entry = ["-m", "jobs"] if code is None else ["-c", code]
    cmd = [sys.executable, *entry, "demo", "--config", "conf/local.yaml", *args]
    done = subprocess.run(
        cmd, cwd=kit.PROJECT, env=kit.job_env(), capture_output=True, text=True, timeout=timeout, check=False
    )
    return subprocess.CompletedProcess(done.args, done.returncode, ANSI.sub("", done.stdout), done.stderr)


def explain(done: subprocess.CompletedProcess[str]) -> str:
    return f"exit {done.returncode}\n--- stdout\n{done.stdout}\n--- stderr (end)\n{done.stderr[-5000:]}"


def summary_table(stdout: str) -> dict[tuple[str, str], dict[str, str]]:
    """The demo's table of silver tables: (tenant, dataset) -> column -> cell."""
    header = next(line for line in stdout.splitlines() if line.startswith("┃") and "tenant" in line)
    names = [cell.strip() for cell in header.split("┃")[1:-1]]
    rows = {}
    for line in stdout.splitlines():
        if line.startswith("│"):
            cells = dict(zip(names, (cell.strip() for cell in line.split("│")[1:-1]), strict=True))
            rows[(cells["tenant"], cells["dataset"])] = cells
    return rows


def result_lines(stdout: str) -> list[re.Match[str]]:
    return [m for m in map(RESULT_LINE.match, stdout.splitlines()) if m]


def assert_verified(done: subprocess.CompletedProcess[str], lake: Path) -> GroundTruth:
    """Exit 0, every table of the run's ground truth verified, conservation holds; returns the truth."""
    assert done.returncode == 0, explain(done)
    truth = GroundTruth.load(lake / "_simulate" / "truth.json")
    tables = len(truth.table_pairs())
    assert tables > 0
    assert f"VERIFIED: {tables} of {tables} tables match the ground truth" in done.stdout, explain(done)
    assert "conservation holds" in done.stdout
    return truth


def silver_tables_on_disk(lake: Path) -> set[tuple[str, str]]:
    return {
        (p.parent.parent.parent.name, p.parent.name) for p in (lake / "demo-lake").glob("*/silver/*/metadata")
    }


@pytest.mark.integration
def test_demo_with_defaults_verifies_every_table_and_leaves_a_consistent_lake(tmp_path):
    lake = tmp_path / "lake"
    done = run_demo("--keep", "--lake-root", str(lake))

    assert done.returncode == 0, explain(done)
    assert "VERIFIED: 15 of 15 tables match the ground truth" in done.stdout, explain(done)
    assert "conservation holds" in done.stdout
    table = summary_table(done.stdout)
    expected = {(tenant, dataset) for tenant in tenant_names(5) for dataset in DATASETS}
    assert len(expected) == 15
    assert set(table) == expected, explain(done)
    assert all(row["check"] == "ok" for row in table.values()), explain(done)
    assert f"lake kept at {lake}" in done.stdout

    # The ops table, read independently: every batch's outcomes add up to its records.
    metrics = kit.read_table(kit.ops_dir(lake, "batch_metrics", group="demo"))
    assert metrics is not None
    rows = metrics.to_pylist()
    assert rows
    for row in rows:
        assert sum(row[o] for o in OUTCOME_COLUMNS) == row["records_in"] + row["retried_in"], row
    assert sum(row["applied"] for row in rows) > 0

    # The ground truth the demo checked against, and the silver tables on disk.
    truth_file = lake / "_simulate" / "truth.json"
    assert truth_file.is_file()
    truth = GroundTruth.load(truth_file)
    assert set(truth.table_pairs()) == expected
    on_disk = silver_tables_on_disk(lake)
    # A table whose every key was deleted may never have been created; every other one must exist.
    with_rows = {(t, d) for t, d in truth.table_pairs() if truth.live_keys(t, d)}
    assert with_rows <= on_disk <= set(truth.table_pairs())
    assert len(on_disk) == len(truth.table_pairs()), sorted(set(truth.table_pairs()) - on_disk)


@pytest.mark.integration
@pytest.mark.timeout(1500)
def test_demo_with_many_tenants_and_heavy_faults_verifies(tmp_path):
    # 60 tables from 20 tenants under heavy faults (890 messages, about a minute on two cores);
    # `--soak`-sized traffic is the simulator's job (bench/stream_e2e.py), not this check's.
    lake = tmp_path / "lake"
    done = run_demo(
        "--tenants", "20", "--objects", "600", "--dup-rate", "0.3", "--reorder-rate", "0.3",
        "--delete-rate", "0.1", "--seed", "7", "--lake-root", str(lake), timeout=1400,
    )  # fmt: skip

    truth = assert_verified(done, lake)
    assert set(truth.table_pairs()) == {(t, d) for t in tenant_names(20) for d in DATASETS}
    assert "VERIFIED: 60 of 60 tables" in done.stdout
    # The flags reached the simulator (counts by the spec's formulas: 600 uploads, 15 % of them
    # overwrites; 10 % of the 510 keys deleted, 42 bad files, 35 two-record messages: 658 raw
    # messages, 30 % of them twice, plus 30 malformed, 2 test and 3 non-raw messages).
    injected = truth.injected
    assert (injected.uploads, injected.overwrites, injected.deletes) == (600, 90, 51)
    assert (injected.duplicates, injected.reordered, injected.messages) == (197, 197, 890)
    assert "messages: 890 published = 890 landed in bronze" in done.stdout


@pytest.mark.integration
def test_demo_through_the_s3_api_verifies(tmp_path):
    lake = tmp_path / "lake"
    done = run_demo("--mode", "s3-api", "--tenants", "3", "--objects", "24", "--lake-root", str(lake))

    assert "through moto's S3 API" in done.stdout, explain(done)
    truth = assert_verified(done, lake)
    assert truth.mode == "s3-api"


@pytest.mark.integration
def test_demo_fails_and_names_the_tables_when_the_writer_loses_rows(tmp_path):
    lake = tmp_path / "lake"
    done = run_demo(
        "--tenants", "3", "--objects", "30", "--seed", "5", "--keep", "--lake-root", str(lake),
        code=LOSE_INVENTORY,
    )  # fmt: skip

    assert done.returncode == 1, explain(done)
    assert "FAILED" in done.stdout and "VERIFIED" not in done.stdout, explain(done)
    # Every event is still accounted for: it is the silver check that fails.
    assert "conservation holds" in done.stdout

    truth = GroundTruth.load(lake / "_simulate" / "truth.json")
    lost = {t: len(truth.expected_rows(t, "inventory")) for t in tenant_names(3)}
    lost = {t: n for t, n in lost.items() if n}
    assert lost, "the spec must give some tenant inventory rows"
    tables = len(truth.table_pairs())
    assert f"FAILED: {tables - len(lost)} of {tables} tables match the ground truth" in done.stdout

    results = result_lines(done.stdout)
    assert len(results) == tables, explain(done)
    mismatches = {(m["tenant"], m["dataset"]): m for m in results if m["state"] == "MISMATCH"}
    assert set(mismatches) == {(t, "inventory") for t in lost}, explain(done)
    for (tenant, _), line in mismatches.items():
        counts = {k: int(line[k]) for k in ("rows", "expected", "missing", "unexpected", "duplicates")}
        n = lost[tenant]
        assert counts == {"rows": 0, "expected": n, "missing": n, "unexpected": 0, "duplicates": 0}
    table = summary_table(done.stdout)
    assert {pair for pair, row in table.items() if row["check"] == "MISMATCH"} == set(mismatches)


@pytest.mark.integration
def test_demo_refuses_a_lake_root_that_already_holds_the_bucket(tmp_path):
    lake = tmp_path / "lake"
    (lake / "demo-lake").mkdir(parents=True)
    (lake / "demo-lake" / "keep-me.txt").write_text("earlier run", encoding="utf-8")

    done = run_demo("--lake-root", str(lake), timeout=120)

    assert done.returncode == 2, explain(done)
    message = " ".join(done.stderr.split())
    assert f"{lake / 'demo-lake'} exists: the demo needs a fresh lake" in message, explain(done)
    assert (lake / "demo-lake" / "keep-me.txt").read_text(encoding="utf-8") == "earlier run"
    assert sorted(p.name for p in lake.iterdir()) == ["demo-lake"]


@pytest.mark.integration
def test_demo_rejects_a_rate_above_one(tmp_path):
    done = run_demo("--dup-rate", "1.5", "--lake-root", str(tmp_path / "lake"), timeout=120)

    assert done.returncode == 2, explain(done)
    message = " ".join(done.stderr.split())
    assert "dup_rate must be a number between 0 and 1, got 1.5" in message, explain(done)
    assert not (tmp_path / "lake").exists()

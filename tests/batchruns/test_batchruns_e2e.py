"""End to end: backfill, replay and DLQ redrive converge silver to the truth, with and without a stream.

Every job run is its own process (its own JVM), as in production. Expectations
come from tests/lakegen.py (what was written to the lake), never from the job.
"""

from __future__ import annotations

import datetime as dt
import json
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest

from jobs.config import load_config
from jobs.stream.control import request_stop
from tests import streamkit as kit
from tests.lakegen import Lake

pytestmark = pytest.mark.integration

ORDERS = ["order_id", "customer_id", "amount", "currency", "order_ts"]
CLICKS = ["event_id", "user_id", "page", "ts", "duration_ms"]
COLUMNS = {"orders": ORDERS, "clicks": CLICKS}
PROJECT = Path(__file__).resolve().parents[2]


def assert_ok(run: subprocess.CompletedProcess[str]) -> None:
    lines = [line for line in (run.stdout + run.stderr).splitlines() if not line.lstrip().startswith("at ")]
    assert run.returncode == 0, "\n".join(lines[-60:])


def tree(root: Path) -> dict[str, tuple[int, float]]:
    """Every file under ``root`` with its size and modification time."""
    return {
        str(p.relative_to(root)): (p.stat().st_size, p.stat().st_mtime)
        for p in root.rglob("*")
        if p.is_file()
    }


def assert_silver_is_the_oracle(lake_dir: Path, lake: Lake) -> None:
    for (tenant, dataset), objects in sorted(lake.oracle.items()):
        got = kit.silver_rows(lake_dir, tenant, dataset, COLUMNS[dataset])
        want = lake.expected_rows(tenant, dataset)
        assert got == want, (
            f"{tenant}/{dataset}: {len(got)} rows in silver, {len(want)} expected ({len(objects)} objects)"
        )


def files_and_days(lake_dir: Path, key: str) -> tuple[int, int]:
    """Data files of acme's orders table holding rows of ``key``, and the days of those rows."""
    import pyarrow.compute as pc
    import pyarrow.parquet as pq
    from pyiceberg.table import StaticTable

    metadata = kit.latest_metadata(kit.silver_dir(lake_dir, "acme", "orders"))
    assert metadata is not None
    files, days = 0, set()
    for task in StaticTable.from_metadata(str(metadata)).scan().plan_files():
        rows = pq.read_table(task.file.file_path.removeprefix("file:"), columns=["_source_key", "order_ts"])
        mine = rows.filter(pc.equal(rows["_source_key"], key))
        files += bool(mine.num_rows)
        days |= {ts.date() for ts in mine["order_ts"].to_pylist() if ts is not None}
    return files, len(days)


def last_snapshot(lake_dir: Path, tenant: str, dataset: str) -> Any:
    from pyiceberg.table import StaticTable

    metadata = kit.latest_metadata(kit.silver_dir(lake_dir, tenant, dataset))
    assert metadata is not None
    return StaticTable.from_metadata(str(metadata)).current_snapshot()


def metrics(lake_dir: Path) -> list[dict[str, Any]]:
    table = kit.read_table(kit.ops_dir(lake_dir, "batch_metrics"))
    assert table is not None
    return table.to_pylist()


def requests_left(lake_dir: Path) -> list[Path]:
    return list((lake_dir / "_ops" / "e2e" / "requests").rglob("*.jsonl"))


def test_backfill_lands_unnotified_objects_updates_and_deletes_and_dry_run_changes_nothing(
    spark: Any,
    tmp_path: Path,
) -> None:
    lake_dir = tmp_path / "lake"
    # No queue: nothing notifies. Objects over 1 KiB are read, checked and written in blocks (R11).
    config = kit.write_config(tmp_path, lake_dir, "http://127.0.0.1:9", None, read_block_bytes=1024)
    lake = Lake(lake_dir, seed=21)
    for tenant in ("acme", "globex"):
        for i in range(3):
            lake.put(tenant, "orders", f"2026/o{i}.csv", rows=60 if (tenant, i) == ("acme", 0) else 4)
        lake.put(tenant, "clicks", "c0.jsonl", rows=40 if tenant == "globex" else 3)

    before = tree(lake_dir)
    dry = kit.run_here(spark, config, "backfill", "--dry-run")
    assert_ok(dry)
    assert "8 objects to hand over" in dry.stdout and "dry run: nothing was changed" in dry.stdout
    assert tree(lake_dir) == before  # no table, no ledger, no request file, no lease

    first = kit.run_here(spark, config, "backfill")
    assert_ok(first)
    assert "applied: 8" in first.stdout
    assert_silver_is_the_oracle(lake_dir, lake)
    files, days = files_and_days(lake_dir, "acme/raw/orders/2026/o0.csv")
    assert files > days  # written a block at a time: a data file per block and day, not one per day

    # The bucket moves on without notifications: an overwrite, a delete, a new object.
    lake.put("acme", "orders", "2026/o1.csv", rows=50, tag=777)  # over a block: replaced in blocks
    lake.delete("globex/raw/orders/2026/o2.csv")
    lake.put("globex", "clicks", "c1.jsonl", rows=2)
    without_deletes = kit.run_here(spark, config, "backfill", "--tenant", "globex", "--dry-run")
    assert_ok(without_deletes)
    assert (
        "1 objects to hand over" in without_deletes.stdout
    )  # the new clicks file; the delete needs the flag

    second = kit.run_here(spark, config, "backfill", "--delete-missing")
    assert_ok(second)
    assert "applied: 3" in second.stdout
    assert_silver_is_the_oracle(lake_dir, lake)

    again = kit.run_here(spark, config, "backfill", "--delete-missing")
    assert_ok(again)
    assert "nothing to do" in again.stdout

    # acme's clicks table holds c0.jsonl alone (it came alone), so c0's files hold nothing
    # else: its overwrite drops those files and adds new ones, no row-level delete.
    lake.put("acme", "clicks", "c0.jsonl", rows=5, tag=778)
    third = kit.run_here(spark, config, "backfill")
    assert_ok(third)
    assert "applied: 1" in third.stdout
    assert_silver_is_the_oracle(lake_dir, lake)
    snapshot = last_snapshot(lake_dir, "acme", "clicks")
    assert snapshot.summary.operation.value == "overwrite"
    summary = snapshot.summary.additional_properties
    assert int(summary["deleted-data-files"]) >= 1 and "added-delete-files" not in summary, summary

    rows = metrics(lake_dir)
    kit.assert_balanced(rows)
    assert sum(r["applied"] for r in rows) == 12
    # A backfill's event time is the object's LastModified: it says nothing about freshness.
    assert [r["freshness_p95_s"] for r in rows] == [None, None, None]
    assert requests_left(lake_dir) == []
    assert not (lake_dir / "_ops" / "e2e" / "leases" / "writer.json").exists()


def test_backfill_and_dlq_redrive_next_to_a_running_stream_converge_to_the_oracle(
    tmp_path: Path, moto_endpoint: str
) -> None:
    lake_dir = tmp_path / "lake"
    queue_url, dlq_url = kit.make_queue(moto_endpoint)
    config = kit.write_config(
        tmp_path, lake_dir, moto_endpoint, queue_url, trigger="interval=2s", retry_interval_seconds=2
    )
    lake = Lake(lake_dir, seed=22)
    lake._clock = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=5)  # notifications carry real times
    for i in range(4):  # notified
        lake.put("acme", "orders", f"n{i}.csv", rows=3)
    notified = list(lake.messages)
    lake.messages.clear()
    lake.put("globex", "orders", "dead.csv", rows=2)  # its notification was dead-lettered
    dead_letter = lake.messages.pop()
    for i in range(5):  # uploaded before the bucket had notifications: never notified
        lake.put("initech", "orders", f"old{i}.csv", rows=2)
        lake.put("acme", "clicks", f"old{i}.jsonl", rows=2)
    lake.messages.clear()
    kit.sqs_client(moto_endpoint).send_message(QueueUrl=dlq_url, MessageBody=dead_letter)

    log = tmp_path / "stream.log"
    stream = kit.start_job(config, log=log)
    try:
        kit.send_all(moto_endpoint, queue_url, notified)
        redrive = kit.run_command(
            config, "dlq", "redrive", "--queue-url", queue_url, "--sqs-endpoint-url", moto_endpoint
        )
        assert_ok(redrive)
        assert kit.queue_counts(moto_endpoint, dlq_url) == 0

        lease = lake_dir / "_ops" / "e2e" / "leases" / "writer.json"

        def stream_holds_the_lease() -> None:
            assert lease.exists() and json.loads(lease.read_text(encoding="utf-8"))["role"] == "stream"

        kit.wait_for(stream_holds_the_lease, 180, "the stream takes the writer lease")
        backfill = subprocess.Popen(
            [sys.executable, "-m", "jobs", "backfill", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=kit.job_env(),
        )
        # While the backfill runs, one of its objects gets a newer version, notified as usual:
        # whichever lands first, the newer version must win.
        time.sleep(5)
        lake._clock = dt.datetime.now(dt.UTC)
        lake.put("initech", "orders", "old0.csv", rows=1, tag=4242)
        kit.send_all(moto_endpoint, queue_url, lake.messages)
        output, _ = backfill.communicate(timeout=400)
        assert backfill.returncode == 0, output[-4000:]
        assert "stream@" in output  # it handed its events to the running stream, not applied them itself
        assert "no stream holds the writer lease" not in output

        kit.wait_for(lambda: assert_silver_is_the_oracle(lake_dir, lake), 180, "silver reaches the oracle")
        # The graceful stop an operator requests (silverline emr stop-stream writes this marker).
        request_stop(load_config(config), "end of test")
        code = stream.wait(timeout=120)
    finally:
        if stream.poll() is None:
            stream.send_signal(signal.SIGTERM)
            stream.wait(timeout=120)
    text = log.read_text(encoding="utf-8", errors="replace")
    assert code == 0, text[-4000:]
    assert "stop marker found (end of test" in text
    assert_silver_is_the_oracle(lake_dir, lake)
    kit.assert_balanced(metrics(lake_dir))
    assert requests_left(lake_dir) == []
    assert not (lake_dir / "_ops" / "e2e" / "leases" / "writer.json").exists()  # released on a clean stop


def contracts_without(tmp_path: Path, dataset_line: str) -> Path:
    """A copy of conf/datasets.yaml (and its suites) without one line."""
    target = tmp_path / "contracts"
    shutil.copytree(PROJECT / "conf" / "expectations", target / "expectations")
    text = (PROJECT / "conf" / "datasets.yaml").read_text(encoding="utf-8")
    assert dataset_line in text
    (target / "datasets.yaml").write_text(text.replace(dataset_line, ""), encoding="utf-8")
    return target / "datasets.yaml"


def current_metadata(lake_dir: Path, tenant: str, dataset: str) -> str:
    metadata = kit.latest_metadata(kit.silver_dir(lake_dir, tenant, dataset))
    assert metadata is not None
    return metadata.name


def test_replay_after_a_contract_change_rewrites_only_the_affected_tables(
    spark: Any, tmp_path: Path, moto_endpoint: str
) -> None:
    lake_dir = tmp_path / "lake"
    queue_url, _ = kit.make_queue(moto_endpoint)
    datasets = contracts_without(tmp_path, "      - {name: customer_id, type: string}\n")
    config = kit.write_config(
        tmp_path, lake_dir, moto_endpoint, queue_url, datasets_file=str(datasets), max_files_per_trigger=50
    )
    lake = Lake(lake_dir, seed=23)
    for tenant in ("acme", "globex"):
        lake.put(tenant, "orders", "a.csv", rows=3)
        lake.put(tenant, "clicks", "a.jsonl", rows=2)
    kit.send_all(moto_endpoint, queue_url, lake.messages)
    assert_ok(kit.run_here(spark, config, "stream", "--trigger", "available-now"))
    table = kit.read_table(kit.silver_dir(lake_dir, "acme", "orders"))
    assert table is not None and "customer_id" not in table.column_names
    assert all(json.loads(r)["customer_id"] for r in table.column("_rescued").to_pylist() if r)  # kept aside

    # The contract learns customer_id: replay the orders of every tenant.
    original = (PROJECT / "conf" / "datasets.yaml").read_text(encoding="utf-8")
    datasets.write_text(original, encoding="utf-8")
    clicks_before = {t: current_metadata(lake_dir, t, "clicks") for t in ("acme", "globex")}
    plain = kit.run_here(spark, config, "replay", "--from-bronze", "--dataset", "orders", "--dry-run")
    assert_ok(plain)
    assert "0 objects to hand over" in plain.stdout  # without --force, current objects are left alone

    replay = kit.run_here(spark, config, "replay", "--from-bronze", "--dataset", "orders", "--force")
    assert_ok(replay)
    assert "applied: 2" in replay.stdout
    assert_silver_is_the_oracle(lake_dir, lake)  # customer_id now filled from the files
    assert {t: current_metadata(lake_dir, t, "clicks") for t in ("acme", "globex")} == clicks_before
    rows = metrics(lake_dir)
    kit.assert_balanced(rows)
    assert [r["applied"] for r in rows if r["batch_id"] < 0] == [2]

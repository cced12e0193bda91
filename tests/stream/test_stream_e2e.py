"""End to end: moto's SQS -> bridge -> bronze -> stream -> Iceberg silver, checked with pyiceberg.

Every expectation comes from a generator — the test's own hand-written cases
(tests/lakegen.py) or the traffic simulator's ground truth (jobs/simulate) —
never from the job's output. Each job run is its own process (its own JVM), as in
production.
"""

from __future__ import annotations

import json
import os
import random
import re
import signal
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import boto3
import pytest
import yaml

from tests import streamkit as kit
from tests.lakegen import Lake

pytestmark = pytest.mark.integration

ORDERS = ["order_id", "customer_id", "amount", "currency", "order_ts"]
CLICKS = ["event_id", "user_id", "page", "ts", "duration_ms"]
INVENTORY = ["sku", "warehouse", "qty", "snapshot_date"]
COLUMNS = {"orders": ORDERS, "clicks": CLICKS, "inventory": INVENTORY}


def assert_silver_matches_oracle(lake_dir: Path, lake: Lake) -> None:
    for (tenant, dataset), _objects in sorted(lake.oracle.items()):
        got = kit.silver_rows(lake_dir, tenant, dataset, COLUMNS[dataset])
        want = lake.expected_rows(tenant, dataset)
        assert got == want, f"{tenant}/{dataset}: {len(got)} rows in silver, {len(want)} expected"


def metrics(lake_dir: Path) -> list[dict[str, Any]]:
    table = kit.read_table(kit.ops_dir(lake_dir, "batch_metrics"))
    return [] if table is None else table.to_pylist()


def bronze_record_count(lake_dir: Path) -> int:
    """Records in every landed message, parsed by the plain-Python parser (not by the job)."""
    from jobs.events import parse_message

    total = 0
    for path in (lake_dir / "_ops" / "e2e" / "bronze").rglob("*.jsonl"):
        if "_tmp" not in path.parts:
            total += sum(
                len(parse_message(json.loads(line)["body"])) for line in path.read_text().splitlines() if line
            )
    return total


def assert_conserved(lake_dir: Path) -> None:
    """R7 across the whole run: every landed record reached an outcome or the stream's dedupe."""
    rows = metrics(lake_dir)
    kit.assert_balanced(rows)
    progress = kit.read_table(kit.ops_dir(lake_dir, "stream_progress"))
    assert progress is not None
    dropped = sum(r["duplicates_dropped"] + r["late_dropped"] for r in progress.to_pylist())
    assert sum(r["records_in"] for r in rows) + dropped == bronze_record_count(lake_dir)


def lineage_of(lake_dir: Path, tenant: str, dataset: str) -> list[dict[str, Any]]:
    table = kit.read_table(kit.silver_dir(lake_dir, tenant, dataset))
    assert table is not None
    return table.select(
        ["_source_bucket", "_source_key", "_source_etag", "_source_sequencer", "_batch_id"]
    ).to_pylist()


@pytest.fixture
def setup(tmp_path: Path, moto_endpoint: str) -> dict[str, Any]:
    lake_dir = tmp_path / "lake"
    queue_url, dlq_url = kit.make_queue(moto_endpoint)
    config = kit.write_config(tmp_path, lake_dir, moto_endpoint, queue_url)
    return {
        "lake_dir": lake_dir,
        "queue": queue_url,
        "dlq": dlq_url,
        "config": config,
        "endpoint": moto_endpoint,
    }


def build_overwrite_race(lake: Lake) -> list[str]:
    """Several tenants; same keys written twice ('cat' then 'dog'); some deleted afterwards."""
    keys = []
    for tenant in ("acme", "globex", "initech"):
        for dataset, ext in (("orders", "csv"), ("clicks", "jsonl"), ("inventory", "parquet")):
            for i in range(2):
                keys.append(lake.put(tenant, dataset, f"2024/03/part {i}+v.{ext}", rows=4))
    for key in keys[::2]:
        tenant, _, dataset, *rest = key.split("/")
        lake.put(tenant, dataset, "/".join(rest), rows=3)  # overwrite: the newer version must win
    for key in keys[1::5]:
        lake.delete(key)
    return keys


def test_overwrite_race_duplicates_and_deletes_converge_to_the_oracle(
    spark: Any, setup: dict[str, Any]
) -> None:
    lake = Lake(setup["lake_dir"], seed=11)
    build_overwrite_race(lake)
    bodies = lake.shuffled_with_duplicates(0.4)
    kit.send_all(setup["endpoint"], setup["queue"], bodies)
    # Past stream.overlap_backlog messages, available-now rounds process what has landed
    # while the bridge drains the rest (jobs.stream.overlap): the same outcome is required.
    overlapped = setup["config"].with_name("overlapped.yaml")
    settings = yaml.safe_load(setup["config"].read_text(encoding="utf-8"))
    settings["stream"]["overlap_backlog"] = 1
    overlapped.write_text(yaml.safe_dump(settings), encoding="utf-8")

    done = kit.run_here(spark, overlapped, "stream", "--trigger", "available-now")
    assert done.returncode == 0, done.stderr[-4000:]
    assert f"{len(bodies)} messages queued (at least 1): processing while the bridge drains" in done.stderr
    assert re.search(r"backlog processed in \d+ rounds", done.stderr), done.stderr[-4000:]

    assert_silver_matches_oracle(setup["lake_dir"], lake)
    rows = metrics(setup["lake_dir"])
    assert rows, "no batch metrics written"
    assert_conserved(setup["lake_dir"])
    assert sum(r["records_in"] for r in rows) <= len(bodies)
    assert sum(r["applied"] for r in rows) >= sum(len(v) for v in lake.oracle.values())
    assert kit.queue_counts(setup["endpoint"], setup["queue"]) == 0
    # Lineage: every row names its object, eTag and sequencer.
    for row in lineage_of(setup["lake_dir"], "acme", "orders"):
        assert row["_source_bucket"] == "demo-lake"
        assert row["_source_key"].startswith("acme/raw/orders/2024/03/part ")
        assert row["_source_etag"] and row["_source_sequencer"] and row["_batch_id"] is not None

    # A second run with old notifications re-sent changes nothing.
    snapshot_files = sorted(p.name for p in setup["lake_dir"].rglob("*.metadata.json") if "silver" in p.parts)
    kit.send_all(setup["endpoint"], setup["queue"], lake.messages[:10])
    again = kit.run_here(spark, setup["config"], "stream", "--trigger", "available-now")
    assert again.returncode == 0, again.stderr[-4000:]
    assert_silver_matches_oracle(setup["lake_dir"], lake)
    after = sorted(p.name for p in setup["lake_dir"].rglob("*.metadata.json") if "silver" in p.parts)
    assert after == snapshot_files, "re-sent old notifications must not commit to silver"
    assert_conserved(setup["lake_dir"])


def test_poison_is_counted_and_the_job_keeps_going(spark: Any, setup: dict[str, Any]) -> None:
    lake = Lake(setup["lake_dir"], seed=5)
    good = lake.put("acme", "orders", "ok.csv", rows=3)
    bad_key = "acme/raw/orders/broken.csv"
    lake.path(bad_key).write_bytes(b"order_id,customer_id,amount,currency,order_ts\nnot-a-number,x,1,EUR,\n")
    bad_file_msg = lake.notification(
        bad_key, "ObjectCreated:Put", "00FF00000000000001", "2024-03-01T12:00:00.000Z", None
    )
    headless_key = "acme/raw/orders/headless.csv"
    lake.path(headless_key).write_bytes(b"1,c1,2.00,EUR,2024-03-01T10:00:00Z\n")
    headless_msg = lake.notification(
        headless_key, "ObjectCreated:Put", "02", "2024-03-01T12:00:00.000Z", None
    )
    unknown = lake.notification(
        "acme/raw/payroll/x.csv", "ObjectCreated:Put", "01", "2024-03-01T12:00:00.000Z", None
    )
    traversal = lake.notification("acme/raw/orders/../../globex/raw/orders/x.csv", "ObjectCreated:Put", "02",
                                  "2024-03-01T12:00:00.000Z", None)  # fmt: skip
    garbage = [
        '{"Records": [',
        "hello",
        json.dumps({"Service": "Amazon S3", "Event": "s3:TestEvent", "Bucket": "demo-lake"}),
    ]
    kit.send_all(
        setup["endpoint"],
        setup["queue"],
        [*lake.messages, bad_file_msg, headless_msg, unknown, traversal, *garbage],
    )

    done = kit.run_here(spark, setup["config"], "stream", "--trigger", "available-now")
    assert done.returncode == 0, done.stderr[-4000:]

    assert kit.silver_rows(setup["lake_dir"], "acme", "orders", ORDERS) == lake.expected_rows(
        "acme", "orders"
    )
    assert good in lake.oracle[("acme", "orders")]
    rows = metrics(setup["lake_dir"])
    assert_conserved(setup["lake_dir"])
    totals = {k: sum(r[k] for r in rows) for k in ("applied", "quarantined", "rejected", "test")}
    # broken.csv is read: its one row has an order_id that is no number, so that row (not the
    # file) is quarantined, in the tenant's quarantine table, with its original text.
    assert totals == {"applied": 2, "quarantined": 2, "rejected": 3, "test": 1}
    quarantine = kit.read_table(kit.ops_dir(setup["lake_dir"], "quarantine"))
    assert quarantine is not None
    reasons = sorted((r["key"], r["reason"]) for r in quarantine.to_pylist())
    assert reasons == [
        ("acme/raw/orders/headless.csv", "wrong_header"),
        ("acme/raw/payroll/x.csv", "unknown_dataset"),
    ]
    bad_rows = kit.read_table(setup["lake_dir"] / "demo-lake" / "acme" / "quarantine" / "orders")
    assert bad_rows is not None
    [bad] = bad_rows.to_pylist()
    assert (bad["_source_key"], bad["_row_number"], bad["order_id"]) == (
        "acme/raw/orders/broken.csv",
        1,
        None,
    )
    assert "conversion(order_id)" in bad["_failed_expectations"]
    assert "not-a-number" in bad["_raw"]
    rejected = kit.read_table(kit.ops_dir(setup["lake_dir"], "rejected"))
    assert rejected is not None
    assert sorted(r["reason"] for r in rejected.to_pylist()) == [
        "invalid_json",
        "invalid_json",
        "key_traversal",
    ]


def test_late_events_take_effect_only_when_newest(spark: Any, setup: dict[str, Any]) -> None:
    config = kit.write_config(
        setup["config"].parent,
        setup["lake_dir"],
        setup["endpoint"],
        setup["queue"],
        watermark_delay="1 second",
    )
    lake = Lake(setup["lake_dir"], seed=3)
    key = lake.put("acme", "orders", "late.csv", rows=2, tag=1)
    first_version = lake.messages[-1]
    lake.put("acme", "orders", "late.csv", rows=3, tag=2)
    newest = lake.messages[-1]
    kit.send_all(setup["endpoint"], setup["queue"], [newest])
    assert kit.run_here(spark, config, "stream", "--trigger", "available-now").returncode == 0
    assert kit.silver_rows(setup["lake_dir"], "acme", "orders", ORDERS) == lake.expected_rows(
        "acme", "orders"
    )

    # The older notification arrives long after the watermark: it must change nothing (stale);
    # the newest one re-sent is a duplicate (caught by the stream's dedupe or by the ledger).
    before = max(r["batch_id"] for r in metrics(setup["lake_dir"]))
    time.sleep(2)
    kit.send_all(setup["endpoint"], setup["queue"], [first_version, newest])
    assert kit.run_here(spark, config, "stream", "--trigger", "available-now").returncode == 0
    assert kit.silver_rows(setup["lake_dir"], "acme", "orders", ORDERS) == lake.expected_rows(
        "acme", "orders"
    )
    run2 = [r for r in metrics(setup["lake_dir"]) if r["batch_id"] > before]
    progress = kit.read_table(kit.ops_dir(setup["lake_dir"], "stream_progress"))
    assert progress is not None
    deduped = sum(r["duplicates_dropped"] for r in progress.to_pylist() if r["batch_id"] > before)
    assert sum(r["stale"] for r in run2) == 1
    assert sum(r["applied"] for r in run2) == 0
    assert sum(r["duplicate"] for r in run2) + deduped == 1

    # ... while a delayed event that is the newest for its key (old event time) still applies.
    lake.delete(key)
    delete_event = json.loads(lake.messages[-1])
    delete_event["Records"][0]["eventTime"] = "2020-01-01T00:00:00.000Z"
    kit.send_all(setup["endpoint"], setup["queue"], [json.dumps(delete_event)])
    assert kit.run_here(spark, config, "stream", "--trigger", "available-now").returncode == 0
    assert kit.silver_rows(setup["lake_dir"], "acme", "orders", ORDERS) == []
    assert_conserved(setup["lake_dir"])


def test_sigkill_mid_batch_and_restart_converges_and_loses_no_message(setup: dict[str, Any]) -> None:
    """The simulator's traffic (duplicates, swaps, delays, bad files, malformed messages)."""
    from jobs.simulate import SimulationSpec, run, verify

    spec = SimulationSpec(tenants=3, objects=40, dup_rate=0.3, reorder_rate=0.3, seed=23)
    bodies, truth = run(spec, setup["lake_dir"])
    assert truth.injected.overwrites and truth.injected.deletes and truth.injected.duplicates
    sent = kit.send_all(setup["endpoint"], setup["queue"], bodies)
    # A killed bridge's messages come back when their visibility lapses, and the final run
    # waits for them: 20 s rather than the default 120 s (the keeper extends at half of it).
    config = kit.write_config(
        setup["config"].parent,
        setup["lake_dir"],
        setup["endpoint"],
        setup["queue"],
        bridge={"visibility_timeout_seconds": 20},
    )
    rng = random.Random(int(os.environ.get("SILVERLINE_TEST_SEED", "4")))
    log = config.parent / "job.log"
    for _ in range(3):
        proc = kit.start_job(config, "--trigger", "interval=1s", log=log)
        time.sleep(rng.uniform(8, 25))
        os.killpg(proc.pid, signal.SIGKILL)
        proc.wait(timeout=30)
    done = kit.run_job(config, "--trigger", "available-now")
    assert done.returncode == 0, done.stderr[-4000:]

    result = verify(setup["lake_dir"], truth)
    assert result.ok, result.summary()
    assert len(result.tables) == 9  # 3 tenants x 3 datasets
    # Every message sent is in bronze (none went to the DLQ: 3 kills < maxReceiveCount 5).
    assert set(sent) <= set(kit.bronze_message_ids(setup["lake_dir"]))
    assert kit.queue_counts(setup["endpoint"], setup["queue"]) == 0
    assert kit.queue_counts(setup["endpoint"], setup["dlq"]) == 0
    assert_conserved(setup["lake_dir"])


def test_one_failing_tenant_table_does_not_block_the_others_and_is_parked(
    spark: Any, spark_lake: Path, tmp_path: Path, moto_endpoint: str
) -> None:
    """R10: badco's table rejects the commit; acme lands; badco's event is retried, then parked."""
    bucket, group = "r10-lake", "e2e"
    from jobs.contracts import load_contracts
    from jobs.silver.commit import silver_ddl

    orders = load_contracts(kit.PROJECT / "conf" / "datasets.yaml")["orders"]
    spark.sql(  # the contract's schema, but no data file can be written: every commit fails
        f"""CREATE TABLE silverline.`{bucket}`.badco.silver.orders ({silver_ddl(orders)}) USING iceberg
            TBLPROPERTIES ('write.parquet.compression-codec'='no-such-codec')"""
    )
    lake = Lake(spark_lake, bucket=bucket, seed=31)
    lake.put("acme", "orders", "a.csv", rows=3)
    lake.put("badco", "orders", "b.csv", rows=2)
    queue_url, dlq_url = kit.make_queue(moto_endpoint)
    config = kit.write_config(
        tmp_path, spark_lake, moto_endpoint, queue_url, max_attempts=3, retry_interval_seconds=1
    )
    text = config.read_text().replace("bucket: demo-lake", f"bucket: {bucket}")
    namespace = f"silverline-{bucket}-{tmp_path.name}"
    config.write_text(text + f"cloudwatch:\n  enabled: true\n  namespace: {namespace}\n")

    kit.send_all(moto_endpoint, queue_url, lake.messages)
    first = kit.run_job(config, "--trigger", "available-now")
    assert first.returncode == 0, first.stderr[-4000:]
    for known in ("NativeCodeLoader", "resolves to a loopback address", "not supported in streaming"):
        assert known not in first.stderr  # JVM warnings that need no action stay off the console
    acme = kit.silver_rows(spark_lake, "acme", "orders", ORDERS, bucket=bucket)
    assert sorted(acme, key=repr) == sorted(
        lake.oracle[("acme", "orders")]["acme/raw/orders/a.csv"], key=repr
    )

    ops = spark_lake / "_ops" / group / "tables" / "ops"
    rows = [r for r in kit.read_table(ops / "batch_metrics").to_pylist()]  # type: ignore[union-attr]
    kit.assert_balanced(rows)
    assert sum(r["deferred"] for r in rows) == 2
    assert sum(r["retried_in"] for r in rows) == 2
    assert sum(r["parked"] for r in rows) == 1
    # The run retried without waiting for new input; at least the last try is a retry pass
    # (negative batch id) that parks the event after its third failure.
    [last] = [r for r in rows if r["parked"]]
    assert last["batch_id"] < 0 and (last["records_in"], last["retried_in"]) == (0, 1)
    # The JSON-lines copy holds the same batches, with per-table files and rows.
    copies = sorted((spark_lake / "_ops" / group / "metrics" / "batches").rglob("*.jsonl"))
    lines = [json.loads(p.read_text(encoding="utf-8")) for p in copies]
    assert sorted(d["batch_id"] for d in lines) == sorted(r["batch_id"] for r in rows)
    [first_batch] = [d for d in lines if d["batch_id"] >= 0 and d["records_in"]]
    assert first_batch["tables"]["acme/orders"] == {
        "files": 1, "rows_read": 3, "rows_written": 3, "rows_quarantined": 0, "status": "committed",
        "applied": 1,
    }  # fmt: skip
    assert first_batch["tables"]["badco/orders"]["status"] == "failed"
    assert first_batch["balanced"] is True
    parked = kit.read_table(ops / "parked")
    assert parked is not None
    [row] = parked.to_pylist()
    assert (row["key"], row["attempts"]) == ("badco/raw/orders/b.csv", 3)
    assert row["reason"].startswith("commit failed")
    retry = kit.read_table(ops / "retry")
    assert retry is None or retry.num_rows == 0
    assert kit.silver_rows(spark_lake, "badco", "orders", ["order_id"], bucket=bucket) == []
    assert kit.queue_counts(moto_endpoint, dlq_url) == 0

    # Every batch's metrics reached CloudWatch (moto's), the parked event's included.
    cloudwatch = boto3.client("cloudwatch", endpoint_url=moto_endpoint, region_name="us-east-1")
    parked_points = cloudwatch.get_metric_statistics(
        Namespace=namespace,
        MetricName="Parked",
        Dimensions=[{"Name": "Group", "Value": group}],
        StartTime=datetime.now(UTC) - timedelta(hours=1),
        EndTime=datetime.now(UTC) + timedelta(minutes=5),
        Period=7200,
        Statistics=["Sum", "SampleCount"],
    )["Datapoints"]
    assert [(p["Sum"], p["SampleCount"]) for p in parked_points] == [(1.0, len(rows))]

    # `silverline status` reads the same state without Spark and names what is wrong.
    shown = kit.run_command(config, "status", "--json", timeout=120)
    assert shown.returncode == 1, shown.stderr[-2000:]  # problems found
    status = json.loads(shown.stdout)
    assert status["group"]["bucket"] == bucket
    assert (status["queue"]["visible"], status["queue"]["in_flight"]) == (0, 0)
    assert status["dlq"]["visible"] == 0 and status["dlq"]["url"] == dlq_url
    assert status["bronze"]["files_pending"] == 0 and status["bronze"]["files_landed"] >= 1
    assert status["events"] == {"retrying": 0, "held": 0, "dropped": 0, "parked": 1}
    assert status["tenants"]["badco"]["parked"] == 1 and status["tenants"]["badco"]["lag_s"] > 0
    newest = max(rows, key=lambda r: r["finished_at"])
    assert status["last_batch"]["batch_id"] == newest["batch_id"]
    assert (status["last_batch"]["parked"], status["last_batch"]["balanced"]) == (newest["parked"], True)
    assert status["lease"] is None  # the run ended and released it
    assert status["problems"] == [
        "1 events are parked (see the parked ops table)",
        "no process holds the writer lease: the stream is not running",
    ]
    table = kit.run_command(config, "status", timeout=120)
    assert table.returncode == 1
    assert "0 of 0 files" not in table.stdout and "1 events are parked" in table.stdout

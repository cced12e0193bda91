"""``silverline maintain`` next to a running stream and a concurrent backfill, then with retention.

The oracle is the generator's (tests/lakegen.py). Maintenance settings are
aggressive on purpose (expire everything but two snapshots, compact any two
files, rewrite every file with a delete file), so that its commits race the
stream's: the stream must never fail or park a commit because of them, and the
tables must read exactly the oracle afterwards.
"""

from __future__ import annotations

import datetime as dt
import os
import signal
import subprocess
import sys
import time
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.config import load_config
from jobs.stream.control import request_stop
from tests import streamkit as kit
from tests.lakegen import Lake

pytestmark = pytest.mark.integration

COLUMNS = {
    "orders": ["order_id", "customer_id", "amount", "currency", "order_ts"],
    "clicks": ["event_id", "user_id", "page", "ts", "duration_ms"],
}
TENANTS = ("acme", "globex")
AGGRESSIVE = {
    "expire_after_hours": 0,
    "retain_last": 2,
    "min_input_files": 2,
    "delete_file_threshold": 1,
    "orphan_after_hours": 24,
}


def with_maintenance(config: Path, **settings: Any) -> Path:
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["maintenance"] = {**AGGRESSIVE, **settings}
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    return config


def assert_oracle(lake_dir: Path, lake: Lake) -> None:
    for tenant in TENANTS:
        for dataset, columns in COLUMNS.items():
            got = kit.silver_rows(lake_dir, tenant, dataset, columns)
            assert got == lake.expected_rows(tenant, dataset), f"{tenant}/{dataset}: {len(got)} rows"


def wave(lake: Lake, number: int) -> None:
    """New objects, then overwrites and deletes of earlier ones (delete files on merge-on-read)."""
    for tenant in TENANTS:
        for dataset, ext in (("orders", "csv"), ("clicks", "jsonl")):
            for i in range(2):
                lake.put(tenant, dataset, f"w{number}-{i}.{ext}", rows=4)
            if number:
                lake.put(tenant, dataset, f"w{number - 1}-0.{ext}", rows=2)  # overwrite
                lake.delete(f"{tenant}/raw/{dataset}/w{number - 1}-1.{ext}")


def table_files(lake_dir: Path, tenant: str, dataset: str) -> tuple[Counter[str], int, int]:
    """(data files per partition, delete files, snapshots) of a silver table, read by pyiceberg."""
    from pyiceberg.table import StaticTable

    metadata = kit.latest_metadata(kit.silver_dir(lake_dir, tenant, dataset))
    assert metadata is not None
    table = StaticTable.from_metadata(str(metadata))
    tasks = list(table.scan().plan_files())
    per_partition = Counter(repr(task.file.partition) for task in tasks)
    deletes = sum(len(task.delete_files) for task in tasks)
    return per_partition, deletes, len(table.metadata.snapshots)


def maintain(spark: Any, config: Path, *args: str) -> subprocess.CompletedProcess[str]:
    run = kit.run_here(spark, config, "maintain", *args)
    assert run.returncode == 0, (run.stdout + run.stderr)[-4000:]
    return run


def test_maintain_next_to_the_stream_and_a_backfill_then_retention(
    spark: Any, tmp_path: Path, moto_endpoint: str
) -> None:
    lake_dir = tmp_path / "lake"
    queue_url, _ = kit.make_queue(moto_endpoint)
    config = with_maintenance(
        kit.write_config(
            tmp_path, lake_dir, moto_endpoint, queue_url, trigger="interval=2s", retry_interval_seconds=2
        )
    )
    lake = Lake(lake_dir, seed=41)
    lake._clock = dt.datetime.now(dt.UTC) - dt.timedelta(minutes=10)
    wave(lake, 0)
    kit.send_all(moto_endpoint, queue_url, lake.messages)
    lake.messages.clear()

    log = tmp_path / "stream.log"
    stream = kit.start_job(config, log=log)
    try:
        kit.wait_for(lambda: assert_oracle(lake_dir, lake), 240, "the first wave lands")
        wave(lake, 1)
        kit.send_all(moto_endpoint, queue_url, lake.messages)
        lake.messages.clear()
        backfill = subprocess.Popen(  # a backfill that hands its events to the running stream
            [sys.executable, "-m", "jobs", "backfill", "--config", str(config)],
            stdout=subprocess.PIPE,
            stderr=subprocess.STDOUT,
            text=True,
            env=kit.job_env(),
        )
        maintain(spark, config)  # while the stream commits the wave and the backfill's events
        output, _ = backfill.communicate(timeout=400)
        assert backfill.returncode == 0, output[-4000:]
        wave(lake, 2)  # commits that must land on the tables maintenance just rewrote
        kit.send_all(moto_endpoint, queue_url, lake.messages)
        lake.messages.clear()
        kit.wait_for(lambda: assert_oracle(lake_dir, lake), 240, "silver reaches the oracle")
        request_stop(load_config(config), "end of test")
        code = stream.wait(timeout=180)
    finally:
        if stream.poll() is None:
            os.killpg(stream.pid, signal.SIGKILL)
            stream.wait(timeout=60)
    text = log.read_text(encoding="utf-8", errors="replace")
    assert code == 0, text[-4000:]
    metrics = kit.read_table(kit.ops_dir(lake_dir, "batch_metrics"))
    assert metrics is not None
    rows = metrics.to_pylist()
    kit.assert_balanced(rows)
    assert sum(r["tables_failed"] for r in rows) == 0, "a stream commit failed next to maintenance"
    assert sum(r["parked"] for r in rows) == 0
    ledger_rows = kit.read_table(kit.ops_dir(lake_dir, "ledger")).num_rows  # type: ignore[union-attr]

    # An unreferenced file from two days ago (a crashed writer's leftover), and a fresh one.
    data_dir = kit.silver_dir(lake_dir, "acme", "orders") / "data"
    old_orphan, new_orphan = data_dir / "leftover-old.parquet", data_dir / "leftover-new.parquet"
    for orphan in (old_orphan, new_orphan):
        orphan.write_bytes(b"PAR1 not really")
    two_days_ago = time.time() - 2 * 86400
    os.utime(old_orphan, (two_days_ago, two_days_ago))
    bronze = list((lake_dir / "_ops" / "e2e" / "bronze").rglob("*.jsonl"))
    assert bronze

    with_maintenance(config, bronze_retention_days=1e-6, ops_retention_days=1e-6)
    maintain(spark, config)
    assert_oracle(lake_dir, lake)
    for tenant in TENANTS:
        for dataset in COLUMNS:
            per_partition, deletes, snapshots = table_files(lake_dir, tenant, dataset)
            assert max(per_partition.values()) == 1, f"{tenant}/{dataset} not compacted: {per_partition}"
            assert deletes == 0 and snapshots <= AGGRESSIVE["retain_last"], (tenant, dataset)
    assert not old_orphan.exists() and new_orphan.exists()
    assert not [p for p in (lake_dir / "_ops" / "e2e" / "bronze").rglob("*.jsonl") if p.exists()]
    assert kit.read_table(kit.ops_dir(lake_dir, "batch_metrics")).num_rows == 0  # type: ignore[union-attr]
    assert kit.read_table(kit.ops_dir(lake_dir, "ledger")).num_rows == ledger_rows  # type: ignore[union-attr]

    # The stream carries on from its checkpoint over compacted tables and a trimmed bronze log.
    new_orphan.unlink()
    wave(lake, 3)
    kit.send_all(moto_endpoint, queue_url, lake.messages)
    done = kit.run_here(spark, config, "stream", "--trigger", "available-now")
    assert done.returncode == 0, done.stderr[-4000:]
    assert_oracle(lake_dir, lake)
    after = kit.read_table(kit.ops_dir(lake_dir, "batch_metrics")).to_pylist()  # type: ignore[union-attr]
    kit.assert_balanced(after)
    assert sum(r["applied"] for r in after) == len(lake.messages)  # one record per notification

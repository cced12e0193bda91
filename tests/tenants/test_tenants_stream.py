"""End to end: the tenant registry and the per-tenant cap as the stream applies them.

Unknown and suspended tenants' events are held and land once the tenant is created
or resumed; offboarded tenants' events are dropped (counted, kept in ``held``); one
tenant's burst waits for later batches while the others land in the first one.
Expectations come from tests/lakegen.py, never from the job's output.
"""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.tenants.registry import ACTIVE, OFFBOARDED, SUSPENDED, LocalRegistry, Tenant, set_tenant_status
from tests import streamkit as kit
from tests.lakegen import Lake

pytestmark = pytest.mark.integration

ORDERS = ["order_id", "customer_id", "amount", "currency", "order_ts"]
GROUP = "e2e"


def configure(
    tmp_path: Path, lake_dir: Path, endpoint: str, notify: dict[str, Any] | None = None, **stream: Any
) -> tuple[Path, LocalRegistry]:
    queue_url, _ = kit.make_queue(endpoint)
    config = kit.write_config(tmp_path, lake_dir, endpoint, queue_url, **stream)
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    registry_file = tmp_path / "registry" / "registry.json"
    data["registry"] = {"backend": "local", "path": str(registry_file), "refresh_seconds": 1}
    if notify:
        data["notify"] = notify
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    return config, LocalRegistry(registry_file)


def register(registry: LocalRegistry, name: str, status: str = ACTIVE) -> None:
    registry.put_tenant(Tenant(name=name, group=GROUP, bucket="demo-lake", region="us-east-1", status=status))


def metrics(lake_dir: Path) -> list[dict[str, Any]]:
    table = kit.read_table(kit.ops_dir(lake_dir, "batch_metrics"))
    assert table is not None
    return table.to_pylist()


def held(lake_dir: Path) -> list[tuple[str, str, str]]:
    table = kit.read_table(kit.ops_dir(lake_dir, "held"))
    assert table is not None
    return sorted((r["tenant"], r["reason"], r["key"]) for r in table.to_pylist())


def assert_ran(run: Any) -> None:
    """The job exited 0; otherwise show its log lines (not the JVM's stack frames)."""
    lines = [line for line in run.stderr.splitlines() if not line.lstrip().startswith("at ")]
    assert run.returncode == 0, "\n".join(lines[-60:])


def assert_lands(lake_dir: Path, lake: Lake, tenant: str) -> None:
    got = kit.silver_rows(lake_dir, tenant, "orders", ORDERS)
    assert got == lake.expected_rows(tenant, "orders"), f"{tenant}: {len(got)} rows in silver"
    assert got, f"{tenant}: the oracle has rows"


def test_unknown_and_suspended_tenants_wait_and_land_after_create_and_resume(
    spark: Any, tmp_path: Path, moto_endpoint: str
) -> None:
    lake_dir = tmp_path / "lake"
    config, registry = configure(tmp_path, lake_dir, moto_endpoint, max_files_per_trigger=50)
    register(registry, "acme")
    register(registry, "paused", SUSPENDED)
    register(registry, "gone", OFFBOARDED)
    lake = Lake(lake_dir, seed=11)
    for tenant in ("acme", "newco", "paused", "gone"):
        lake.put(tenant, "orders", "a.csv", rows=3)
    lake.put("newco", "orders", "b.csv", rows=2)
    queue_url = yaml.safe_load(config.read_text())["sqs"]["queue_url"]
    kit.send_all(moto_endpoint, queue_url, lake.messages)

    first = kit.run_here(spark, config, "stream", "--trigger", "available-now")
    assert_ran(first)
    assert_lands(lake_dir, lake, "acme")
    for tenant in ("newco", "paused", "gone"):
        assert kit.read_table(kit.silver_dir(lake_dir, tenant, "orders")) is None, tenant
    assert held(lake_dir) == [
        ("gone", "tenant_offboarded", "gone/raw/orders/a.csv"),
        ("newco", "tenant_unknown", "newco/raw/orders/a.csv"),
        ("newco", "tenant_unknown", "newco/raw/orders/b.csv"),
        ("paused", "tenant_suspended", "paused/raw/orders/a.csv"),
    ]
    rows = metrics(lake_dir)
    kit.assert_balanced(rows)
    assert (sum(r["applied"] for r in rows), sum(r["parked"] for r in rows)) == (1, 3)
    assert sum(r["dropped"] for r in rows) == 1

    # Onboard newco and resume paused; the next run has no new input, yet their events land.
    register(registry, "newco")
    set_tenant_status(registry, GROUP, "paused", ACTIVE)
    second = kit.run_here(spark, config, "stream", "--trigger", "available-now")
    assert_ran(second)
    for tenant in ("acme", "newco", "paused"):
        assert_lands(lake_dir, lake, tenant)
    assert kit.read_table(kit.silver_dir(lake_dir, "gone", "orders")) is None
    assert held(lake_dir) == [("gone", "tenant_offboarded", "gone/raw/orders/a.csv")]
    rows = metrics(lake_dir)
    kit.assert_balanced(rows)
    [release] = [r for r in rows if r["batch_id"] < 0]  # a retry pass, without new input
    assert (release["records_in"], release["retried_in"], release["applied"]) == (0, 3, 3)
    # A third run finds nothing to release and changes nothing.
    third = kit.run_here(spark, config, "stream", "--trigger", "available-now")
    assert_ran(third)
    assert len(metrics(lake_dir)) == len(rows)


def test_one_tenants_burst_waits_while_the_others_land_in_the_first_batch(
    spark: Any, tmp_path: Path, moto_endpoint: str
) -> None:
    lake_dir = tmp_path / "lake"
    downstream = kit.sqs_client(moto_endpoint).create_queue(QueueName="table-updates")["QueueUrl"]
    config, registry = configure(
        tmp_path,
        lake_dir,
        moto_endpoint,
        notify={"target": "sqs", "queue_url": downstream, "window_seconds": 3600},
        max_files_per_trigger=100,
        max_files_per_tenant=4,
    )
    small = ("acme", "globex", "initech")
    for tenant in ("bigco", *small):
        register(registry, tenant)
    lake = Lake(lake_dir, seed=12)
    for i in range(40):  # ten times what each other tenant uploads
        lake.put("bigco", "orders", f"burst-{i:02d}.csv", rows=2)
    for tenant in small:
        for i in range(4):
            lake.put(tenant, "orders", f"f{i}.csv", rows=2)
    queue_url = yaml.safe_load(config.read_text())["sqs"]["queue_url"]
    kit.send_all(moto_endpoint, queue_url, lake.messages)

    done = kit.run_here(spark, config, "stream", "--trigger", "available-now")
    assert_ran(done)
    for tenant in ("bigco", *small):
        assert_lands(lake_dir, lake, tenant)
    rows = metrics(lake_dir)
    kit.assert_balanced(rows)
    [first] = [r for r in rows if r["batch_id"] >= 0 and r["records_in"]]
    tables = json.loads(first["details"])["tables"]
    for tenant in small:  # every small tenant's objects land in the very first batch
        assert tables[f"{tenant}/orders"]["applied"] == 4, tenant
    assert tables["bigco/orders"]["applied"] == 4
    assert tables["bigco/orders"]["deferred"] == 36
    lag = json.loads(first["details"])["tenant_lag_s"]
    assert set(lag) == {"bigco", *small}
    assert lag["bigco"] >= max(lag[t] for t in small)
    # The rest of the burst went through passes of at most 4 objects each, and nothing else.
    # (Retry passes, and a no-data batch of the stream when Spark runs one, both take them.)
    passes = sorted((r for r in rows if r is not first), key=lambda r: -r["retried_in"])
    assert all(p["records_in"] == 0 for p in passes)
    assert [p["applied"] for p in passes] == [4] * 9
    assert sum(p["deferred"] for p in passes) == 32 + 28 + 24 + 20 + 16 + 12 + 8 + 4

    # Downstream: one "table updated" message per table at once, then (one window of an hour)
    # bigco's nine later commits as one aggregate, sent when the run ends.
    messages = [json.loads(m["Body"]) for m in drain_queue(moto_endpoint, downstream)]
    by_table = sorted((m["tenant"], m["source_objects"], m["rows_written"], m["commits"]) for m in messages)
    assert by_table == [
        ("acme", 4, 8, 1), ("bigco", 4, 8, 1), ("bigco", 36, 72, 9), ("globex", 4, 8, 1), ("initech", 4, 8, 1)
    ]  # fmt: skip
    assert {m["type"] for m in messages} == {"silverline.table_updated"}


def drain_queue(endpoint: str, url: str) -> list[dict[str, Any]]:
    sqs = kit.sqs_client(endpoint)
    out: list[dict[str, Any]] = []
    while batch := sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10).get("Messages", []):
        out += batch
        sqs.delete_message_batch(
            QueueUrl=url,
            Entries=[{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(batch)],
        )
    return out

"""Fault injection on the stream's inputs (issue #13): a 10,000-tenant registry and hostile keys.

One job run serves both scenarios: a local registry of 10,000 tenants (active,
suspended, offboarded; written with the registry's own bulk writer) gates events
of a few dozen of them plus unknown ones, and one active tenant uploads under
keys R2 forbids (traversal plain and percent-encoded, dot and empty segments, a
leading '/', control characters, 1,025 bytes) and legal odd ones (unicode,
spaces, '+', a literal '%2E%2E', 1,024 bytes). Expectations come from this
file's own tables and tests/lakegen.py, never from the job's output.
"""

from __future__ import annotations

import json
import time
from collections import Counter
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.events import parse_message
from jobs.simulate import GroundTruth, verify
from jobs.tenants.gate import TENANT_OFFBOARDED, TENANT_SUSPENDED, TENANT_UNKNOWN, TenantGate
from jobs.tenants.registry import ACTIVE, OFFBOARDED, SUSPENDED, LocalRegistry, Tenant
from tests import streamkit as kit
from tests.lakegen import Lake
from tests.stream.test_stream_e2e import bronze_record_count

pytestmark = pytest.mark.integration

ORDERS = ["order_id", "customer_id", "amount", "currency", "order_ts"]
GROUP = "e2e"
TENANTS = 10_000
HOSTILE = "t00001"  # an active tenant
PREFIX = f"{HOSTILE}/raw/orders/"
# Keys R2 forbids, as they arrive in the notification (URL-encoded) -> the reason to count.
FORBIDDEN: dict[str, str] = {
    f"{PREFIX}../../t00002/raw/orders/plain.csv": "key_traversal",
    f"{PREFIX}%2E%2E/%2E%2E/t00002/raw/orders/encoded.csv": "key_traversal",
    f"{PREFIX}..%2F..%2Ft00002%2Fraw%2Forders%2Fslash.csv": "key_traversal",
    f"{PREFIX}./dot.csv": "key_traversal",
    "../raw/orders/tenant-dots.csv": "key_traversal",
    f"{PREFIX}/empty-segment.csv": "key_empty_segment",
    f"/{PREFIX}leading-slash.csv": "key_absolute",
    f"{PREFIX}nul%00.csv": "key_control_characters",
    f"{PREFIX}newline%0A.csv": "key_control_characters",
    f"{PREFIX}unit-separator%1F.csv": "key_control_characters",
    f"{PREFIX}del%7F.csv": "key_control_characters",
    PREFIX + "k" * (1025 - len(PREFIX) - 4) + ".csv": "key_too_long",
}


def key_of_bytes(total: int, segment_bytes: int = 200) -> str:
    """A ``total``-byte key of 2-byte characters in segments of ``segment_bytes`` (< 255)."""
    name_bytes = total - len(PREFIX.encode())
    segments = []
    while name_bytes - (segment_bytes + 1) >= 5 + 4:
        segments.append("é" * (segment_bytes // 2))
        name_bytes -= segment_bytes + 1
    key = PREFIX + "/".join([*segments, "a" * (name_bytes - 4) + ".csv"])
    assert len(key.encode()) == total and all(len(s.encode()) <= 255 for s in key.split("/"))
    return key


LEGAL_NAMES = ["ünïcødé 名前.csv", "with space+plus.csv", "%2E%2E/literal percent.csv", "x..y.csv"]
LONG_SEGMENT = PREFIX + "s" * 300 + ".csv"  # legal on S3, impossible on a local filesystem


def status_of(index: int) -> str:
    return SUSPENDED if index % 10 == 7 else OFFBOARDED if index % 50 == 9 else ACTIVE


@dataclass
class InputsRun:
    lake_dir: Path
    truth: GroundTruth
    records: int
    sent: list[str]
    expected: dict[str, int]
    legal_keys: list[str]
    gate_seconds: float
    done: Any


def write_registry(path: Path) -> tuple[LocalRegistry, float]:
    registry = LocalRegistry(path)
    started = time.monotonic()
    registry.put_tenants(
        Tenant(name=f"t{i:05d}", group=GROUP, bucket="demo-lake", region="us-east-1", status=status_of(i))
        for i in range(TENANTS)
    )
    return registry, time.monotonic() - started


def hostile_message(lake: Lake, raw_key: str) -> str:
    """A create notification whose key field is exactly ``raw_key`` (already URL-encoded)."""
    body = json.loads(
        lake.notification("placeholder", "ObjectCreated:Put", "0A", "2024-03-01T12:00:00.000Z", b"x")
    )
    body["Records"][0]["s3"]["object"]["key"] = raw_key
    return json.dumps(body)


@pytest.fixture(scope="module")
def inputs_run(spark: Any, tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str) -> InputsRun:
    tmp = tmp_path_factory.mktemp("inputs")
    lake_dir = tmp / "lake"
    registry, write_seconds = write_registry(tmp / "registry" / "registry.json")
    started = time.monotonic()
    gate = TenantGate(registry, GROUP)
    reasons = Counter(gate.hold_reason(f"t{i:05d}") for i in range(TENANTS))
    gate_seconds = time.monotonic() - started
    print(
        f"registry: {TENANTS} tenants written in {write_seconds:.2f}s, loaded and gated in {gate_seconds:.2f}s"
    )
    assert reasons[None] == sum(status_of(i) == ACTIVE for i in range(TENANTS))
    assert reasons[TENANT_SUSPENDED] == sum(status_of(i) == SUSPENDED for i in range(TENANTS))

    lake = Lake(lake_dir, seed=13)
    truth = GroundTruth(bucket="demo-lake", columns={"orders": ORDERS})
    active = [f"t{i:05d}" for i in range(100, 400, 12) if status_of(i) == ACTIVE][:24]
    suspended = [f"t{i:05d}" for i in range(1000, 1100) if status_of(i) == SUSPENDED][:4]
    offboarded = [f"t{i:05d}" for i in range(2000, 2300) if status_of(i) == OFFBOARDED][:3]
    unknown = ["u00001", "u00002", "newco", "t10000"]
    for tenant in [*active, *suspended, *offboarded, *unknown]:
        key = lake.put(tenant, "orders", "a.csv", rows=2)
        if tenant in active:
            record(truth, lake, tenant, key)
    legal = [lake.put(HOSTILE, "orders", name, rows=2) for name in LEGAL_NAMES]
    legal.append(lake.put(HOSTILE, "orders", key_of_bytes(1024)[len(PREFIX) :], rows=2))
    for key in legal:
        record(truth, lake, HOSTILE, key)
    messages = [*lake.messages, *(hostile_message(lake, raw) for raw in FORBIDDEN)]
    messages.append(hostile_message(lake, LONG_SEGMENT))

    queue_url, _ = kit.make_queue(moto_endpoint)
    config = kit.write_config(tmp, lake_dir, moto_endpoint, queue_url, max_files_per_trigger=50)
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["registry"] = {"backend": "local", "path": str(registry.path), "refresh_seconds": 30}
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    sent = kit.send_all(moto_endpoint, queue_url, messages)
    expected = {
        "applied": len(active) + len(legal),
        "parked": len(suspended) + len(unknown),
        "dropped": len(offboarded),
        "rejected": len(FORBIDDEN),
    }
    records = sum(len(parse_message(m)) for m in messages)
    done = kit.run_here(spark, config, "stream", "--trigger", "available-now")
    return InputsRun(lake_dir, truth, records, sent, expected, legal, gate_seconds, done)


def record(truth: GroundTruth, lake: Lake, tenant: str, key: str) -> None:
    rows = lake.oracle[(tenant, "orders")][key]
    truth.record_put(tenant, "orders", key, [dict(zip(ORDERS, r, strict=True)) for r in rows])


def ops_rows(lake_dir: Path, table: str) -> list[dict[str, Any]]:
    found = kit.read_table(kit.ops_dir(lake_dir, table))
    return [] if found is None else found.to_pylist()


def test_ten_thousand_tenant_registry_gates_events_correctly(inputs_run: InputsRun) -> None:
    run = inputs_run
    assert run.done.returncode == 0, run.done.stderr[-4000:]
    assert run.gate_seconds < 60, f"loading and gating {TENANTS} tenants took {run.gate_seconds:.1f}s"
    result = verify(run.lake_dir, run.truth)
    assert result.ok, result.summary()
    rows = ops_rows(run.lake_dir, "batch_metrics")
    kit.assert_balanced(rows)
    totals = {k: sum(r[k] for r in rows) for k in run.expected}
    assert totals == run.expected
    held = Counter(r["reason"] for r in ops_rows(run.lake_dir, "held"))
    assert held == {TENANT_SUSPENDED: 4, TENANT_UNKNOWN: 4, TENANT_OFFBOARDED: 3}


def test_hostile_keys_are_rejected_with_a_reason_and_legal_odd_keys_keep_exact_lineage(
    inputs_run: InputsRun,
) -> None:
    run = inputs_run
    assert run.done.returncode == 0, run.done.stderr[-4000:]
    rejected = Counter(r["reason"] for r in ops_rows(run.lake_dir, "rejected"))
    assert rejected == Counter(FORBIDDEN.values())
    table = kit.read_table(kit.silver_dir(run.lake_dir, HOSTILE, "orders"))
    assert table is not None
    assert sorted(set(table.column("_source_key").to_pylist())) == sorted(run.legal_keys)
    # Nothing was written outside the tenants' own raw, silver and quarantine prefixes.
    tenants_with_tables = {t for t, _ in run.truth.table_pairs()}
    bucket = run.lake_dir / "demo-lake"
    for path in bucket.glob("*/*"):
        tenant, zone = path.relative_to(bucket).parts
        assert zone == "raw" or (zone in ("silver", "quarantine") and tenant in tenants_with_tables), path
    assert not [p for p in bucket.iterdir() if not p.is_dir()], "a file at the bucket's top level"
    assert sorted(p.name for p in run.lake_dir.iterdir()) == ["_ops", "demo-lake"]
    # The one segment longer than 255 bytes cannot exist locally: a counted outcome, not a crash.
    rows = ops_rows(run.lake_dir, "batch_metrics")
    progress = ops_rows(run.lake_dir, "stream_progress")
    dropped = sum(r["duplicates_dropped"] + r["late_dropped"] for r in progress)
    # R7: every landed record reached one outcome; a message SQS delivered twice was deduplicated.
    assert set(run.sent) <= set(kit.bronze_message_ids(run.lake_dir))
    assert sum(r["records_in"] for r in rows) + dropped == bronze_record_count(run.lake_dir)
    assert sum(r["records_in"] - r["duplicate"] for r in rows) == run.records
    long_segment = [r for r in ops_rows(run.lake_dir, "quarantine") if r["key"] == LONG_SEGMENT]
    assert len(long_segment) == 1, ops_rows(run.lake_dir, "quarantine")
    print(f"a {len(LONG_SEGMENT.split('/')[-1])}-byte segment: quarantined, {long_segment[0]['reason']}")

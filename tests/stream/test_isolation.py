"""Tenant isolation (R2, R10): no event makes the job write outside its tenant's silver/quarantine.

One end-to-end run (moto's SQS -> bridge -> bronze -> stream -> Iceberg) takes the
traffic simulator's multi-tenant traffic plus hostile notifications: ``..``
segments plain and URL-encoded, absolute keys, a key aimed at another tenant's
silver table, control characters, empty segments, and bucket names that are
themselves paths. Decoy files sit where an escaping read would land. Afterwards
the whole directory the lake lives in is audited against a snapshot taken
before the run. Every expectation comes from the inputs (the simulator's truth,
the hostile list), never from the job's output.
"""

from __future__ import annotations

import hashlib
import json
import os
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.storage import object_uri, silver_location, silver_table_name
from tests import streamkit as kit
from tests.test_security_logs import ACCESS_KEY, SECRET_KEY, SESSION_TOKEN, assert_clean

BUCKET = "demo-lake"
GROUP = "e2e"


# ---- unit: the functions that map names to write locations refuse escapes -----------------------------

ESCAPES = [
    ("..", "acme", "orders"),
    (BUCKET, "..", "orders"),
    (BUCKET, "acme", ".."),
    (BUCKET, "acme/../initech", "orders"),
    (BUCKET, "acme", "orders/../../initech/silver/orders"),
    ("demo-lake/initech", "acme", "orders"),
    (BUCKET, "/etc", "orders"),
    (BUCKET, "", "orders"),
    (BUCKET, "acme", ""),
    ("", "acme", "orders"),
    (BUCKET, "acme\n", "orders"),
    (BUCKET, "acme", "orders\x00"),
    (BUCKET, ".", "orders"),
]


@pytest.mark.unit
@pytest.mark.parametrize(("bucket", "tenant", "dataset"), ESCAPES)
def test_write_locations_refuse_names_that_escape(bucket: str, tenant: str, dataset: str) -> None:
    with pytest.raises(ValueError, match="unsafe"):
        silver_location("file:///lake/", bucket, tenant, dataset)
    with pytest.raises(ValueError, match="unsafe"):
        silver_table_name("silverline", bucket, tenant, dataset)


@pytest.mark.unit
@pytest.mark.parametrize("zone", ["raw", "..", "", "silver/../raw", None])
def test_write_locations_only_know_silver_and_quarantine(zone: str | None) -> None:
    with pytest.raises(ValueError, match="unsafe"):
        silver_location("s3://", BUCKET, "acme", "orders", zone)  # type: ignore[arg-type]


@pytest.mark.unit
def test_write_locations_of_valid_names() -> None:
    assert silver_location("s3://", BUCKET, "acme", "orders") == "s3://demo-lake/acme/silver/orders"
    assert (
        silver_location("file:///l/", "b.1", "a-1_B", "d_2", "quarantine")
        == "file:///l/b.1/a-1_B/quarantine/d_2"
    )
    assert silver_table_name("c", BUCKET, "acme", "orders") == "`c`.`demo-lake`.`acme`.`silver`.`orders`"


@pytest.mark.unit
@pytest.mark.parametrize(
    ("bucket", "key"),
    [("..", "acme/raw/orders/a.csv"), ("a/b", "acme/raw/orders/a.csv"), (BUCKET, "acme/raw/../../x"),
     (BUCKET, "/etc/passwd"), (BUCKET, "acme/raw/orders/./a.csv"), ("", "acme/raw/orders/a.csv")],
)  # fmt: skip
def test_object_uris_refuse_keys_and_buckets_that_escape(bucket: str, key: str) -> None:
    with pytest.raises(ValueError, match="unsafe"):
        object_uri("file:///lake/", bucket, key)


# ---- end to end -----------------------------------------------------------------------------------


def s3_body(bucket: str, raw_key: str, name: str = "ObjectCreated:Put") -> str:
    """A direct S3 notification; ``raw_key`` is put in the message as given (already URL-encoded)."""
    obj = {"key": raw_key, "size": 10, "eTag": "0" * 32, "sequencer": "00AA00000000000001"}
    record = {"eventVersion": "2.1", "eventSource": "aws:s3", "awsRegion": "us-east-1",
              "eventTime": "2024-03-01T12:00:00.000Z", "eventName": name,
              "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": bucket}, "object": obj}}  # fmt: skip
    return json.dumps({"Records": [record]})


def eventbridge_body(bucket: str, key: str) -> str:
    """An EventBridge event: keys are not URL-encoded."""
    return json.dumps({"version": "0", "id": "1", "detail-type": "Object Created", "source": "aws.s3",
                       "time": "2024-03-01T12:00:00Z", "region": "us-east-1",
                       "detail": {"bucket": {"name": bucket},
                                  "object": {"key": key, "size": 10, "etag": "0" * 32, "sequencer": "00AA01"}}})  # fmt: skip


HOSTILE_KEYS = [  # (bucket, key as it appears in the message)
    (BUCKET, "acme/raw/../../initech/silver/x.csv"),
    (BUCKET, "acme%2Fraw%2F..%2F..%2Finitech%2Fsilver%2Forders%2Fx.csv"),
    (BUCKET, "acme/raw/orders/%2E%2E/%2E%2E/%2E%2E/initech/raw/orders/decoy.csv"),
    (BUCKET, "acme/raw/orders/..%2F..%2F..%2Finitech%2Fraw%2Forders%2Fdecoy.csv"),
    (BUCKET, "/acme/raw/orders/abs.csv"),
    (BUCKET, "%2Fetc%2Fpasswd"),
    (BUCKET, "..%2Finitech%2Fraw%2Forders%2Fdecoy.csv"),
    (BUCKET, "acme/raw/..%2Fdecoy.csv"),
    (BUCKET, "acme//raw/orders/decoy.csv"),
    (BUCKET, "acme/raw/orders/ctl%0A%0D.csv"),
    (BUCKET, "acme/raw/orders/nul%00.csv"),
    (BUCKET, "acme/raw/orders/esc%1B%5B31m.csv"),
    (BUCKET, "initech%2Fsilver%2Forders%2Fdata%2Fevil.parquet"),
    (BUCKET, "acme/raw/" + "a" * 1030 + ".csv"),
]
# Not sent: a notification naming an unsafe bucket ("..", "demo-lake/initech") or one the lake does not
# mirror stops the job (see test_object_uris_refuse_keys_and_buckets_that_escape: it can no longer escape).
EVENTBRIDGE_KEYS = [
    (BUCKET, "acme/raw/orders/../../../initech/raw/orders/decoy.csv"),
    (BUCKET, "/acme/raw/orders/a.csv"),
]
DECOYS = [  # where an escaping read would find a readable orders file (relative to the lake's parent)
    f"lake/{BUCKET}/initech/raw/orders/decoy.csv",
    f"lake/{BUCKET}/acme/raw/decoy.csv",
]
DECOY_CSV = "order_id,customer_id,amount,currency,order_ts\n999,evil,1.00,EUR,2024-03-01T00:00:00Z\n"


def snapshot(root: Path) -> dict[str, str]:
    return {
        str(p.relative_to(root)): hashlib.sha256(p.read_bytes()).hexdigest()
        for p in root.rglob("*")
        if p.is_file()
    }


def allowed(rel: str, tenants: set[str]) -> bool:
    """Where the job may create or change files: a tenant's silver/quarantine, or the ops root."""
    parts = Path(rel).parts
    if parts[:3] == ("lake", "_ops", GROUP):
        return True
    return (
        len(parts) > 4
        and parts[:2] == ("lake", BUCKET)
        and parts[2] in tenants
        and parts[3] in ("silver", "quarantine")
    )


def job_env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SILVERLINE__", "AWS_"))}
    return {**base, "AWS_ACCESS_KEY_ID": ACCESS_KEY, "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
            "AWS_SESSION_TOKEN": SESSION_TOKEN, "AWS_DEFAULT_REGION": "us-east-1"}  # fmt: skip


@pytest.mark.integration
def test_hostile_keys_never_write_outside_their_tenants_prefix(tmp_path: Path, moto_endpoint: str) -> None:
    from jobs.simulate import SimulationSpec, run, verify

    lake_dir = tmp_path / "lake"
    spec = SimulationSpec(tenants=3, objects=30, dup_rate=0.2, seed=41, bucket=BUCKET)
    bodies, truth = run(spec, lake_dir)
    tenants = set(truth.tables) | {key.split("/")[0] for key in truth.quarantined}
    assert len(tenants) == 3
    for rel in DECOYS:
        (tmp_path / rel).parent.mkdir(parents=True, exist_ok=True)
        (tmp_path / rel).write_text(DECOY_CSV)
    hostile = [s3_body(b, k) for b, k in HOSTILE_KEYS] + [eventbridge_body(b, k) for b, k in EVENTBRIDGE_KEYS]
    queue_url, _ = kit.make_queue(moto_endpoint)
    config = kit.write_config(tmp_path, lake_dir, moto_endpoint, queue_url)
    before = snapshot(tmp_path)
    raw_before = {rel: h for rel, h in before.items() if Path(rel).parts[3:4] == ("raw",)}
    kit.send_all(moto_endpoint, queue_url, bodies + hostile)

    cmd = [sys.executable, "-m", "jobs", "--log-level", "DEBUG", "stream", "--config", str(config),
           "--trigger", "available-now"]  # fmt: skip
    done = subprocess.run(cmd, capture_output=True, text=True, timeout=420, env=job_env(), check=False)
    assert done.returncode == 0, done.stderr[-4000:]

    after = snapshot(tmp_path)
    changed = sorted(rel for rel, h in after.items() if before.get(rel) != h)
    assert changed, "the job wrote nothing"
    escaped = [rel for rel in changed if not allowed(rel, tenants)]
    assert escaped == [], f"written outside silver/quarantine/ops: {escaped[:10]}"
    assert {rel: after.get(rel) for rel in raw_before} == raw_before  # raw objects untouched, none removed
    assert not [rel for rel in after if rel not in before and "decoy" in rel]

    # R10: each tenant's tables hold rows of that tenant's own raw objects only.
    seen = 0
    for table_dir in sorted((lake_dir / BUCKET).glob("*/*/*")):
        tenant, zone = table_dir.parts[-3], table_dir.parts[-2]
        if zone not in ("silver", "quarantine") or kit.latest_metadata(table_dir) is None:
            continue
        data = kit.read_table(table_dir)
        assert data is not None
        names = set(data.column_names)
        if "_source_key" in names:
            keys = set(data.column("_source_key").to_pylist())
            assert all(k.startswith(f"{tenant}/raw/") and ".." not in k.split("/") for k in keys), (
                tenant,
                keys,
            )
            seen += len(keys)
        if "_source_bucket" in names:
            assert set(data.column("_source_bucket").to_pylist()) <= {BUCKET}
        if "order_id" in names:
            assert 999 not in data.column("order_id").to_pylist()  # no decoy row anywhere
    assert seen > 0
    result = verify(lake_dir, truth)
    assert result.ok, result.summary()
    assert_clean(done.stderr)  # the same run: DEBUG logs with fake secrets in the environment

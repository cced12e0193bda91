"""Exactly once per object, whatever the batch id (R6, R7): the crash windows between a batch's effects.

Each test drives the stream's micro-batch writer in process on the session's Spark,
with its own lake and Iceberg catalogs, and stops it where a crash would: an
exception raised by the step right after the one that must survive. The "restart"
is a new writer on the same lake, as a restarted job builds. Expectations come
from the objects the test wrote (tests/lakegen.py's oracle), never from the job.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from collections.abc import Callable
from pathlib import Path
from typing import Any

import boto3
import pytest

from jobs.stream import ledger
from jobs.stream.ops import ops_table
from jobs.stream.ops_writer import EVENT_FIELDS, OpsWriter
from tests.s3deny import DenyingS3Proxy
from tests.stream.conftest import Harness

pytestmark = pytest.mark.spark


class CrashError(Exception):
    """Stands for the process dying at this point."""


def crash_once(monkeypatch: pytest.MonkeyPatch, owner: Any, name: str) -> list[int]:
    """Make ``owner.name`` raise :class:`CrashError` on its first call; returns the call counter."""
    real: Callable[..., Any] = getattr(owner, name)
    calls = [0]

    def crashing(*args: Any, **kwargs: Any) -> Any:
        calls[0] += 1
        if calls[0] == 1:
            raise CrashError(f"killed in {name}")
        return real(*args, **kwargs)

    monkeypatch.setattr(owner, name, crashing)
    return calls


def test_a_crash_between_the_silver_commit_and_the_ledger_never_doubles_rows_under_a_new_query_id(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Window (a): a new object's rows are a plain append; replayed under another id they came twice."""
    lake = harness.lake
    lake.put("acme", "orders", "a.csv", rows=4, tag=11)
    lake.put("globex", "orders", "g.csv", rows=3, tag=12)
    calls = crash_once(monkeypatch, ledger, "update_ledger")

    with pytest.raises(CrashError):
        harness.writer("query-1")(harness.batch(lake.messages), 3)
    assert calls[0] == 1
    assert harness.silver("acme") == lake.expected_rows("acme", "orders")  # committed, ledger not

    # --reset-checkpoint: a new query id, batch ids from 0, bronze read again
    harness.writer("query-2")(harness.batch(lake.messages), 0)

    assert harness.silver("acme") == lake.expected_rows("acme", "orders")
    assert harness.silver("globex") == lake.expected_rows("globex", "orders")
    assert harness.ledger_keys() == {"acme/raw/orders/a.csv": "live", "globex/raw/orders/g.csv": "live"}


def test_a_replayed_batch_records_in_the_ledger_only_what_its_skipped_commit_held(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Window (b): the replay recomputes more objects for a table its first run already committed."""
    lake = harness.lake
    lake.put("acme", "orders", "a.csv", rows=4, tag=21)
    first = list(lake.messages)
    crash_once(monkeypatch, ledger, "update_ledger")
    with pytest.raises(CrashError):
        harness.writer("query-1")(harness.batch(first), 5)

    # The replay of batch 5 recomputes its inputs: now another object of the same table
    # (as a handed-over request file or a released held tenant would bring) comes with it.
    lake.put("acme", "orders", "b.csv", rows=2, tag=22)
    writer = harness.writer("query-1")
    writer(harness.batch(lake.messages), 5)
    writer.retry_pass("query-1")  # whatever the replay could not commit goes through here

    assert harness.silver("acme") == lake.expected_rows("acme", "orders")
    assert harness.ledger_keys() == {"acme/raw/orders/a.csv": "live", "acme/raw/orders/b.csv": "live"}


def test_an_overwritten_objects_ledger_row_is_replaced_by_position_in_one_commit(harness: Harness) -> None:
    lake, spark = harness.lake, harness.spark
    writer = harness.writer("query-1")
    lake.put("acme", "orders", "a.csv", rows=2, tag=41)
    writer(harness.batch(lake.messages), 0)
    lake.put("acme", "orders", "a.csv", rows=3, tag=42)  # a new version of the same object
    lake.put("acme", "orders", "b.csv", rows=1, tag=43)
    writer(harness.batch(lake.messages[-2:]), 1)

    table = ops_table(harness.config, "ledger")
    last = spark.sql(f"SELECT operation, summary FROM {table}.snapshots ORDER BY committed_at DESC").first()
    # One RowDelta: a's old row deleted by position, a's and b's new rows added.
    assert last["operation"] == "overwrite"
    assert (last["summary"]["added-position-deletes"], last["summary"]["added-records"]) == ("1", "2")
    newest = hashlib.md5(lake.path("acme/raw/orders/a.csv").read_bytes()).hexdigest()
    assert [r["etag"] for r in spark.table(table).collect() if r["key"].endswith("/a.csv")] == [newest]
    assert harness.ledger_keys() == {"acme/raw/orders/a.csv": "live", "acme/raw/orders/b.csv": "live"}
    assert harness.silver("acme") == lake.expected_rows("acme", "orders")


def test_an_event_leaving_the_retry_table_is_quarantined_even_across_a_crash(
    harness: Harness, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Window (c): the retry table was rewritten before the quarantine row was written."""
    config = harness.config
    event = {
        "bucket": "demo-lake",
        "key": "acme/raw/undeclared/x.csv",  # no contract: quarantined as unknown_dataset
        "tenant": "acme",
        "dataset": "undeclared",
        "event_kind": "created",
        "event_name": "ObjectCreated:Put",
        "event_time": dt.datetime(2024, 3, 1, 12, 0),
        "sequencer": "00000000000000000A",
        "size": 10,
        "event_id": "retry-event-1",
        "message_id": "m-1",
    }
    retry_schema = harness.spark.table(ops_table(config, "retry")).schema
    row = (1, "commit failed: earlier", *[event.get(f) for f in EVENT_FIELDS])
    harness.spark.createDataFrame([row], retry_schema).writeTo(ops_table(config, "retry")).append()
    crash_once(monkeypatch, OpsWriter, "write_quarantine")

    with pytest.raises(CrashError):
        harness.writer("query-1").retry_pass("query-1")
    harness.writer("query-1").retry_pass("query-1")  # the restarted job's retry pass

    quarantined = [(r["key"], r["reason"]) for r in harness.ops_rows("quarantine")]
    assert quarantined == [("acme/raw/undeclared/x.csv", "unknown_dataset")]
    assert harness.ops_rows("retry") == []
    assert harness.ledger_keys() == {"acme/raw/undeclared/x.csv": "quarantined"}


def test_a_writer_clears_staged_rows_only_once_it_holds_the_writer_lease(harness: Harness) -> None:
    """A second stream process builds its writer before waiting for the lease: the running
    writer's staged rows must survive that; the lease holder's take-over clears a crashed one's."""
    from jobs.silver.staging import staging_uri

    staging = Path(staging_uri(harness.config).removeprefix("file://"))
    staging.mkdir(parents=True)
    staged = staging / "batch7-running-writer.parquet"
    staged.write_bytes(b"rows of the running writer's batch")

    waiting = harness.writer("query-2")  # built while another process holds the lease
    assert staged.exists()

    waiting.take_over()  # now it holds the lease: what is staged was left by a crashed writer
    assert not staged.exists()


def test_a_writer_that_lost_the_lease_commits_nothing(harness: Harness) -> None:
    """The lease is checked right before the commits: a writer whose lease was taken over
    (its process stalled past the ttl) aborts the batch instead of committing beside the new holder."""
    from jobs.stream.lease import LeaseLostError, WriterLease

    lake = harness.lake
    lake.put("acme", "orders", "a.csv", rows=3, tag=31)
    stalled = WriterLease.for_config(harness.config, "stream")
    assert stalled.try_acquire()
    (harness.lake_dir / "_ops" / "xo" / "leases" / "writer.json").unlink()  # its lease lapsed ...
    successor = WriterLease.for_config(harness.config, "backfill")
    assert successor.try_acquire()  # ... and a backfill took it

    writer = harness.writer("query-1")
    writer.lease = stalled
    with pytest.raises(LeaseLostError):
        writer(harness.batch(lake.messages), 0)
    assert harness.silver("acme") == []
    assert harness.ledger_keys() == {}
    successor.release()


def test_an_object_s3_refuses_to_serve_fails_only_its_table_and_is_parked_with_the_code(
    make_harness: Callable[..., Harness], s3_proxy: DenyingS3Proxy
) -> None:
    """R10: AccessDenied on one tenant's object (a KMS key the job may not use) must not fail the
    batch, which the restart would replay forever; the other tenants commit, the object is
    retried, then parked with S3's error code. The objects are in moto's S3, read by the
    job's tasks through a proxy that refuses to serve the one object, as S3 would."""
    bucket = f"deny-{uuid.uuid4().hex[:10]}"
    harness = make_harness(bucket=bucket, lake={"objects_root": "s3://"}, aws={"endpoint_url": s3_proxy.url})
    s3 = boto3.client("s3", endpoint_url=s3_proxy.url, region_name="us-east-1")
    s3.create_bucket(Bucket=bucket)
    lake = harness.lake
    denied_key = lake.put("acme", "orders", "kms.csv", rows=3, tag=41)
    good_key = lake.put("globex", "orders", "g.csv", rows=2, tag=42)
    for key in (denied_key, good_key):
        s3.put_object(Bucket=bucket, Key=key, Body=lake.path(key).read_bytes())
    s3_proxy.deny(bucket, denied_key)
    writer = harness.writer("query-1")
    writer(harness.batch(lake.messages), 0)  # no exception: the batch goes through

    assert harness.silver("globex") == lake.expected_rows("globex", "orders")
    assert harness.silver("acme") == []
    assert harness.ledger_keys() == {"globex/raw/orders/g.csv": "live"}
    retrying = harness.ops_rows("retry")
    assert [(r["key"], r["attempts"]) for r in retrying] == [(denied_key, 1)]
    assert "AccessDenied" in retrying[0]["last_error"]
    (metrics,) = [r for r in harness.ops_rows("batch_metrics") if r["batch_id"] == 0]
    assert (metrics["records_in"], metrics["applied"], metrics["deferred"]) == (2, 1, 1)  # R7
    assert (metrics["tables_committed"], metrics["tables_failed"]) == (1, 1)

    for _ in range(harness.config.stream.max_attempts):  # retried with back-off, then parked
        writer.retry_pass("query-1")
    parked = harness.ops_rows("parked")
    assert [r["key"] for r in parked] == [denied_key]
    assert "AccessDenied" in parked[0]["reason"] and parked[0]["reason"].startswith("read failed")
    assert harness.ops_rows("retry") == []


def test_ops_rows_of_a_new_query_never_replace_the_old_querys_rows_of_the_same_batch_id(
    harness: Harness,
) -> None:
    """After --reset-checkpoint batch ids restart at 0: batch 0 of the new query must not overwrite
    the held, parked, quarantine or metrics rows of batch 0 of the old one (R7)."""
    ops = OpsWriter(harness.spark, harness.config, None)
    blank = (None,) * len(EVENT_FIELDS)
    event = dict(zip(EVENT_FIELDS, blank, strict=True))
    old_event = {**event, "key": "acme/raw/orders/old.csv", "event_id": "old"}
    new_event = {**event, "key": "acme/raw/orders/new.csv", "event_id": "new"}

    ops.query_id = "query-old"
    ops.write_held([(old_event, "tenant_suspended")], 0)
    ops.write_quarantine([(old_event, "unknown_dataset", None)], 0)
    ops.query_id = "query-new"  # the reset's query: its first batch is batch 0 again
    ops.write_held([(new_event, "tenant_suspended")], 0)
    ops.write_quarantine([(new_event, "unknown_dataset", None)], 0)
    ops.write_held([(new_event, "tenant_suspended")], 0)  # a replay of the new batch 0: its own rows

    for name in ("held", "quarantine"):
        rows = sorted((r["query_id"], r["key"]) for r in harness.ops_rows(name))
        assert rows == [("query-new", "acme/raw/orders/new.csv"), ("query-old", "acme/raw/orders/old.csv")]
    # A batch's first rows are a metadata-only append; only the replay rewrites (its own rows).
    held = ops_table(harness.config, "held")
    snapshots = harness.spark.sql(f"SELECT operation, summary FROM {held}.snapshots ORDER BY committed_at")
    operations = [(r["operation"], r["summary"].get("silverline.query-id")) for r in snapshots.collect()]
    assert operations[-3:-1] == [("append", "query-old"), ("append", "query-new")]
    assert operations[-1][0] == "overwrite"


def test_a_batch_reads_the_ledger_maintenance_rewrote_and_expired_in_another_process(
    harness: Harness,
) -> None:
    """The session caches tables: a ledger snapshot another process expired must not be read."""
    from datetime import UTC, datetime

    from jobs.session import catalog_settings

    spark, config = harness.spark, harness.config
    lake = harness.lake
    writer = harness.writer("query-1")
    lake.put("acme", "orders", "a.csv", rows=2, tag=31)
    writer(harness.batch(lake.messages), 0)
    lake.put("acme", "orders", "b.csv", rows=2, tag=32)
    writer(harness.batch(lake.messages[-1:]), 1)  # the ledger now has two data files

    # "Another process": a second catalog on the same warehouse, as `silverline maintain` has.
    ops = ops_table(config, "ledger").split(".")[0].strip("`")
    other = f"{ops}_maint"
    prefix = f"spark.sql.catalog.{ops}"
    for key, value in catalog_settings(config).items():
        if key == prefix or key.startswith(prefix + "."):
            spark.conf.set(f"spark.sql.catalog.{other}{key[len(prefix) :]}", value)
    table = ".".join(ops_table(config, "ledger").split(".")[1:]).replace("`", "")
    spark.sql(
        f"CALL {other}.system.rewrite_data_files(table => '{table}', options => map('min-input-files', '2'))"
    )
    now = datetime.now(UTC).strftime("%Y-%m-%d %H:%M:%S.%f")
    spark.sql(
        f"CALL {other}.system.expire_snapshots(table => '{table}', older_than => TIMESTAMP '{now}', retain_last => 1)"
    )

    lake.put("acme", "orders", "c.csv", rows=2, tag=33)
    writer(harness.batch(lake.messages[-1:]), 2)  # judged against the ledger the other catalog rewrote

    assert harness.silver("acme") == lake.expected_rows("acme", "orders")
    assert set(harness.ledger_keys()) == {f"acme/raw/orders/{n}.csv" for n in "abc"}

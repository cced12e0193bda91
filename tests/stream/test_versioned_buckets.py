"""Versioned buckets (R5, R9): silver follows each object's current version.

One object of a versioned bucket in moto's S3 goes through the S3 operations a
versioned bucket sees: overwrites, a permanent delete of the current version (the
previous one is current again), a permanent delete of a noncurrent version (nothing
changes), a delete marker (the object is hidden) and the delete of that marker (it
is back). After each, the micro-batch writer (in process, on the session's Spark)
applies the notifications S3 would have sent, and silver must hold exactly the rows
of the version S3 itself serves as current. Expectations come from the rows written.
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Callable
from typing import Any

import boto3
import pytest

from tests import streamkit as kit
from tests.lakegen import Lake
from tests.s3deny import DenyingS3Proxy
from tests.stream.conftest import Harness

pytestmark = pytest.mark.spark

KEY = "acme/raw/orders/a.csv"


class VersionedObject:
    """One key of a versioned bucket: S3 calls, and the notification each one sends."""

    def __init__(self, s3: Any, bucket: str) -> None:
        self.s3, self.bucket = s3, bucket
        self.sequencer = 0x0A00

    def notification(self, name: str, version_id: str, etag: str | None = None) -> str:
        self.sequencer += 0x10
        obj: dict[str, Any] = {"key": KEY, "versionId": version_id, "sequencer": f"{self.sequencer:016X}"}
        if etag:
            obj.update({"eTag": etag.strip('"'), "size": 10})
        record = {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "eventTime": "2024-03-01T12:00:00.000Z",
            "eventName": name,
            "s3": {"bucket": {"name": self.bucket}, "object": obj},
        }
        return json.dumps({"Records": [record]})

    def put(self, data: bytes) -> tuple[str, str]:
        response = self.s3.put_object(Bucket=self.bucket, Key=KEY, Body=data)
        version = response["VersionId"]
        return version, self.notification("ObjectCreated:Put", version, response["ETag"])

    def delete_version(self, version: str) -> str:
        self.s3.delete_object(Bucket=self.bucket, Key=KEY, VersionId=version)
        return self.notification("ObjectRemoved:Delete", version)

    def delete(self) -> tuple[str, str]:
        response = self.s3.delete_object(Bucket=self.bucket, Key=KEY)
        assert response.get("DeleteMarker")
        marker = response["VersionId"]
        return marker, self.notification("ObjectRemoved:DeleteMarkerCreated", marker)


def silver_versions(h: Harness) -> set[str]:
    table = kit.read_table(kit.silver_dir(h.lake_dir, "acme", "orders", h.config.group.bucket))
    return set() if table is None else set(table.column("_source_version_id").to_pylist())


def versioned_lake(
    make_harness: Callable[..., Harness], endpoint: str, **overrides: Any
) -> tuple[Any, str, Harness]:
    """A new versioned bucket in moto's S3, and a harness whose job reads it through ``endpoint``."""
    s3 = boto3.client("s3", endpoint_url=endpoint, region_name="us-east-1")
    bucket = f"ver-{uuid.uuid4().hex[:10]}"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    h = make_harness(
        bucket=bucket, lake={"objects_root": "s3://"}, aws={"endpoint_url": endpoint}, **overrides
    )
    return s3, bucket, h


def test_silver_follows_the_current_version_of_a_versioned_object(
    make_harness: Callable[..., Harness], moto_endpoint: str
) -> None:
    s3, bucket, h = versioned_lake(make_harness, moto_endpoint)
    content = Lake(h.lake_dir, bucket=bucket)
    rows = {tag: content.orders_rows(n, tag) for tag, n in ((51, 3), (52, 2), (53, 4))}
    obj = VersionedObject(s3, bucket)
    writer = h.writer("query-1")

    def expect(tag: int | None) -> list[tuple[Any, ...]]:
        return [] if tag is None else sorted(rows[tag], key=repr)

    v1, put_v1 = obj.put(Lake.orders_csv(rows[51]))
    v2, put_v2 = obj.put(Lake.orders_csv(rows[52]))
    writer(h.batch([put_v1, put_v2]), 0)
    assert h.silver("acme") == expect(52)

    # the current version deleted for good: the previous one is current again
    writer(h.batch([obj.delete_version(v2)]), 1)
    assert h.silver("acme") == expect(51)
    assert silver_versions(h) == {v1}  # lineage names the version read (R8)

    # a noncurrent version deleted for good (a noncurrent-version lifecycle rule): nothing changes,
    # even in the same batch as a newer overwrite whose event it outranks
    v3, put_v3 = obj.put(Lake.orders_csv(rows[53]))
    writer(h.batch([put_v3, obj.delete_version(v1)]), 2)
    assert h.silver("acme") == expect(53)
    assert silver_versions(h) == {v3}

    # a delete marker hides the object ...
    marker, hidden = obj.delete()
    writer(h.batch([hidden]), 3)
    assert h.silver("acme") == expect(None)
    assert h.ledger_keys() == {KEY: "deleted"}

    # ... and deleting the marker brings the current version back
    writer(h.batch([obj.delete_version(marker)]), 4)
    assert h.silver("acme") == expect(53)
    assert h.ledger_keys() == {KEY: "live"}


def test_an_older_event_redriven_later_never_applies_over_a_parked_newer_one(
    make_harness: Callable[..., Harness], s3_proxy: DenyingS3Proxy
) -> None:
    """The newest event of an object is parked (its version could not be read); an older event
    of the same object, redriven later from the DLQ, must not put the older version in silver:
    the parked event's sequencer is remembered (R4). Redriving the parked event applies it."""
    s3, bucket, h = versioned_lake(make_harness, s3_proxy.url, stream={"max_attempts": 1})
    content = Lake(h.lake_dir, bucket=bucket)
    old_rows, new_rows = content.orders_rows(3, 61), content.orders_rows(2, 62)
    obj = VersionedObject(s3, bucket)
    _, put_old = obj.put(Lake.orders_csv(old_rows))
    newest, put_new = obj.put(Lake.orders_csv(new_rows))
    s3_proxy.deny(bucket, KEY, newest)  # e.g. a KMS key the job could not use at the time
    writer = h.writer("query-1")
    writer(h.batch([put_new]), 0)
    assert [r["version_id"] for r in h.ops_rows("parked")] == [newest]
    assert s3_proxy.refused[KEY] >= 1
    s3_proxy.allow(bucket, KEY, newest)

    writer(h.batch([put_old]), 1)  # the older event, redriven from the DLQ
    assert h.silver("acme") == []
    (metrics,) = [r for r in h.ops_rows("batch_metrics") if r["batch_id"] == 1]
    assert (metrics["records_in"], metrics["applied"], metrics["stale"]) == (1, 0, 1)

    writer(h.batch([put_new]), 2)  # the operator redrives the parked event
    assert h.silver("acme") == sorted(new_rows, key=repr)
    assert silver_versions(h) == {newest}

"""The S3 paths of batch runs against moto's S3: listing, the request inbox and the writer lease."""

from __future__ import annotations

import hashlib
import time
import uuid
from typing import Any

import boto3
import pytest

from jobs.batchruns.listing import LakeLister
from jobs.bridge.landing import S3BronzeStore
from jobs.config import load_config
from jobs.stream.handoff import RequestInbox
from jobs.stream.lease import WriterLease, _S3Slot

pytestmark = pytest.mark.integration


def s3(endpoint: str) -> Any:
    return boto3.client(
        "s3", endpoint_url=endpoint, region_name="us-east-1", aws_access_key_id="t", aws_secret_access_key="t"
    )


def bucket(endpoint: str) -> str:
    name = f"bucket-{uuid.uuid4().hex[:10]}"
    s3(endpoint).create_bucket(Bucket=name)
    return name


def test_listing_through_the_s3_api_pages_and_keeps_only_raw_objects(moto_endpoint: str) -> None:
    name = bucket(moto_endpoint)
    client = s3(moto_endpoint)
    bodies = {f"acme/raw/orders/{i:04d}.csv": f"order {i}\n".encode() for i in range(1005)}  # > one page
    bodies["acme/raw/clicks/a b+c.jsonl"] = b"{}\n"
    bodies["globex/raw/orders/x.csv"] = b"x\n"
    bodies["acme/silver/orders/data/part-0.parquet"] = b"not raw"
    bodies["nobody/notes.txt"] = b"no raw prefix"
    for key, body in bodies.items():
        client.put_object(Bucket=name, Key=key, Body=body)
    config = load_config(
        None,
        overrides={
            "group": {"name": "g1", "bucket": name},
            "lake": {"root": "s3://ops-unused/", "objects_root": "s3://"},
            "aws": {"endpoint_url": moto_endpoint},
        },
    )
    lister = LakeLister(config, s3_client=client)
    assert lister.tenants() == ["acme", "globex", "nobody"]
    pages: list[int] = []
    listed = {o.key: o for o in lister.objects(["acme", "globex", "nobody"], on_page=pages.append)}
    raw = {k for k in bodies if "/raw/" in k}
    assert set(listed) == raw
    assert sum(pages) == len(raw) and len(pages) >= 3  # 1,006 acme objects need two pages
    one = listed["acme/raw/clicks/a b+c.jsonl"]
    assert one.etag == hashlib.md5(b"{}\n").hexdigest()  # no quotes
    assert one.size == 3 and one.last_modified.tzinfo is not None
    only_clicks = {o.key for o in lister.objects(["acme"], "clicks")}
    assert only_clicks == {"acme/raw/clicks/a b+c.jsonl"}


def test_request_files_on_s3_are_listed_read_and_removed(moto_endpoint: str) -> None:
    name = bucket(moto_endpoint)
    inbox = RequestInbox(S3BronzeStore(name, "ops/requests/", s3(moto_endpoint)))
    event = {"bucket": "b", "key": "t/raw/d/a.csv", "event_id": "e1", "directive": "backfill"}
    names = inbox.submit("backfill-1", [event] * 5001)  # two files
    assert names == ["backfill-1/part-00000.jsonl", "backfill-1/part-00001.jsonl"]
    assert inbox.pending() == names
    inbox.done(names[:1])
    assert inbox.pending("backfill-1") == names[1:]


def test_the_s3_lease_is_exclusive_and_expires(moto_endpoint: str) -> None:
    name = bucket(moto_endpoint)
    client = s3(moto_endpoint)

    def lease(role: str, ttl: float = 60.0) -> WriterLease:
        return WriterLease(_S3Slot(client, name, "ops/leases/writer.json"), role, ttl)

    first, second = lease("stream", ttl=1.0), lease("backfill", ttl=1.0)
    assert first.try_acquire()
    assert not second.try_acquire()  # If-None-Match: * refused the second create
    time.sleep(1.2)
    assert second.try_acquire()  # expired: taken over with If-Match on the old record's eTag
    first.renew(force=True)
    assert not first.held
    first.release()
    holder = lease("other").holder()
    assert holder is not None and holder.role == "backfill"
    second.release()
    assert "Contents" not in client.list_objects_v2(Bucket=name, Prefix="ops/leases/")

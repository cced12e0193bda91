"""SQS bridge against moto's SQS and S3 servers: landing, visibility, failures, redrive."""

from __future__ import annotations

import json
import re
import threading
import time
import uuid
from collections.abc import Callable
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from jobs.bridge import BridgeError, LocalBronzeStore, RetryPolicy, SqsBridge
from jobs.bridge.records import BRONZE_FIELDS
from jobs.config import SilverlineConfig, load_config

pytestmark = pytest.mark.integration

ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
FILE_NAME = re.compile(r"^dt=\d{4}-\d{2}-\d{2}/\d{13}-[A-Za-z0-9-]+-\d{6}\.jsonl$")
GARBAGE = [
    "not json at all",
    "   ",
    "{",
    "null",
    "[1, 2, 3]",
    '{"Records": [',
    "line one\nline two\r\n",
    "ünïcødé ☃ 🎉",
    '{"Service":"Amazon S3","Event":"s3:TestEvent","Time":"2024-01-01T00:00:00.000Z","Bucket":"b"}',
]


# ---- helpers shared with test_bridge_crash.py -------------------------------------------------------


@dataclass(frozen=True)
class Queue:
    url: str
    dlq_url: str


def sqs_client(endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")


def make_queue(client: Any, max_receive_count: int = 5) -> Queue:
    name = f"bridge-{uuid.uuid4().hex[:12]}"
    dlq_url = client.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    arn = client.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
    policy = json.dumps({"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receive_count)})
    url = client.create_queue(QueueName=name, Attributes={"RedrivePolicy": policy})["QueueUrl"]
    return Queue(url, dlq_url)


def sample_bodies(count: int) -> list[str]:
    """Realistic S3 notifications with garbage mixed in (every 5th body)."""
    bodies = []
    for i in range(count):
        if i % 5 == 4:
            bodies.append(GARBAGE[(i // 5) % len(GARBAGE)])
        else:
            record = {
                "eventName": "ObjectCreated:Put",
                "s3": {"object": {"key": f"t{i % 7}/raw/orders/{i}.csv"}},
            }
            bodies.append(json.dumps({"Records": [record]}))
    return bodies


def send(client: Any, url: str, bodies: list[str]) -> dict[str, str]:
    """Send bodies; return message id -> body as SQS acknowledged them."""
    sent: dict[str, str] = {}
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
        response = client.send_message_batch(QueueUrl=url, Entries=entries)
        assert not response.get("Failed"), response.get("Failed")
        sent.update({ok["MessageId"]: chunk[int(ok["Id"])] for ok in response["Successful"]})
    assert len(sent) == len(bodies)
    return sent


def drain(client: Any, url: str) -> dict[str, str]:
    """Receive (without deleting) everything visible: message id -> body."""
    found: dict[str, str] = {}
    empty = 0
    while empty < 2:
        messages = client.receive_message(
            QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=0, VisibilityTimeout=300
        ).get("Messages", [])
        empty = 0 if messages else empty + 1
        found.update({m["MessageId"]: m["Body"] for m in messages})
    return found


def bronze_dir(lake: Path) -> Path:
    return lake / "_ops" / "demo" / "bronze"


def read_bronze(bronze: Path) -> list[dict[str, Any]]:
    """Every line of every landed file (each must be whole, valid JSON)."""
    rows: list[dict[str, Any]] = []
    for path in sorted(bronze.glob("dt=*/*")):
        assert FILE_NAME.match(path.relative_to(bronze).as_posix()), path
        data = path.read_bytes()
        assert data.endswith(b"\n"), f"{path} is not whole"
        rows.extend(json.loads(line) for line in data.splitlines())
    return rows


def bridge_config(lake: Path, endpoint: str, queue_url: str, **bridge: Any) -> SilverlineConfig:
    settings = {
        "receivers": 4,
        "wait_time_seconds": 1,
        "visibility_timeout_seconds": 30,
        "flush_max_messages": 50,
        "flush_interval_seconds": 0.5,
        "max_consecutive_errors": 5,
        **bridge,
    }
    overrides = {
        "lake": {"root": str(lake)},
        "sqs": {"queue_url": queue_url, "endpoint_url": endpoint},
        "bridge": settings,
    }
    return load_config(None, environ={}, overrides=overrides)


def assert_landed(rows: list[dict[str, Any]], sent: dict[str, str], *, exactly_once: bool) -> None:
    """Every sent message landed, with its body; with ``exactly_once``, once.

    Tests with parallel receivers pass ``exactly_once=False``: moto's SQS is not
    thread-safe, and concurrent ReceiveMessage calls sometimes hand the same
    message out twice (even with the same ApproximateReceiveCount). Those tests
    check instead that the bridge landed each receipt once (lines == received).
    """
    ids = [r["message_id"] for r in rows]
    assert set(ids) == set(sent)
    assert {r["message_id"]: r["body"] for r in rows} == sent
    if exactly_once:
        assert len(ids) == len(sent), "a message landed twice"


# ---- tests ------------------------------------------------------------------------------------------


def land_all(endpoint: str, lake: Path, count: int, receivers: int) -> tuple[Queue, dict[str, str], Any]:
    client = sqs_client(endpoint)
    queue = make_queue(client)
    sent = send(client, queue.url, sample_bodies(count))
    bridge = SqsBridge(bridge_config(lake, endpoint, queue.url, receivers=receivers))
    started = time.monotonic()
    snap = bridge.run_until_empty()
    elapsed = time.monotonic() - started
    print(
        f"\n{receivers} receiver(s): {snap.received / elapsed:.1f} msgs/s through moto (drain included), "
        f"{snap.requests_per_message:.3f} SQS requests/message; {snap.as_dict()}"
    )
    assert drain(client, queue.url) == {} and drain(client, queue.dlq_url) == {}
    assert (snap.landed, snap.deleted, snap.held) == (snap.received, snap.received, 0)
    return queue, sent, bridge


def test_everything_sent_lands_exactly_once(moto_endpoint: str, tmp_path: Path) -> None:
    queue, sent, bridge = land_all(moto_endpoint, tmp_path, 200, receivers=1)

    rows = read_bronze(bronze_dir(tmp_path))
    assert_landed(rows, sent, exactly_once=True)
    for row in rows:
        assert tuple(row) == BRONZE_FIELDS
        assert (row["queue_url"], row["receive_count"], row["bridge_id"]) == (queue.url, 1, bridge.bridge_id)
        assert ISO_MS.match(row["received_at"]) and ISO_MS.match(row["sent_at"])
        assert row["sent_at"] <= row["received_at"]
    assert not list((bronze_dir(tmp_path) / "_tmp").iterdir())
    snap = bridge.metrics()
    assert (snap.received, snap.files) == (200, len(list(bronze_dir(tmp_path).glob("dt=*/*.jsonl"))))
    assert snap.files >= 4  # flush_max_messages=50


def test_parallel_receivers_land_every_delivery_once(moto_endpoint: str, tmp_path: Path) -> None:
    _, sent, bridge = land_all(moto_endpoint, tmp_path, 200, receivers=4)

    rows = read_bronze(bronze_dir(tmp_path))
    assert_landed(rows, sent, exactly_once=False)
    assert len(rows) == bridge.metrics().received  # every receipt landed once, none dropped or doubled


class SlowFirstWrite:
    """A bronze store whose first write takes longer than the visibility timeout."""

    def __init__(self, inner: LocalBronzeStore, seconds: float) -> None:
        self.inner, self.seconds, self.writes = inner, seconds, 0

    @property
    def uri(self) -> str:
        return self.inner.uri

    def write(self, name: str, data: bytes) -> str:
        self.writes += 1
        if self.writes == 1:
            time.sleep(self.seconds)
        return self.inner.write(name, data)


def test_visibility_is_extended_while_a_slow_flush_holds_messages(moto_endpoint: str, tmp_path: Path) -> None:
    client = sqs_client(moto_endpoint)
    queue = make_queue(client)
    sent = send(client, queue.url, sample_bodies(30))
    config = bridge_config(
        tmp_path,
        moto_endpoint,
        queue.url,
        receivers=1,
        visibility_timeout_seconds=10,
        flush_max_messages=1000,
    )
    store = SlowFirstWrite(LocalBronzeStore(bronze_dir(tmp_path)), seconds=13)

    snap = SqsBridge(config, store=store).run_until_empty()

    assert_landed(read_bronze(bronze_dir(tmp_path)), sent, exactly_once=True)
    assert snap.received == 30 and snap.redelivered == 0  # SQS never handed a message out twice
    assert snap.visibility_extended >= 1 and snap.visibility_calls >= 1
    assert snap.flush_seconds_max >= 13


class FailingFirst:
    """Wraps an SQS client; the named operations raise scripted errors first."""

    def __init__(self, client: Any, failures: dict[str, list[Exception]]) -> None:
        self._client = client
        self._failures = failures
        self._lock = threading.Lock()
        self.calls: dict[str, int] = {}

    def __getattr__(self, name: str) -> Any:
        attribute = getattr(self._client, name)
        if name not in self._failures:
            return attribute

        def call(**kwargs: Any) -> Any:
            with self._lock:
                self.calls[name] = self.calls.get(name, 0) + 1
                error = self._failures[name].pop(0) if self._failures[name] else None
            if error is not None:
                raise error
            return attribute(**kwargs)

        return call


def client_error(code: str, operation: str) -> ClientError:
    return ClientError({"Error": {"Code": code, "Message": f"injected {code}"}}, operation)


def test_injected_endpoint_errors_are_retried_and_nothing_is_lost(moto_endpoint: str, tmp_path: Path) -> None:
    client = sqs_client(moto_endpoint)
    queue = make_queue(client)
    sent = send(client, queue.url, sample_bodies(60))
    flaky = FailingFirst(
        client,
        {
            "receive_message": [EndpointConnectionError(endpoint_url=moto_endpoint) for _ in range(3)],
            "delete_message_batch": [client_error("ThrottlingException", "DeleteMessageBatch")] * 2,
            "get_queue_attributes": [client_error("ServiceUnavailable", "GetQueueAttributes")],
        },
    )
    config = bridge_config(tmp_path, moto_endpoint, queue.url, receivers=1)
    policy = RetryPolicy(max_consecutive_errors=5, base_seconds=0.05, cap_seconds=0.5)

    snap = SqsBridge(config, sqs_client=flaky, retry=policy).run_until_empty()

    assert_landed(read_bronze(bronze_dir(tmp_path)), sent, exactly_once=True)
    assert drain(client, queue.url) == {}
    injected = {
        "receive.EndpointConnectionError": 3,
        "delete.ThrottlingException": 2,
        "attributes.ServiceUnavailable": 1,
    }
    assert {kind: snap.errors.get(kind) for kind in injected} == injected
    assert snap.deleted == 60


def test_repeated_failures_raise_a_clear_error_without_losing_messages(
    moto_endpoint: str, tmp_path: Path
) -> None:
    client = sqs_client(moto_endpoint)
    queue = make_queue(client)
    sent = send(client, queue.url, sample_bodies(5))
    down = FailingFirst(
        client, {"receive_message": [EndpointConnectionError(endpoint_url=moto_endpoint)] * 100}
    )
    config = bridge_config(tmp_path, moto_endpoint, queue.url, receivers=1, max_consecutive_errors=3)
    bridge = SqsBridge(config, sqs_client=down)

    started = time.monotonic()
    with pytest.raises(BridgeError) as raised:
        bridge.run_until_empty()

    message = str(raised.value)
    assert "3 consecutive failures" in message and "EndpointConnectionError" in message
    assert queue.url in message and moto_endpoint in message
    assert time.monotonic() - started < 10  # backed off, then gave up: no hot loop, no hang
    assert down.calls["receive_message"] == 3
    assert bridge.metrics().errors == {"receive.EndpointConnectionError": 3}
    assert drain(client, queue.url) == sent


def test_s3_ops_root_lands_readable_files(moto_endpoint: str, tmp_path: Path) -> None:
    client = sqs_client(moto_endpoint)
    queue = make_queue(client)
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = f"ops-{uuid.uuid4().hex[:12]}"
    s3.create_bucket(Bucket=bucket)
    sent = send(client, queue.url, sample_bodies(40))
    config = bridge_config(tmp_path, moto_endpoint, queue.url, flush_max_messages=15)
    config = config.model_copy(
        update={"lake": config.lake.model_copy(update={"ops_root": f"s3://{bucket}/ops/demo/"})}
    )

    bridge = SqsBridge(config, s3_client=s3)
    assert bridge.store_uri == f"s3://{bucket}/ops/demo/bronze/"
    snap = bridge.run_until_empty()

    keys = [o["Key"] for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]
    assert all(
        k.startswith("ops/demo/bronze/") and FILE_NAME.match(k.removeprefix("ops/demo/bronze/")) for k in keys
    )
    rows = [
        json.loads(line)
        for key in sorted(keys)
        for line in s3.get_object(Bucket=bucket, Key=key)["Body"].read().splitlines()
    ]
    assert_landed(rows, sent, exactly_once=False)
    assert len(rows) == snap.received and len(keys) == snap.files >= 3 and not (tmp_path / "_ops").exists()


def test_messages_received_too_often_are_left_to_the_redrive_policy(
    moto_endpoint: str, tmp_path: Path
) -> None:
    client = sqs_client(moto_endpoint)
    queue = make_queue(client, max_receive_count=1)
    sent = send(client, queue.url, sample_bodies(10))
    seen: set[str] = set()
    deadline = time.monotonic() + 10
    while len(seen) < 10 and time.monotonic() < deadline:  # another consumer received them once
        messages = client.receive_message(QueueUrl=queue.url, MaxNumberOfMessages=10, VisibilityTimeout=1)
        seen.update(m["MessageId"] for m in messages.get("Messages", []))
    time.sleep(1.5)
    config = bridge_config(tmp_path, moto_endpoint, queue.url, receivers=1)

    SqsBridge(config).run_until_empty()

    landed = {r["message_id"] for r in read_bronze(bronze_dir(tmp_path))}
    in_dlq = drain(client, queue.dlq_url)
    assert landed | set(in_dlq) == set(sent) and not landed & set(in_dlq)
    assert drain(client, queue.url) == {}


def run_in_thread(target: Callable[[], Any]) -> threading.Thread:
    thread = threading.Thread(target=target, daemon=True)
    thread.start()
    return thread


def test_embedded_start_stop_lands_and_deletes_what_it_received(moto_endpoint: str, tmp_path: Path) -> None:
    client = sqs_client(moto_endpoint)
    queue = make_queue(client)
    sent = send(client, queue.url, sample_bodies(40))
    config = bridge_config(
        tmp_path, moto_endpoint, queue.url, flush_interval_seconds=30, flush_max_messages=1000
    )

    with SqsBridge(config) as bridge:  # a driver's usage: start, poll metrics, stop
        deadline = time.monotonic() + 20
        while bridge.metrics().received < 40 and time.monotonic() < deadline:
            time.sleep(0.1)
        assert bridge.metrics().landed == 0  # nothing due yet: 40 < 1000 and 30 s interval
    snap = bridge.metrics()

    assert (snap.landed, snap.deleted, snap.held, snap.files) == (snap.received, snap.received, 0, 1)
    assert_landed(read_bronze(bronze_dir(tmp_path)), sent, exactly_once=False)
    assert drain(client, queue.url) == {}


class RecordingWaits:
    """Wraps an SQS client; remembers the WaitTimeSeconds of every ReceiveMessage call."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.waits: list[int] = []

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def receive_message(self, **kwargs: Any) -> Any:
        self.waits.append(kwargs["WaitTimeSeconds"])
        return self._client.receive_message(**kwargs)


def test_draining_never_waits_out_the_configured_long_poll(moto_endpoint: str, tmp_path: Path) -> None:
    """`run_until_empty` (available-now) ends within a second of the queue emptying, not 20 s twice."""
    client = sqs_client(moto_endpoint)
    queue = make_queue(client)
    sent = send(client, queue.url, sample_bodies(25))
    recording = RecordingWaits(client)
    config = bridge_config(tmp_path, moto_endpoint, queue.url, receivers=2, wait_time_seconds=20)

    snap = SqsBridge(config, sqs_client=recording).run_until_empty()

    assert_landed(read_bronze(bronze_dir(tmp_path)), sent, exactly_once=False)
    assert snap.deleted == snap.received and drain(client, queue.url) == {}
    assert recording.waits, "no receive was made"
    assert set(recording.waits) == {1}, recording.waits
    # the empty receives that ended the drain: at least one per receiver, each a 1 s long poll
    assert recording.waits.count(1) >= 2

"""Debounced "table updated" notifications against moto's SQS and SNS servers, with a fake clock."""

from __future__ import annotations

import dataclasses
import json
import logging
import re
import uuid
from datetime import UTC, datetime, timedelta
from typing import Any

import boto3
import pytest

from jobs.config import SilverlineConfig, load_config
from jobs.storage import silver_table_name
from jobs.stream.notify import TableUpdate, TableUpdateNotifier, notifier_for

pytestmark = pytest.mark.integration  # moto's SQS and SNS server

BUCKET = "lake-g1"
START = datetime(2024, 3, 1, 12, 0, 0, tzinfo=UTC)
ORDERS = silver_table_name("silverline", BUCKET, "t1", "orders")
BAD_ORDERS = silver_table_name("silverline", BUCKET, "t1", "orders", "quarantine")
CLICKS = silver_table_name("silverline", BUCKET, "t2", "clicks")
TENANTS = {
    ORDERS: ("t1", "orders", "silver"),
    BAD_ORDERS: ("t1", "orders", "quarantine"),
    CLICKS: ("t2", "clicks", "silver"),
}


class FakeClock:
    def __init__(self) -> None:
        self.now = 1000.0

    def __call__(self) -> float:
        return self.now


class Spy:
    """Delegates to a real client and records which API calls were made."""

    def __init__(self, client: Any) -> None:
        self.client = client
        self.calls: list[str] = []

    def __getattr__(self, name: str) -> Any:
        self.calls.append(name)
        return getattr(self.client, name)


def make_config(endpoint: str, **notify: Any) -> SilverlineConfig:
    return load_config(
        environ={},
        overrides={
            "group": {"name": "g1", "bucket": BUCKET},
            "aws": {"endpoint_url": endpoint},
            "notify": notify,
        },
    )


def update(
    table: str,
    batch_id: int,
    rows: int,
    objects: int = 1,
    snapshot: int | None = None,
    deleted: int | None = 0,
) -> TableUpdate:
    tenant, dataset, zone = TENANTS.get(table, ("t9", table.split(".")[-1].strip("`"), "silver"))
    return TableUpdate(
        table=table,
        tenant=tenant,
        dataset=dataset,
        zone=zone,
        snapshot_id=snapshot if snapshot is not None else 7000 + batch_id,
        rows_written=rows,
        rows_deleted=deleted,
        source_objects=objects,
        batch_id=batch_id,
        committed_at=START + timedelta(seconds=batch_id),
    )


def body(
    table: str,
    *,
    snapshot: int | None,
    rows: int,
    deleted: int | None,
    objects: int,
    commits: int,
    batches: tuple[int, int],
    window: float = 60.0,
) -> dict[str, Any]:
    tenant, dataset, zone = TENANTS[table]
    return {
        "type": "silverline.table_updated",
        "schema_version": 1,
        "group": "g1",
        "bucket": BUCKET,
        "tenant": tenant,
        "dataset": dataset,
        "zone": zone,
        "table": table,
        "snapshot_id": snapshot,
        "rows_written": rows,
        "rows_deleted": deleted,
        "source_objects": objects,
        "commits": commits,
        "first_batch_id": batches[0],
        "last_batch_id": batches[1],
        "first_committed_at": f"2024-03-01T12:00:{batches[0]:02d}.000Z",
        "last_committed_at": f"2024-03-01T12:00:{batches[1]:02d}.000Z",
        "window_seconds": window,
    }


@pytest.fixture(scope="module")
def sqs(moto_endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")


@pytest.fixture
def queue_url(sqs: Any) -> str:
    return str(sqs.create_queue(QueueName=f"updates-{uuid.uuid4().hex[:10]}")["QueueUrl"])


def drain(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every message on the queue (deleted as read): body, attributes and system attributes."""
    out: list[dict[str, Any]] = []
    while True:
        got = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=0,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["MessageGroupId", "MessageDeduplicationId"],
        ).get("Messages", [])
        if not got:
            return out
        for message in got:
            attributes = {k: v["StringValue"] for k, v in message.get("MessageAttributes", {}).items()}
            out.append(
                {
                    "body": json.loads(message["Body"]),
                    "attributes": attributes,
                    "system": message.get("Attributes", {}),
                }
            )
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])


def bodies(sqs: Any, url: str) -> list[dict[str, Any]]:
    return [m["body"] for m in drain(sqs, url)]


def test_five_batches_in_one_window_make_one_message_now_and_one_aggregate_later(
    moto_endpoint: str, sqs: Any, queue_url: str
) -> None:
    clock = FakeClock()
    notifier = TableUpdateNotifier(
        make_config(moto_endpoint, target="sqs", queue_url=queue_url), client=sqs, clock=clock
    )
    deleted = [0, 2, None, 5, 1]
    sent = []
    for batch in range(5):
        clock.now = 1000.0 + batch
        sent.append(
            notifier.record(
                [update(ORDERS, batch, rows=10 * (batch + 1), objects=batch + 1, deleted=deleted[batch])]
            )
        )
    assert sent == [1, 0, 0, 0, 0]
    first = drain(sqs, queue_url)
    assert [m["body"] for m in first] == [
        body(ORDERS, snapshot=7000, rows=10, deleted=0, objects=1, commits=1, batches=(0, 0))
    ]
    assert first[0]["attributes"] == {"tenant": "t1", "dataset": "orders"}
    assert (notifier.sent, notifier.failed, notifier.pending) == (1, 0, 1)

    clock.now = 1059.9
    assert notifier.tick() == 0
    assert drain(sqs, queue_url) == []
    clock.now = 1060.0
    assert notifier.tick() == 1
    assert bodies(sqs, queue_url) == [
        body(
            ORDERS,
            snapshot=7004,
            rows=20 + 30 + 40 + 50,
            deleted=2 + 5 + 1,
            objects=2 + 3 + 4 + 5,
            commits=4,
            batches=(1, 4),
        )
    ]
    assert notifier.tick() == 0
    assert notifier.flush() == 0
    assert drain(sqs, queue_url) == []
    assert (notifier.sent, notifier.failed, notifier.pending) == (2, 0, 0)


def test_latest_snapshot_id_survives_a_commit_without_one(
    moto_endpoint: str, sqs: Any, queue_url: str
) -> None:
    clock = FakeClock()
    notifier = TableUpdateNotifier(
        make_config(moto_endpoint, target="sqs", queue_url=queue_url), client=sqs, clock=clock
    )
    notifier.record([update(ORDERS, 0, rows=1)])
    notifier.record([update(ORDERS, 1, rows=2, snapshot=9001, deleted=None)])
    no_snapshot = update(ORDERS, 2, rows=3, deleted=None)
    notifier.record([dataclasses.replace(no_snapshot, snapshot_id=None)])
    assert notifier.flush() == 1
    assert bodies(sqs, queue_url)[1] == body(
        ORDERS, snapshot=9001, rows=5, deleted=None, objects=2, commits=2, batches=(1, 2)
    )


def test_two_tables_are_debounced_independently(moto_endpoint: str, sqs: Any, queue_url: str) -> None:
    clock = FakeClock()
    notifier = TableUpdateNotifier(
        make_config(moto_endpoint, target="sqs", queue_url=queue_url), client=sqs, clock=clock
    )
    assert notifier.record([update(ORDERS, 0, rows=1)]) == 1
    clock.now += 30
    assert notifier.record([update(CLICKS, 1, rows=2)]) == 1
    clock.now += 10
    assert notifier.record([update(ORDERS, 2, rows=3), update(CLICKS, 2, rows=4)]) == 0
    assert [(b["table"], b["last_batch_id"]) for b in bodies(sqs, queue_url)] == [(ORDERS, 0), (CLICKS, 1)]
    clock.now = 1060.0  # the orders window has passed, the clicks window has not
    assert notifier.tick() == 1
    assert bodies(sqs, queue_url) == [
        body(ORDERS, snapshot=7002, rows=3, deleted=0, objects=1, commits=1, batches=(2, 2))
    ]
    clock.now = 1089.0
    assert notifier.tick() == 0
    clock.now = 1090.0
    assert notifier.tick() == 1
    assert bodies(sqs, queue_url) == [
        body(CLICKS, snapshot=7002, rows=4, deleted=0, objects=1, commits=1, batches=(2, 2))
    ]
    assert (notifier.sent, notifier.pending) == (4, 0)


def test_window_zero_sends_one_message_per_batch(moto_endpoint: str, sqs: Any, queue_url: str) -> None:
    notifier = TableUpdateNotifier(
        make_config(moto_endpoint, target="sqs", queue_url=queue_url, window_seconds=0),
        client=sqs,
        clock=FakeClock(),
    )
    assert [notifier.record([update(ORDERS, b, rows=b)]) for b in range(3)] == [1, 1, 1]
    assert bodies(sqs, queue_url) == [
        body(ORDERS, snapshot=7000 + b, rows=b, deleted=0, objects=1, commits=1, batches=(b, b), window=0.0)
        for b in range(3)
    ]
    assert notifier.pending == 0


def test_flush_sends_pending_aggregates_now(moto_endpoint: str, sqs: Any, queue_url: str) -> None:
    clock = FakeClock()
    notifier = TableUpdateNotifier(
        make_config(moto_endpoint, target="sqs", queue_url=queue_url), client=sqs, clock=clock
    )
    notifier.record([update(ORDERS, 0, rows=1), update(CLICKS, 0, rows=1)])
    notifier.record([update(ORDERS, 1, rows=5), update(BAD_ORDERS, 1, rows=2)])
    notifier.record([update(ORDERS, 2, rows=6)])
    assert len(drain(sqs, queue_url)) == 3  # orders, clicks, quarantine: each a first update
    assert notifier.pending == 1
    assert notifier.flush() == 1
    assert bodies(sqs, queue_url) == [
        body(ORDERS, snapshot=7002, rows=11, deleted=0, objects=2, commits=2, batches=(1, 2))
    ]
    assert notifier.flush() == 0
    clock.now += 1  # flushed counts as sent: the next update waits for the window
    assert notifier.record([update(ORDERS, 3, rows=1)]) == 0


def test_many_due_tables_go_in_batches_of_ten_and_untouched_tables_get_nothing(
    moto_endpoint: str, sqs: Any, queue_url: str
) -> None:
    spy = Spy(sqs)
    notifier = TableUpdateNotifier(
        make_config(moto_endpoint, target="sqs", queue_url=queue_url, window_seconds=0),
        client=spy,
        clock=FakeClock(),
    )
    tables = [silver_table_name("silverline", BUCKET, "t9", f"d{i:02d}") for i in range(12)]
    assert notifier.record([update(t, 0, rows=i) for i, t in enumerate(tables)]) == 12
    assert spy.calls == ["send_message_batch", "send_message_batch"]
    got = drain(sqs, queue_url)
    assert sorted((m["body"]["table"], m["body"]["rows_written"]) for m in got) == list(
        zip(tables, range(12), strict=True)
    )
    assert {m["attributes"]["dataset"] for m in got} == {f"d{i:02d}" for i in range(12)}
    spy.calls.clear()
    assert notifier.record([update(tables[3], 1, rows=99)]) == 1
    assert notifier.tick() == 0
    assert spy.calls == ["send_message"]
    assert [(b["table"], b["rows_written"]) for b in bodies(sqs, queue_url)] == [(tables[3], 99)]


def test_send_failure_is_counted_and_the_aggregate_retried(
    moto_endpoint: str, sqs: Any, caplog: pytest.LogCaptureFixture
) -> None:
    name = f"gone-{uuid.uuid4().hex[:10]}"
    url = sqs.create_queue(QueueName=name)["QueueUrl"]
    sqs.delete_queue(QueueUrl=url)
    clock = FakeClock()
    notifier = TableUpdateNotifier(
        make_config(moto_endpoint, target="sqs", queue_url=url), client=sqs, clock=clock
    )
    with caplog.at_level(logging.WARNING, logger="jobs.stream.notify"):
        assert notifier.record([update(ORDERS, 0, rows=1, objects=2)]) == 0
        clock.now += 5
        assert notifier.record([update(ORDERS, 1, rows=2, objects=3), update(CLICKS, 1, rows=4)]) == 0
        assert notifier.tick() == 0
    assert (notifier.sent, notifier.failed, notifier.pending) == (0, 1 + 2 + 2, 2)
    warnings = [r.getMessage() for r in caplog.records if r.name == "jobs.stream.notify"]
    assert len(warnings) == 3
    assert all(url in w and ("QueueDoesNotExist" in w or "NonExistentQueue" in w) for w in warnings)

    assert sqs.create_queue(QueueName=name)["QueueUrl"] == url
    clock.now += 5
    assert notifier.tick() == 2  # never sent, so not held back by a window
    assert sorted(bodies(sqs, url), key=lambda b: b["table"]) == [
        body(ORDERS, snapshot=7001, rows=3, deleted=0, objects=5, commits=2, batches=(0, 1)),
        body(CLICKS, snapshot=7001, rows=4, deleted=0, objects=1, commits=1, batches=(1, 1)),
    ]
    assert (notifier.sent, notifier.failed, notifier.pending) == (2, 5, 0)
    clock.now += 5
    assert notifier.record([update(ORDERS, 2, rows=1)]) == 0  # sent 5 s ago: now within the window


def test_a_failed_request_ends_the_call(moto_endpoint: str, sqs: Any) -> None:
    url = sqs.create_queue(QueueName=f"gone-{uuid.uuid4().hex[:10]}")["QueueUrl"]
    sqs.delete_queue(QueueUrl=url)
    spy = Spy(sqs)
    config = make_config(moto_endpoint, target="sqs", queue_url=url, window_seconds=0)
    notifier = TableUpdateNotifier(config, client=spy, clock=FakeClock())
    tables = [silver_table_name("silverline", BUCKET, "t9", f"d{i:02d}") for i in range(12)]
    assert notifier.record([update(t, 0, rows=1) for t in tables]) == 0
    assert spy.calls == ["send_message_batch"]  # the second batch of 2 is not tried against a dead queue
    assert (notifier.sent, notifier.failed, notifier.pending) == (0, 10, 12)


class PartlyFailing(Spy):
    """Sends every batch entry but the one with Id "1", which it reports as failed."""

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> dict[str, Any]:  # noqa: N803
        kept = [e for e in Entries if e["Id"] != "1"]
        response = dict(self.client.send_message_batch(QueueUrl=QueueUrl, Entries=kept))
        response["Failed"] = [{"Id": "1", "Code": "InternalError", "SenderFault": False}]
        return response


def test_failed_batch_entries_stay_pending(moto_endpoint: str, sqs: Any, queue_url: str) -> None:
    clock = FakeClock()
    notifier = TableUpdateNotifier(
        make_config(moto_endpoint, target="sqs", queue_url=queue_url), client=PartlyFailing(sqs), clock=clock
    )
    assert notifier.record([update(ORDERS, 0, rows=1), update(CLICKS, 0, rows=2)]) == 1
    assert (notifier.sent, notifier.failed, notifier.pending) == (1, 1, 1)
    assert [b["table"] for b in bodies(sqs, queue_url)] == [ORDERS]
    clock.now += 1
    assert notifier.tick() == 1  # a single message goes through send_message
    assert bodies(sqs, queue_url) == [
        body(CLICKS, snapshot=7000, rows=2, deleted=0, objects=1, commits=1, batches=(0, 0))
    ]


def test_fifo_queue_gets_group_and_deduplication_ids(moto_endpoint: str, sqs: Any) -> None:
    url = sqs.create_queue(
        QueueName=f"updates-{uuid.uuid4().hex[:10]}.fifo", Attributes={"FifoQueue": "true"}
    )["QueueUrl"]
    notifier = TableUpdateNotifier(
        make_config(moto_endpoint, target="sqs", queue_url=url, window_seconds=0),
        client=sqs,
        clock=FakeClock(),
    )
    assert notifier.record([update(ORDERS, 0, rows=1), update(CLICKS, 0, rows=2)]) == 2
    assert notifier.record([update(ORDERS, 1, rows=3)]) == 1
    got = drain(sqs, url)
    assert sorted((m["system"]["MessageGroupId"], m["body"]["last_batch_id"]) for m in got) == [
        (ORDERS, 0),
        (ORDERS, 1),
        (CLICKS, 0),
    ]
    dedup = [m["system"]["MessageDeduplicationId"] for m in got]
    assert len(set(dedup)) == 3
    assert all(re.fullmatch(r"[0-9a-f]{64}", d) for d in dedup)


def test_sns_publishes_with_attributes_for_filter_policies(moto_endpoint: str, sqs: Any) -> None:
    sns = boto3.client("sns", endpoint_url=moto_endpoint, region_name="us-east-1")
    topic = sns.create_topic(Name=f"updates-{uuid.uuid4().hex[:10]}")["TopicArn"]
    queues = {}
    for name, policy in (("all", None), ("t2", {"tenant": ["t2"]})):
        url = sqs.create_queue(QueueName=f"sub-{name}-{uuid.uuid4().hex[:8]}")["QueueUrl"]
        arn = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])["Attributes"]["QueueArn"]
        attributes = {"FilterPolicy": json.dumps(policy)} if policy else {}
        sns.subscribe(TopicArn=topic, Protocol="sqs", Endpoint=arn, Attributes=attributes)
        queues[name] = url
    spy = Spy(sns)
    notifier = TableUpdateNotifier(
        make_config(moto_endpoint, target="sns", topic_arn=topic), client=spy, clock=FakeClock()
    )
    assert notifier.record([update(ORDERS, 0, rows=1), update(CLICKS, 0, rows=2)]) == 2
    assert notifier.record([update(ORDERS, 1, rows=3)]) == 0
    assert notifier.flush() == 1
    assert spy.calls == ["publish_batch", "publish"]

    def envelopes(url: str) -> list[tuple[dict[str, Any], dict[str, str]]]:
        out = []
        for m in bodies(sqs, url):
            out.append((json.loads(m["Message"]), {k: v["Value"] for k, v in m["MessageAttributes"].items()}))
        return sorted(out, key=lambda e: (e[0]["table"], e[0]["last_batch_id"]))

    assert envelopes(queues["all"]) == [
        (
            body(ORDERS, snapshot=7000, rows=1, deleted=0, objects=1, commits=1, batches=(0, 0)),
            {"tenant": "t1", "dataset": "orders"},
        ),
        (
            body(ORDERS, snapshot=7001, rows=3, deleted=0, objects=1, commits=1, batches=(1, 1)),
            {"tenant": "t1", "dataset": "orders"},
        ),
        (
            body(CLICKS, snapshot=7000, rows=2, deleted=0, objects=1, commits=1, batches=(0, 0)),
            {"tenant": "t2", "dataset": "clicks"},
        ),
    ]
    assert [e[0]["table"] for e in envelopes(queues["t2"])] == [CLICKS]


def test_notifier_for_follows_the_target(moto_endpoint: str, sqs: Any, queue_url: str) -> None:
    assert notifier_for(make_config(moto_endpoint)) is None
    with pytest.raises(ValueError, match="target is none"):
        TableUpdateNotifier(make_config(moto_endpoint))
    notifier = notifier_for(make_config(moto_endpoint, target="sqs", queue_url=queue_url))
    assert notifier is not None
    assert notifier.record([update(ORDERS, 0, rows=1)]) == 1  # the client built from config reaches moto
    assert [b["table"] for b in bodies(sqs, queue_url)] == [ORDERS]

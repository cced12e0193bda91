"""``silverline dlq inspect|redrive`` against moto's SQS server: nothing consumed, nothing lost."""

from __future__ import annotations

import collections
import io
import json
import re
import uuid
from dataclasses import dataclass
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from jobs.cli import main
from jobs.config import ConfigError, load_config
from jobs.dlq.cli import redrive_dlq
from jobs.dlq.moves import MAX_BATCH_BYTES, send_groups
from jobs.dlq.peek import peek
from jobs.dlq.queues import parse_queue_arn, resolve_queues
from jobs.dlq.view import iso_millis
from jobs.events.model import FIELDS
from tests.event_cases import TEST_EVENT, s3_message, s3_record

ACCOUNT = "123456789012"  # moto's account
ISO_MS = re.compile(r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}\.\d{3}Z$")
SEQUENCER = "0" * 14 + "0055AED6DCD90281E5"  # "0055AED6DCD90281E5" padded to 32 digits
S3_BODY = s3_message(s3_record("t1/raw/orders/a+b.csv"), s3_record("t1/silver/orders/x.parquet"))
GARBAGE = "not json at all"


@dataclass(frozen=True)
class Queues:
    url: str
    dlq_url: str


@pytest.fixture
def sqs(moto_endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")


def make_queues(sqs: Any, *, max_receive_count: int = 3, redrive: bool = True) -> Queues:
    name = f"dlq-{uuid.uuid4().hex[:12]}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    attributes = {}
    if redrive:
        arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
            "QueueArn"
        ]
        policy = {"deadLetterTargetArn": arn, "maxReceiveCount": str(max_receive_count)}
        attributes["RedrivePolicy"] = json.dumps(policy)
    url = sqs.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"]
    return Queues(url, dlq_url)


@pytest.fixture
def queues(sqs: Any) -> Queues:
    return make_queues(sqs)


def send(sqs: Any, url: str, bodies: list[str], attributes: dict[str, Any] | None = None) -> list[str]:
    """Send bodies one by one; return their message ids in order."""
    ids = []
    for body in bodies:
        extra = {"MessageAttributes": attributes} if attributes else {}
        ids.append(sqs.send_message(QueueUrl=url, MessageBody=body, **extra)["MessageId"])
    return ids


def depth(sqs: Any, url: str) -> tuple[int, int]:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return int(attrs[names[0]]), int(attrs[names[1]])


def receive_all(sqs: Any, url: str) -> list[dict[str, Any]]:
    """Every visible message, held for a minute (not deleted); an empty receive ends it."""
    messages: list[dict[str, Any]] = []
    while True:
        batch = sqs.receive_message(
            QueueUrl=url,
            MaxNumberOfMessages=10,
            WaitTimeSeconds=1,
            VisibilityTimeout=60,
            MessageAttributeNames=["All"],
            MessageSystemAttributeNames=["ApproximateReceiveCount"],
        ).get("Messages", [])
        if not batch:
            return messages
        messages.extend(batch)


def bodies(messages: list[dict[str, Any]]) -> collections.Counter[str]:
    return collections.Counter(m["Body"] for m in messages)


def cli(endpoint: str, *args: str) -> int:
    return main(["dlq", *args, "--sqs-endpoint-url", endpoint])


def config_for(endpoint: str, queue_url: str | None) -> Any:
    return load_config(
        None, environ={}, overrides={"sqs": {"queue_url": queue_url, "endpoint_url": endpoint}}
    )


# ---- inspect ----------------------------------------------------------------------------------------


@pytest.mark.integration
def test_inspect_leaves_every_message_in_the_dlq(
    sqs: Any, queues: Queues, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = [S3_BODY, GARBAGE, TEST_EVENT]
    send(sqs, queues.dlq_url, sent)
    assert depth(sqs, queues.dlq_url) == (3, 0)

    assert cli(moto_endpoint, "inspect", "--queue-url", queues.url) == 0

    assert depth(sqs, queues.dlq_url) == (3, 0)  # nothing deleted, nothing left invisible
    assert bodies(receive_all(sqs, queues.dlq_url)) == collections.Counter(sent)  # receivable right away
    assert depth(sqs, queues.url) == (0, 0)
    assert "3 messages shown" in capsys.readouterr().out


@pytest.mark.integration
def test_inspect_shows_the_parsed_records_of_each_message(
    sqs: Any, queues: Queues, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    s3_id, garbage_id = send(sqs, queues.dlq_url, [S3_BODY, GARBAGE])

    assert cli(moto_endpoint, "inspect", "--queue-url", queues.url) == 0

    out = capsys.readouterr().out.splitlines()
    assert out[0] == f"dead-letter queue {queues.dlq_url}"
    blocks: dict[str, list[str]] = {}
    for line in out[1:-1]:
        if line.startswith("message "):
            match = re.fullmatch(r"message \d: id=(\S+) receives=1 sent=(\S+) records=(\d)", line)
            assert match, line
            assert ISO_MS.fullmatch(match[2])
            current = blocks.setdefault(match[1], [])
        else:
            current.append(line)
    assert blocks == {
        s3_id: [
            "  event    reason=- event=ObjectCreated:Put bucket=acme-lake "
            f'key="t1/raw/orders/a b.csv" sequencer={SEQUENCER}',
            "  ignored  reason=not_raw_zone event=ObjectCreated:Put bucket=acme-lake "
            f"key=t1/silver/orders/x.parquet sequencer={SEQUENCER}",
        ],
        garbage_id: [
            "  rejected reason=invalid_json event=- bucket=- key=- sequencer=-",
            '  body: "not json at all"',
        ],
    }
    assert out[-1] == (
        "dlq inspect: 2 messages shown; records: 1 event, 0 test, 1 ignored, 1 rejected; DLQ depth ~2 (0 in flight)"
    )


@pytest.mark.integration
def test_inspect_json_lines_are_parse_events_rows_with_receive_metadata(
    sqs: Any, queues: Queues, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    s3_id, garbage_id = send(sqs, queues.dlq_url, [S3_BODY, GARBAGE])

    assert cli(moto_endpoint, "inspect", "--dlq-url", queues.dlq_url, "--json") == 0
    assert cli(moto_endpoint, "inspect", "--dlq-url", queues.dlq_url, "--json") == 0  # again: still there

    captured = capsys.readouterr()
    rows = [json.loads(line) for line in captured.out.splitlines()]
    assert len(rows) == 6  # two runs x (2 records + 1 record)
    assert all(set(row) == {"message", "message_id", "receive_count", "sent_time", *FIELDS} for row in rows)
    second = rows[3:]
    assert sorted(
        (r["message_id"], r["receive_count"], r["outcome"], r["reason"], r["key"]) for r in second
    ) == sorted(
        [
            (s3_id, 2, "event", None, "t1/raw/orders/a b.csv"),
            (s3_id, 2, "ignored", "not_raw_zone", "t1/silver/orders/x.parquet"),
            (garbage_id, 2, "rejected", "invalid_json", None),
        ]
    )
    assert all(ISO_MS.fullmatch(r["sent_time"]) for r in rows)
    assert captured.err.count("2 messages shown; records: 1 event, 0 test, 1 ignored, 1 rejected") == 2


@pytest.mark.integration
def test_inspect_limit_shows_at_most_n_and_keeps_the_rest(
    sqs: Any, queues: Queues, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    send(sqs, queues.dlq_url, [f"garbage {i}" for i in range(13)])

    assert cli(moto_endpoint, "inspect", "--queue-url", queues.url, "--limit", "12") == 0

    out = capsys.readouterr().out
    assert len(re.findall(r"^message \d+: ", out, re.MULTILINE)) == 12
    assert "12 messages shown; records: 0 event, 0 test, 0 ignored, 12 rejected; DLQ depth ~13" in out
    assert depth(sqs, queues.dlq_url) == (13, 0)
    counts = collections.Counter(
        m["Attributes"]["ApproximateReceiveCount"] for m in receive_all(sqs, queues.dlq_url)
    )
    assert counts == {"2": 12, "1": 1}  # inspect received exactly 12 (this receive is everyone's +1)


class FailingSecondReceive:
    """Delegates to a real client; the second ReceiveMessage raises."""

    def __init__(self, client: Any) -> None:
        self._client = client
        self.receives = 0

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def receive_message(self, **kwargs: Any) -> Any:
        self.receives += 1
        if self.receives == 2:
            raise ClientError({"Error": {"Code": "InternalError", "Message": "injected"}}, "ReceiveMessage")
        return self._client.receive_message(**kwargs)


@pytest.mark.integration
def test_peek_makes_messages_visible_again_when_it_fails_half_way(sqs: Any, queues: Queues) -> None:
    send(sqs, queues.dlq_url, [f"garbage {i}" for i in range(12)])
    failing = FailingSecondReceive(sqs)

    with pytest.raises(ClientError, match="injected"):
        peek(failing, queues.dlq_url, limit=20, visibility_seconds=600)  # type: ignore[arg-type]

    assert failing.receives == 2
    assert depth(sqs, queues.dlq_url) == (12, 0)  # the 10 of the first receive were released


# ---- redrive ----------------------------------------------------------------------------------------


@pytest.mark.integration
def test_redrive_moves_exactly_the_dlq_messages_and_empties_it(
    sqs: Any, queues: Queues, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = [s3_message(s3_record(f"t{i}/raw/orders/{i}.csv")) for i in range(11)] + [GARBAGE, GARBAGE]
    send(sqs, queues.dlq_url, sent)
    attributes = {"origin": {"DataType": "String", "StringValue": "sns-raw"}}
    send(sqs, queues.dlq_url, ["with attributes"], attributes)

    assert cli(moto_endpoint, "redrive", "--queue-url", queues.url) == 0

    moved = receive_all(sqs, queues.url)
    assert bodies(moved) == collections.Counter([*sent, "with attributes"])  # identical, duplicates kept
    (with_attributes,) = [m for m in moved if m["Body"] == "with attributes"]
    assert with_attributes["MessageAttributes"] == attributes
    assert all("MessageAttributes" not in m for m in moved if m["Body"] != "with attributes")
    assert depth(sqs, queues.dlq_url) == (0, 0)
    assert receive_all(sqs, queues.dlq_url) == []
    out = capsys.readouterr().out
    assert (
        out.splitlines()[-1]
        == "dlq redrive: 14 moved, 0 failed (still in the DLQ); DLQ depth now ~0 (0 in flight)"
    )


@pytest.mark.integration
def test_redrive_limit_moves_n_and_leaves_the_rest(sqs: Any, queues: Queues, moto_endpoint: str) -> None:
    sent = [f"body {i}" for i in range(5)]
    send(sqs, queues.dlq_url, sent)

    assert cli(moto_endpoint, "redrive", "--queue-url", queues.url, "--limit", "2") == 0

    moved, left = receive_all(sqs, queues.url), receive_all(sqs, queues.dlq_url)
    assert len(moved) == 2 and len(left) == 3
    assert bodies(moved) + bodies(left) == collections.Counter(sent)


@pytest.mark.integration
def test_redrive_dry_run_moves_nothing(
    sqs: Any, queues: Queues, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = [S3_BODY, GARBAGE, TEST_EVENT]
    ids = send(sqs, queues.dlq_url, sent)

    assert cli(moto_endpoint, "redrive", "--queue-url", queues.url, "--dry-run") == 0

    assert depth(sqs, queues.url) == (0, 0)
    assert depth(sqs, queues.dlq_url) == (3, 0)
    assert bodies(receive_all(sqs, queues.dlq_url)) == collections.Counter(sent)
    out = capsys.readouterr().out
    assert sorted(re.findall(r"^would move id=(\S+) ", out, re.MULTILINE)) == sorted(ids)
    assert "dlq redrive: 3 messages would move; nothing was changed; DLQ depth now ~3" in out


@pytest.mark.integration
def test_send_failure_deletes_nothing_and_exits_1(
    sqs: Any, queues: Queues, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    sent = [S3_BODY, GARBAGE, TEST_EVENT]
    send(sqs, queues.dlq_url, sent)
    missing = f"{moto_endpoint}/{ACCOUNT}/no-such-queue-{uuid.uuid4().hex[:8]}"

    assert cli(moto_endpoint, "redrive", "--queue-url", missing, "--dlq-url", queues.dlq_url) == 1

    assert depth(sqs, queues.dlq_url) == (3, 0)  # nothing deleted, all visible again
    assert bodies(receive_all(sqs, queues.dlq_url)) == collections.Counter(sent)
    captured = capsys.readouterr()
    assert "0 moved, 3 failed (still in the DLQ)" in captured.out
    assert f"stopped: sending to {missing} failed" in captured.err


class FailingSends:
    """Delegates to a real client; SendMessageBatch reports the entries with bodies in ``fail`` as failed."""

    def __init__(self, client: Any, fail: set[str]) -> None:
        self._client = client
        self._fail = fail

    def __getattr__(self, name: str) -> Any:
        return getattr(self._client, name)

    def send_message_batch(self, QueueUrl: str, Entries: list[dict[str, Any]]) -> Any:  # noqa: N803
        keep = [e for e in Entries if e["MessageBody"] not in self._fail]
        response = self._client.send_message_batch(QueueUrl=QueueUrl, Entries=keep) if keep else {}
        failed = [
            {"Id": e["Id"], "SenderFault": False, "Code": "InternalError", "Message": "injected"}
            for e in Entries
            if e["MessageBody"] in self._fail
        ]
        return {
            "Successful": response.get("Successful", []),
            "Failed": [*response.get("Failed", []), *failed],
        }


@pytest.mark.integration
def test_only_messages_that_were_sent_are_deleted(sqs: Any, queues: Queues, moto_endpoint: str) -> None:
    sent = [f"body {i}" for i in range(6)]
    send(sqs, queues.dlq_url, sent)
    out = io.StringIO()

    code = redrive_dlq(
        config_for(moto_endpoint, queues.url), sqs=FailingSends(sqs, {"body 1", "body 4"}), out=out
    )  # type: ignore[arg-type]

    assert code == 1
    assert bodies(receive_all(sqs, queues.url)) == collections.Counter(
        ["body 0", "body 2", "body 3", "body 5"]
    )
    assert bodies(receive_all(sqs, queues.dlq_url)) == collections.Counter(["body 1", "body 4"])
    assert "4 moved, 2 failed (still in the DLQ); errors: InternalError x2" in out.getvalue()


@pytest.mark.integration
def test_dead_lettered_by_sqs_then_redriven_back(
    sqs: Any, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    queues = make_queues(sqs, max_receive_count=1)
    send(sqs, queues.url, [S3_BODY])
    for _ in range(2):  # the second receive exceeds maxReceiveCount: SQS moves the message to the DLQ
        sqs.receive_message(QueueUrl=queues.url, VisibilityTimeout=0, WaitTimeSeconds=1)
    assert depth(sqs, queues.dlq_url) == (1, 0) and depth(sqs, queues.url) == (0, 0)

    assert cli(moto_endpoint, "inspect", "--queue-url", queues.url) == 0
    assert cli(moto_endpoint, "redrive", "--queue-url", queues.url) == 0

    assert "1 messages shown; records: 1 event, 0 test, 1 ignored, 0 rejected" in capsys.readouterr().out
    assert bodies(receive_all(sqs, queues.url)) == collections.Counter([S3_BODY])
    assert depth(sqs, queues.dlq_url) == (0, 0)


# ---- bad configuration: exit 2 ----------------------------------------------------------------------


@pytest.mark.integration
def test_queue_without_redrive_policy_is_exit_2(
    sqs: Any, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    queues = make_queues(sqs, redrive=False)

    assert cli(moto_endpoint, "inspect", "--queue-url", queues.url) == 2
    assert cli(moto_endpoint, "redrive", "--queue-url", queues.url) == 2

    err = capsys.readouterr().err
    assert err.count(f"silverline: queue {queues.url} has no RedrivePolicy") == 2
    assert "pass --dlq-url URL" in err


@pytest.mark.integration
def test_missing_dlq_is_exit_2(
    sqs: Any, queues: Queues, moto_endpoint: str, capsys: pytest.CaptureFixture[str]
) -> None:
    send(sqs, queues.url, ["still here"])
    sqs.delete_queue(QueueUrl=queues.dlq_url)
    name = queues.dlq_url.rsplit("/", 1)[1]

    assert cli(moto_endpoint, "redrive", "--queue-url", queues.url) == 2
    assert cli(moto_endpoint, "inspect", "--dlq-url", queues.dlq_url) == 2

    err = capsys.readouterr().err.splitlines()
    assert err[0].startswith(
        f"silverline: dead-letter queue {name} (account {ACCOUNT}) named by the RedrivePolicy"
    )
    assert err[1] == f"silverline: dead-letter queue {queues.dlq_url} does not exist; check --dlq-url"
    assert bodies(receive_all(sqs, queues.url)) == collections.Counter(["still here"])  # main queue untouched


@pytest.mark.integration
def test_no_queue_url_is_exit_2(moto_endpoint: str, capsys: pytest.CaptureFixture[str]) -> None:
    assert cli(moto_endpoint, "inspect") == 2
    assert (
        "silverline: no queue URL to find the dead-letter queue from: set sqs.queue_url"
        in capsys.readouterr().err
    )


@pytest.mark.integration
def test_redrive_needs_a_main_queue_other_than_the_dlq(sqs: Any, queues: Queues, moto_endpoint: str) -> None:
    config = config_for(moto_endpoint, None)
    with pytest.raises(ConfigError, match="no main queue to move messages to"):
        redrive_dlq(config, dlq_url=queues.dlq_url, sqs=sqs)
    with pytest.raises(ConfigError, match="are the same queue"):
        redrive_dlq(config_for(moto_endpoint, queues.dlq_url), dlq_url=queues.dlq_url, sqs=sqs)
    assert resolve_queues(sqs, queues.url, None).dlq_url == queues.dlq_url


# ---- pure helpers -----------------------------------------------------------------------------------


@pytest.mark.unit
def test_send_groups_respect_count_and_size_limits() -> None:
    small = [{"Body": "x", "MessageId": str(i)} for i in range(23)]
    assert [len(g) for g in send_groups(small)] == [10, 10, 3]  # type: ignore[arg-type]
    big = "y" * (MAX_BATCH_BYTES // 2)
    sizes = [{"Body": big}, {"Body": big}, {"Body": "z"}, {"Body": "y" * (MAX_BATCH_BYTES + 1)}]
    assert [[len(m["Body"]) for m in g] for g in send_groups(sizes)] == [  # type: ignore[arg-type]
        [len(big), len(big)],
        [1],
        [MAX_BATCH_BYTES + 1],
    ]


@pytest.mark.unit
def test_queue_arn_and_sqs_timestamps() -> None:
    assert parse_queue_arn(f"arn:aws:sqs:eu-west-1:{ACCOUNT}:silverline-g1-dlq") == (
        ACCOUNT,
        "silverline-g1-dlq",
    )
    with pytest.raises(ConfigError, match="not an SQS queue ARN"):
        parse_queue_arn("arn:aws:sns:us-east-1:123456789012:topic")
    assert iso_millis("1709294400007") == "2024-03-01T12:00:00.007Z"
    assert iso_millis(None) is None and iso_millis("soon") is None

"""The synthetic SQS endpoint (bench/sqs_endpoint.py): boto3 and the bridge's own client against it,
and the bridge draining it with every message conserved."""

from __future__ import annotations

import hashlib
import json
import socket
import threading
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import ClientError, NoCredentialsError

from bench.sqs_endpoint import (
    EndpointServer,
    endpoint_process,
    endpoint_thread,
    fetch_stats,
    message_id,
    notification_body,
)
from jobs.bridge import LocalBronzeStore, SqsBridge
from jobs.bridge.retry import PERMANENT_CODES, error_code
from jobs.bridge.sqsjson import SqsJsonClient
from jobs.config import load_config
from jobs.events import parse_message

pytestmark = pytest.mark.integration
SEED = 7
ATTRIBUTES = ["ApproximateReceiveCount", "SentTimestamp"]


@pytest.fixture
def endpoint() -> Iterator[EndpointServer]:
    with endpoint_thread(25, SEED) as server:
        yield server


def sqs(endpoint_url: str) -> Any:
    return boto3.client("sqs", endpoint_url=endpoint_url, region_name="us-east-1")


def test_bodies_are_seeded_s3_notifications_the_parser_accepts() -> None:
    assert notification_body(3, SEED) == notification_body(3, SEED) != notification_body(3, SEED + 1)
    assert message_id(3, SEED) != message_id(4, SEED)
    for index in range(40):
        body = json.loads(notification_body(index, SEED))
        (record,) = body["Records"]
        assert record["eventName"] == "ObjectCreated:Put" and " " not in record["s3"]["object"]["key"]
        (event,) = parse_message(notification_body(index, SEED))
        assert (event.outcome, event.zone, event.event_kind) == ("event", "raw", "created")
        assert event.sequencer and event.version_id and event.bucket == "bench-lake"


def test_boto3_receive_and_delete_round_trip(endpoint: EndpointServer) -> None:
    client, url = sqs(endpoint.endpoint), endpoint.queue.queue_url
    assert client.get_queue_url(QueueName="bench-events")["QueueUrl"] == url

    got = client.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageSystemAttributeNames=ATTRIBUTES
    )["Messages"]

    assert [m["MessageId"] for m in got] == [message_id(i, SEED) for i in range(10)]
    assert [m["Body"] for m in got] == [notification_body(i, SEED) for i in range(10)]
    assert all(m["MD5OfBody"] == hashlib.md5(m["Body"].encode()).hexdigest() for m in got)
    assert all(m["Attributes"]["ApproximateReceiveCount"] == "1" for m in got)
    assert all(m["Attributes"]["SentTimestamp"].isdigit() for m in got)
    assert len({m["ReceiptHandle"] for m in got}) == 10

    entries = [{"Id": str(i), "ReceiptHandle": m["ReceiptHandle"]} for i, m in enumerate(got)]
    deleted = client.delete_message_batch(QueueUrl=url, Entries=entries)
    assert sorted(e["Id"] for e in deleted["Successful"]) == [str(i) for i in range(10)]
    assert deleted["Failed"] == []
    again = client.delete_message_batch(QueueUrl=url, Entries=entries[:2])
    assert [(f["Code"], f["SenderFault"]) for f in again["Failed"]] == [("ReceiptHandleIsInvalid", True)] * 2

    backlog = client.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    assert (backlog["ApproximateNumberOfMessages"], backlog["ApproximateNumberOfMessagesNotVisible"]) == (
        "15",
        "0",
    )
    stats = fetch_stats(endpoint.endpoint)
    assert (stats["deleted_once"], stats["never_deleted"], stats["invalid_handles"]) == (10, 15, 2)
    assert stats["requests"] == {
        "DeleteMessageBatch": 2,
        "GetQueueAttributes": 1,
        "GetQueueUrl": 1,
        "ReceiveMessage": 1,
    }


def test_visibility_and_errors_behave_like_sqs(endpoint: EndpointServer) -> None:
    client, url = sqs(endpoint.endpoint), endpoint.queue.queue_url
    first = client.receive_message(QueueUrl=url, MaxNumberOfMessages=1, VisibilityTimeout=60)["Messages"][0]
    handle = first["ReceiptHandle"]
    changed = client.change_message_visibility_batch(
        QueueUrl=url, Entries=[{"Id": "a", "ReceiptHandle": handle, "VisibilityTimeout": 0}]
    )
    assert changed["Successful"] == [{"Id": "a"}]

    # at most 10 per call; the message whose visibility ended comes back, counted twice
    again = client.receive_message(
        QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1, MessageSystemAttributeNames=["All"]
    )["Messages"]
    assert len(again) == 10
    counts = {m["MessageId"]: m["Attributes"]["ApproximateReceiveCount"] for m in again}
    assert counts[first["MessageId"]] == "2" and sorted(counts.values()).count("1") == 9

    with pytest.raises(client.exceptions.QueueDoesNotExist) as missing:
        client.receive_message(QueueUrl=url.replace("bench-events", "nope"))
    assert missing.value.response["Error"]["Code"] == "AWS.SimpleQueueService.NonExistentQueue"
    with pytest.raises(ClientError, match="InvalidParameterValue"):
        client.receive_message(QueueUrl=url, MaxNumberOfMessages=11)
    with pytest.raises(ClientError, match="TooManyEntriesInBatchRequest"):
        client.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": str(i), "ReceiptHandle": "x"} for i in range(11)]
        )
    with pytest.raises(ClientError, match="UnsupportedOperation"):
        client.send_message(QueueUrl=url, MessageBody="{}")


def test_bridge_client_answers_exactly_as_boto3(endpoint: EndpointServer) -> None:
    url = endpoint.queue.queue_url
    session = boto3.session.Session()
    direct = SqsJsonClient(endpoint.endpoint, "us-east-1", session.get_credentials(), timeout=10)
    try:
        got = direct.receive_message(
            QueueUrl=url, MaxNumberOfMessages=3, WaitTimeSeconds=1, MessageSystemAttributeNames=["All"]
        )["Messages"]
        assert [m["Body"] for m in got] == [notification_body(i, SEED) for i in range(3)]
        deleted = direct.delete_message_batch(
            QueueUrl=url, Entries=[{"Id": "0", "ReceiptHandle": got[0]["ReceiptHandle"]}]
        )
        assert deleted["Successful"] == [{"Id": "0"}]

        wrong = url.replace("bench-events", "nope")
        with pytest.raises(ClientError) as ours:
            direct.get_queue_attributes(QueueUrl=wrong, AttributeNames=["All"])
        with pytest.raises(ClientError) as theirs:
            sqs(endpoint.endpoint).get_queue_attributes(QueueUrl=wrong, AttributeNames=["All"])
        assert ours.value.response["Error"] == theirs.value.response["Error"]
        assert error_code(ours.value) in PERMANENT_CODES  # the bridge gives up at once, as with boto3
    finally:
        direct.close()
    with pytest.raises(NoCredentialsError):
        SqsJsonClient(endpoint.endpoint, "us-east-1", None, timeout=10).get_queue_attributes(QueueUrl=url)


class OneAnswerServer:
    """Answers one request per connection, then closes it without saying so; keeps what it got."""

    ANSWER = b'{"Attributes":{"ApproximateNumberOfMessages":"0"}}'

    def __init__(self, connections: int) -> None:
        self.listener = socket.create_server(("127.0.0.1", 0))
        self.endpoint = f"http://127.0.0.1:{self.listener.getsockname()[1]}"
        self.requests: list[tuple[dict[str, str], bytes]] = []
        self.thread = threading.Thread(target=self._serve, args=(connections,), daemon=True)
        self.thread.start()

    def _serve(self, connections: int) -> None:
        for _ in range(connections):
            conn, _ = self.listener.accept()
            with conn:
                data = b""
                while b"\r\n\r\n" not in data:
                    data += conn.recv(65536)
                head, _, body = data.partition(b"\r\n\r\n")
                lines = head.decode().split("\r\n")[1:]
                headers = {k.strip().lower(): v.strip() for k, v in (line.split(":", 1) for line in lines)}
                while len(body) < int(headers["content-length"]):
                    body += conn.recv(65536)
                self.requests.append((headers, body))
                conn.sendall(
                    b"HTTP/1.1 200 OK\r\nContent-Type: application/x-amz-json-1.0\r\n"
                    b"Content-Length: %d\r\n\r\n%s" % (len(self.ANSWER), self.ANSWER)
                )

    def close(self) -> None:
        self.thread.join(timeout=5)
        self.listener.close()


def test_bridge_client_reconnects_when_a_kept_alive_connection_was_closed() -> None:
    server = OneAnswerServer(connections=2)
    direct = SqsJsonClient(server.endpoint, "us-east-1", boto3.session.Session().get_credentials(), timeout=5)
    try:
        for _ in range(2):
            attributes = direct.get_queue_attributes(QueueUrl=f"{server.endpoint}/1/q")["Attributes"]
            assert attributes == {"ApproximateNumberOfMessages": "0"}
    finally:
        direct.close()
        server.close()
    assert len(server.requests) == 2


def test_bridge_client_sends_exactly_the_headers_it_signed() -> None:
    """Recompute the SigV4 signature from what arrived on the wire (moto does not check it)."""
    server = OneAnswerServer(connections=1)
    credentials = boto3.session.Session().get_credentials()
    assert credentials is not None
    direct = SqsJsonClient(server.endpoint, "eu-west-1", credentials, timeout=5)
    try:
        direct.get_queue_attributes(QueueUrl=f"{server.endpoint}/1/q", AttributeNames=["All"])
    finally:
        direct.close()
        server.close()
    ((headers, body),) = server.requests
    fields = dict(part.strip().split("=", 1) for part in headers["authorization"].split(" ", 1)[1].split(","))
    signed = fields["SignedHeaders"].split(";")
    assert {"host", "content-type", "x-amz-date", "x-amz-target", "x-amz-security-token"} <= set(signed)
    assert fields["Credential"].endswith("/eu-west-1/sqs/aws4_request")
    assert headers["x-amz-target"] == "AmazonSQS.GetQueueAttributes"
    assert headers["content-type"] == "application/x-amz-json-1.0"
    assert json.loads(body) == {"QueueUrl": f"{server.endpoint}/1/q", "AttributeNames": ["All"]}

    request = AWSRequest(
        "POST", f"http://{headers['host']}/", data=body, headers={h: headers[h] for h in signed}
    )
    request.context["timestamp"] = headers["x-amz-date"]
    auth = SigV4Auth(credentials.get_frozen_credentials(), "sqs", "eu-west-1")
    string_to_sign = auth.string_to_sign(request, auth.canonical_request(request))
    assert auth.signature(string_to_sign, request) == fields["Signature"]


@pytest.mark.parametrize("transport", ["direct", "boto3"])
def test_bridge_drains_the_endpoint_and_deletes_each_message_once(tmp_path: Path, transport: str) -> None:
    count = 200
    with endpoint_process(count, SEED) as (endpoint_url, queue_url):
        config = load_config(
            None,
            environ={},
            overrides={
                "lake": {"root": str(tmp_path)},
                "sqs": {"queue_url": queue_url, "endpoint_url": endpoint_url},
                "bridge": {
                    "receivers": 4,
                    "wait_time_seconds": 1,
                    "flush_max_messages": 50,
                    "flush_interval_seconds": 0.5,
                    "sqs_transport": transport,
                },
            },
        )
        store = LocalBronzeStore(tmp_path / "bronze")
        snap = SqsBridge(config, store=store).run_until_empty()
        stats = fetch_stats(endpoint_url)

    lines = [json.loads(line) for name in store.names() for line in store.read(name).splitlines()]
    assert len(lines) == count
    assert {row["message_id"]: row["body"] for row in lines} == {
        message_id(i, SEED): notification_body(i, SEED) for i in range(count)
    }
    assert (stats["deleted_once"], stats["deleted_more_than_once"], stats["never_deleted"]) == (count, 0, 0)
    assert (stats["available"], stats["in_flight"], stats["redelivered"], stats["invalid_handles"]) == (
        0,
        0,
        0,
        0,
    )
    assert (snap.received, snap.landed, snap.deleted, snap.held, snap.errors) == (count, count, count, 0, {})
    assert stats["requests"] == {
        "DeleteMessageBatch": snap.delete_calls,
        "GetQueueAttributes": snap.attribute_calls,
        "ReceiveMessage": snap.receive_calls,
    }
    assert snap.delete_calls == count // 10  # full batches of 10
    assert snap.receive_calls - snap.empty_receives == count // 10

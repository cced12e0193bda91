"""A synthetic, fast SQS endpoint: a load generator for the SQS bridge, not a full SQS.

It speaks the wire protocol the pinned botocore uses for SQS (the JSON protocol:
``POST /``, ``X-Amz-Target: AmazonSQS.<Action>``, ``application/x-amz-json-1.0``,
errors as ``__type`` plus the ``x-amzn-query-error`` header) for the actions the
bridge calls: ReceiveMessage, DeleteMessageBatch, ChangeMessageVisibilityBatch,
GetQueueAttributes and GetQueueUrl. Anything else is answered with
UnsupportedOperation.

One queue holds a finite, seeded supply of pre-generated S3 ObjectCreated
notifications (one Record each, with a sequencer). Receives hand out at most
``MaxNumberOfMessages`` (<= 10) with fresh receipt handles; an undeleted message
reappears when its visibility timeout ends; long polls wait up to
``WaitTimeSeconds``. Requests per action and deletions per message are counted,
so a run can check that every message was deleted exactly once
(``GET /_bench/stats``).

Run it in its own process (it then does not share the GIL with the bridge)::

    .venv/bin/python bench/sqs_endpoint.py --messages 50000 --seed 7

It prints ``ready <endpoint> <queue url>`` once listening, then serves until
killed. Tests and benchmarks use :func:`endpoint_process` or :func:`endpoint_thread`.
"""

from __future__ import annotations

import argparse
import hashlib
import heapq
import json
import random
import socketserver
import subprocess
import sys
import threading
import time
import urllib.request
from collections import deque
from collections.abc import Callable, Iterator, Mapping, Sequence
from contextlib import contextmanager
from datetime import UTC, datetime, timedelta
from http import HTTPStatus
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

ACCOUNT = "123456789012"
QUEUE_NAME = "bench-events"
BUCKET = "bench-lake"
STATS_PATH = "/_bench/stats"
BATCH_LIMIT = 10
_ERROR_CODES = {  # shape name -> the query-protocol code SQS reports in x-amzn-query-error
    "QueueDoesNotExist": "AWS.SimpleQueueService.NonExistentQueue",
    "UnsupportedOperation": "AWS.SimpleQueueService.UnsupportedOperation",
    "TooManyEntriesInBatchRequest": "AWS.SimpleQueueService.TooManyEntriesInBatchRequest",
    "EmptyBatchRequest": "AWS.SimpleQueueService.EmptyBatchRequest",
    "InvalidParameterValue": "InvalidParameterValue",
}
#: An answer: HTTP status, JSON body, extra headers.
Reply = tuple[int, Mapping[str, Any], Mapping[str, str]]


def notification_body(index: int, seed: int) -> str:
    """The S3 ObjectCreated notification of message ``index`` (deterministic per seed).

    Args:
        index: Message number, from 0.
        seed: The supply's seed.

    Returns:
        A JSON body with one Record, as S3 sends it to SQS (URL-encoded key, sequencer).
    """
    rng = random.Random(seed * 1_000_003 + index)
    tenant = f"tenant{rng.randrange(200):03d}"
    dataset = rng.choice(("orders", "customers", "payments"))
    name = f"{index:07d} part {rng.randrange(10)}.csv" if rng.random() < 0.1 else f"{index:07d}.csv"
    key = f"{tenant}/raw/{dataset}/2024/03/{rng.randrange(1, 29):02d}/{name}"
    when = datetime(2024, 3, 1, tzinfo=UTC) + timedelta(milliseconds=rng.randrange(86_400_000 * 28))
    size = rng.randrange(200, 2_000_000)
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{when.microsecond // 1000:03d}Z",
        "eventName": "ObjectCreated:Put",
        "userIdentity": {"principalId": "AWS:AIDAJDPLRKLG7UEXAMPLE"},
        "requestParameters": {"sourceIPAddress": f"203.0.113.{rng.randrange(1, 255)}"},
        "responseElements": {
            "x-amz-request-id": f"{rng.getrandbits(64):016X}",
            "x-amz-id-2": f"{rng.getrandbits(256):064x}",
        },
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "tenant-group-events",
            "bucket": {
                "name": BUCKET,
                "ownerIdentity": {"principalId": "A3NL1KOZZKEXAMPLE"},
                "arn": f"arn:aws:s3:::{BUCKET}",
            },
            "object": {
                "key": quote_plus(key, safe="/"),
                "size": size,
                "eTag": f"{rng.getrandbits(128):032x}",
                "versionId": f"{rng.getrandbits(128):032x}",
                "sequencer": f"{0x0055AED6DCD9000000 + index * 4096 + rng.randrange(4096):018X}",
            },
        },
    }
    return json.dumps({"Records": [record]}, separators=(",", ":"))


def message_id(index: int, seed: int) -> str:
    """The SQS message id of message ``index`` (UUID-shaped, deterministic per seed).

    Args:
        index: Message number, from 0.
        seed: The supply's seed.

    Returns:
        E.g. ``3b9f5c1e-...``.
    """
    digest = hashlib.md5(f"{seed}:{index}".encode(), usedforsecurity=False).hexdigest()
    return f"{digest[:8]}-{digest[8:12]}-{digest[12:16]}-{digest[16:20]}-{digest[20:32]}"


class SyntheticQueue:
    """One queue with a finite supply of messages; thread-safe."""

    def __init__(self, bodies: Sequence[str], *, seed: int, sent_at_ms: int | None = None) -> None:
        """Fill the queue.

        Args:
            bodies: The message bodies; message ``i`` has id ``message_id(i, seed)``.
            seed: Used for the message ids.
            sent_at_ms: The messages' SentTimestamp (default: now).
        """
        self._bodies = list(bodies)
        self._ids = [message_id(i, seed) for i in range(len(bodies))]
        self._md5 = [hashlib.md5(b.encode(), usedforsecurity=False).hexdigest() for b in self._bodies]
        self._sent = str(sent_at_ms if sent_at_ms is not None else int(time.time() * 1000))
        self._available: deque[int] = deque(range(len(bodies)))
        self._in_flight: dict[str, tuple[int, float]] = {}  # handle -> (message, visible again at)
        self._deadlines: list[tuple[float, str]] = []  # heap; entries of settled handles are stale
        self._receive_counts = [0] * len(bodies)
        self._deletes = [0] * len(bodies)
        self._serial = 0
        self._filler = hashlib.sha512(str(seed).encode()).hexdigest()[:120]  # real handles are long
        self._cond = threading.Condition()
        self.queue_url = f"http://localhost/{ACCOUNT}/{QUEUE_NAME}"
        self.requests: dict[str, int] = {}
        self.counts = {"received": 0, "redelivered": 0, "invalid_handles": 0, "expired": 0}
        self.first_receive_at: float | None = None
        self.last_delete_at: float | None = None

    def count_request(self, action: str) -> None:
        """Count one request of ``action`` (also unsupported ones)."""
        with self._cond:
            self.requests[action] = self.requests.get(action, 0) + 1

    def _expire(self, now: float) -> None:
        """Return messages whose visibility ended to the queue (lock held)."""
        while self._deadlines and self._deadlines[0][0] <= now:
            deadline, handle = heapq.heappop(self._deadlines)
            entry = self._in_flight.get(handle)
            if entry is not None and entry[1] == deadline:
                del self._in_flight[handle]
                self._available.appendleft(entry[0])  # older than the rest: first out again
                self.counts["expired"] += 1

    def receive(
        self, max_messages: int, wait_seconds: float, visibility: float, attributes: set[str]
    ) -> list[dict[str, Any]]:
        """Hand out up to ``max_messages``, waiting up to ``wait_seconds`` for one.

        Args:
            max_messages: 1 to 10.
            wait_seconds: Long-poll wait.
            visibility: Seconds until an undeleted message reappears.
            attributes: System attributes asked for (``All`` for all).

        Returns:
            The messages as ReceiveMessage returns them.
        """
        give_up = time.monotonic() + wait_seconds
        with self._cond:
            while True:
                now = time.monotonic()
                self._expire(now)
                if self._available or now >= give_up:
                    break
                next_expiry = self._deadlines[0][0] - now if self._deadlines else give_up - now
                self._cond.wait(min(give_up - now, next_expiry))
            taken = [self._available.popleft() for _ in range(min(max_messages, len(self._available)))]
            deadline = now + visibility
            out = []
            for index in taken:
                self._serial += 1
                handle = f"AQEB{index:010d}{self._serial:012d}{self._filler}"
                self._in_flight[handle] = (index, deadline)
                heapq.heappush(self._deadlines, (deadline, handle))
                self._receive_counts[index] += 1
                out.append(self._message(index, handle, attributes))
            if taken:
                self.counts["received"] += len(taken)
                self.counts["redelivered"] += sum(self._receive_counts[i] > 1 for i in taken)
                self.first_receive_at = self.first_receive_at or time.time()
        return out

    def _message(self, index: int, handle: str, attributes: set[str]) -> dict[str, Any]:
        message: dict[str, Any] = {
            "MessageId": self._ids[index],
            "ReceiptHandle": handle,
            "MD5OfBody": self._md5[index],
            "Body": self._bodies[index],
        }
        values = {
            "ApproximateReceiveCount": str(self._receive_counts[index]),
            "SentTimestamp": self._sent,
            "ApproximateFirstReceiveTimestamp": self._sent,
            "SenderId": "AIDAJDPLRKLG7UEXAMPLE",
        }
        chosen = values if "All" in attributes else {k: v for k, v in values.items() if k in attributes}
        if chosen:
            message["Attributes"] = chosen
        return message

    def settle(self, entries: Sequence[Mapping[str, Any]], *, delete: bool) -> dict[str, Any]:
        """Delete a batch of receipts, or change their visibility.

        Args:
            entries: ``{"Id", "ReceiptHandle"[, "VisibilityTimeout"]}`` entries.
            delete: True to delete; False to set each entry's ``VisibilityTimeout``.

        Returns:
            ``{"Successful": [...], "Failed": [...]}`` as the batch actions return it.
        """
        ok: list[dict[str, str]] = []
        failed: list[dict[str, Any]] = []
        with self._cond:
            now = time.monotonic()
            self._expire(now)
            for entry in entries:
                handle = str(entry.get("ReceiptHandle", ""))
                held = self._in_flight.get(handle)
                if held is None:
                    self.counts["invalid_handles"] += 1
                    code = "ReceiptHandleIsInvalid"
                    failed.append({"Id": entry["Id"], "SenderFault": True, "Code": code, "Message": code})
                    continue
                if delete:
                    del self._in_flight[handle]
                    self._deletes[held[0]] += 1
                    self.last_delete_at = time.time()
                else:
                    deadline = now + float(entry.get("VisibilityTimeout", 0))
                    self._in_flight[handle] = (held[0], deadline)
                    heapq.heappush(self._deadlines, (deadline, handle))
                    if deadline <= now:
                        self._cond.notify_all()
                ok.append({"Id": entry["Id"]})
        return {"Successful": ok, "Failed": failed}

    def attributes(self, names: Sequence[str]) -> dict[str, str]:
        """Queue attributes (the backlog ones, delayed always 0).

        Args:
            names: Attribute names asked for (``All`` for all).

        Returns:
            Name -> value.
        """
        with self._cond:
            self._expire(time.monotonic())
            values = {
                "ApproximateNumberOfMessages": str(len(self._available)),
                "ApproximateNumberOfMessagesNotVisible": str(len(self._in_flight)),
                "ApproximateNumberOfMessagesDelayed": "0",
                "QueueArn": f"arn:aws:sqs:us-east-1:{ACCOUNT}:{QUEUE_NAME}",
            }
        return values if "All" in names else {k: v for k, v in values.items() if k in names}

    def stats(self) -> dict[str, Any]:
        """Counters for a conservation check.

        Returns:
            Requests per action, message counts, deletions per message summarised.
        """
        with self._cond:
            deletes = self._deletes
            return {
                "messages": len(deletes),
                "requests": dict(sorted(self.requests.items())),
                **self.counts,
                "deleted": sum(deletes),
                "deleted_once": sum(1 for d in deletes if d == 1),
                "deleted_more_than_once": sum(1 for d in deletes if d > 1),
                "never_deleted": sum(1 for d in deletes if d == 0),
                "available": len(self._available),
                "in_flight": len(self._in_flight),
                "first_receive_at": self.first_receive_at,
                "last_delete_at": self.last_delete_at,
                "cpu_seconds": time.process_time(),
            }


def answer(queue: SyntheticQueue, target: str, request: Mapping[str, Any]) -> Reply:
    """Carry out one SQS JSON-protocol request.

    Args:
        queue: The queue.
        target: The ``X-Amz-Target`` header, e.g. ``AmazonSQS.ReceiveMessage``.
        request: The parsed request body.

    Returns:
        ``(HTTP status, response object, extra headers)``.
    """
    action = target.removeprefix("AmazonSQS.")
    queue.count_request(action)
    if action == "GetQueueUrl":
        if request.get("QueueName") == QUEUE_NAME:
            return 200, {"QueueUrl": queue.queue_url}, {}
        return error("QueueDoesNotExist", "The specified queue does not exist.")
    if action not in _ACTIONS:
        return error("UnsupportedOperation", f"{action or 'no action'} is not supported here.")
    if str(request.get("QueueUrl", "")).rstrip("/").rsplit("/", 1)[-1] != QUEUE_NAME:
        return error("QueueDoesNotExist", "The specified queue does not exist.")
    return _ACTIONS[action](queue, request)


def error(shape: str, message: str) -> Reply:
    """An SQS error reply: ``__type`` names the shape, ``x-amzn-query-error`` the query code.

    Args:
        shape: The error shape, e.g. ``QueueDoesNotExist``.
        message: Its message.

    Returns:
        ``(400, body, headers)``.
    """
    body = {"__type": f"com.amazonaws.sqs#{shape}", "message": message}
    return 400, body, {"x-amzn-query-error": f"{_ERROR_CODES[shape]};Sender"}


def _receive(queue: SyntheticQueue, request: Mapping[str, Any]) -> Reply:
    wanted = int(request.get("MaxNumberOfMessages", 1))
    if not 1 <= wanted <= BATCH_LIMIT:
        return error("InvalidParameterValue", "MaxNumberOfMessages must be between 1 and 10.")
    names = {*request.get("MessageSystemAttributeNames", []), *request.get("AttributeNames", [])}
    wait = min(float(request.get("WaitTimeSeconds", 0)), 20.0)
    messages = queue.receive(wanted, wait, float(request.get("VisibilityTimeout", 30)), names)
    return 200, ({"Messages": messages} if messages else {}), {}


def _batch(queue: SyntheticQueue, request: Mapping[str, Any], *, delete: bool) -> Reply:
    entries = request.get("Entries") or []
    if not entries:
        return error("EmptyBatchRequest", "There should be at least one entry in the request.")
    if len(entries) > BATCH_LIMIT:
        return error("TooManyEntriesInBatchRequest", "Maximum number of entries per request are 10.")
    return 200, queue.settle(entries, delete=delete), {}


_ACTIONS: dict[str, Callable[[SyntheticQueue, Mapping[str, Any]], Reply]] = {
    "ReceiveMessage": _receive,
    "DeleteMessageBatch": lambda queue, request: _batch(queue, request, delete=True),
    "ChangeMessageVisibilityBatch": lambda queue, request: _batch(queue, request, delete=False),
    "GetQueueAttributes": lambda queue, request: (
        200,
        {"Attributes": queue.attributes(request.get("AttributeNames", []))},
        {},
    ),
}


class SqsRequestHandler(socketserver.StreamRequestHandler):
    """A minimal keep-alive HTTP/1.1 loop: ``POST /`` for SQS actions, ``GET /_bench/stats``.

    http.server's header parsing (the email package) costs more CPU than the
    answers; SQS clients send small, well-formed requests, so a line reader suffices.
    """

    disable_nagle_algorithm = True
    server: EndpointServer

    def handle(self) -> None:
        """Serve requests on one connection until the client closes it."""
        while True:
            request_line = self.rfile.readline(8192)
            if not request_line.strip():
                return
            headers: dict[bytes, bytes] = {}
            for line in iter(lambda: self.rfile.readline(65536), b""):
                if line in (b"\r\n", b"\n"):
                    break
                name, _, value = line.partition(b":")
                headers[name.strip().lower()] = value.strip()
            body = self.rfile.read(int(headers.get(b"content-length", b"0")))
            method, path = request_line.split()[:2]
            if method == b"GET" and path.decode() == STATS_PATH:
                reply: Reply = (200, self.server.queue.stats(), {})
            elif method == b"POST":
                target = headers.get(b"x-amz-target", b"").decode()
                if self.server.latency:
                    time.sleep(self.server.latency)  # a network round trip to a real SQS
                reply = answer(self.server.queue, target, json.loads(body or b"{}"))
            else:
                reply = (404, {"message": "not found"}, {})
            self.wfile.write(_encode(*reply))
            if headers.get(b"connection", b"").lower() == b"close":
                return


def _encode(status: int, body: Mapping[str, Any], headers: Mapping[str, str]) -> bytes:
    data = json.dumps(body, separators=(",", ":")).encode()
    lines = [
        f"HTTP/1.1 {status} {HTTPStatus(status).phrase}",
        "Content-Type: application/x-amz-json-1.0",
        f"Content-Length: {len(data)}",
        "x-amzn-RequestId: 00000000-0000-0000-0000-000000000000",
        *(f"{name}: {value}" for name, value in headers.items()),
    ]
    return ("\r\n".join(lines) + "\r\n\r\n").encode() + data


class EndpointServer(socketserver.ThreadingTCPServer):
    """A thread-per-connection server holding one synthetic queue."""

    daemon_threads = True
    allow_reuse_address = True
    request_queue_size = 128

    def __init__(
        self, queue: SyntheticQueue, host: str = "127.0.0.1", port: int = 0, latency_ms: float = 0.0
    ) -> None:
        """Bind (port 0: a free one); call ``serve_forever`` to serve.

        Args:
            queue: The queue to serve (its ``queue_url`` is set here).
            host: Interface to listen on.
            port: TCP port.
            latency_ms: Added to every SQS request, to mimic the round trip to a real SQS.
        """
        super().__init__((host, port), SqsRequestHandler)
        self.queue = queue
        self.latency = latency_ms / 1000
        self.endpoint = f"http://{host}:{self.server_address[1]}"
        queue.queue_url = f"{self.endpoint}/{ACCOUNT}/{QUEUE_NAME}"


def make_server(
    messages: int, seed: int, host: str = "127.0.0.1", port: int = 0, latency_ms: float = 0.0
) -> EndpointServer:
    """Generate the supply and bind a server for it.

    Args:
        messages: How many messages the queue starts with.
        seed: Seed of the bodies and message ids.
        host: Interface to listen on.
        port: TCP port (0: a free one).
        latency_ms: Added to every SQS request.

    Returns:
        The bound server (not serving yet).
    """
    bodies = [notification_body(i, seed) for i in range(messages)]
    return EndpointServer(SyntheticQueue(bodies, seed=seed), host, port, latency_ms)


@contextmanager
def endpoint_thread(messages: int, seed: int = 7) -> Iterator[EndpointServer]:
    """Serve a synthetic queue from a thread of this process for the duration of the block.

    Args:
        messages: How many messages the queue starts with.
        seed: Seed of the bodies and message ids.

    Yields:
        The server (``endpoint``; ``queue`` with its ``queue_url``).
    """
    server = make_server(messages, seed)
    thread = threading.Thread(target=server.serve_forever, name="sqs-endpoint", daemon=True)
    thread.start()
    try:
        yield server
    finally:
        server.shutdown()
        server.server_close()
        thread.join()


def fetch_stats(endpoint: str) -> dict[str, Any]:
    """The endpoint's counters (see :meth:`SyntheticQueue.stats`).

    Args:
        endpoint: E.g. ``http://127.0.0.1:50123``.

    Returns:
        The counters.
    """
    with urllib.request.urlopen(endpoint + STATS_PATH, timeout=30) as response:
        stats: dict[str, Any] = json.loads(response.read())
    return stats


@contextmanager
def endpoint_process(messages: int, seed: int = 7, latency_ms: float = 0.0) -> Iterator[tuple[str, str]]:
    """Serve a synthetic queue from a child process (its own GIL) for the duration of the block.

    Args:
        messages: How many messages the queue starts with.
        seed: Seed of the bodies and message ids.
        latency_ms: Added to every SQS request, to mimic the round trip to a real SQS.

    Yields:
        ``(endpoint, queue_url)``.

    Raises:
        RuntimeError: The child did not start.
    """
    cmd = [sys.executable, str(Path(__file__).resolve()), "--messages", str(messages), "--seed", str(seed)]
    cmd += ["--latency-ms", str(latency_ms)]
    child = subprocess.Popen(cmd, stdout=subprocess.PIPE, text=True)
    try:
        assert child.stdout is not None
        words = child.stdout.readline().split()
        if len(words) != 3 or words[0] != "ready":
            raise RuntimeError(f"synthetic SQS endpoint did not start (exit code {child.poll()})")
        yield words[1], words[2]
    finally:
        child.terminate()
        child.wait(timeout=30)


def main(argv: Sequence[str] | None = None) -> int:
    """Serve a synthetic queue until killed.

    Args:
        argv: Command-line arguments (default: ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--messages", type=int, default=50_000, help="messages in the queue at start")
    parser.add_argument("--seed", type=int, default=7, help="seed of the bodies and message ids")
    parser.add_argument("--host", default="127.0.0.1")
    parser.add_argument("--port", type=int, default=0, help="0: a free port")
    parser.add_argument(
        "--latency-ms", type=float, default=0.0, help="added to every SQS request (a real SQS round trip)"
    )
    args = parser.parse_args(argv)
    server = make_server(args.messages, args.seed, args.host, args.port, args.latency_ms)
    print("ready", server.endpoint, server.queue.queue_url, flush=True)
    try:
        server.serve_forever()
    except KeyboardInterrupt:
        pass
    finally:
        server.server_close()
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

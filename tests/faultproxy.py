"""A fault-injecting HTTP proxy for the SQS JSON protocol, put between the bridge and moto's server.

The proxy forwards ``POST /`` requests (``X-Amz-Target: AmazonSQS.<Action>``) to the
upstream endpoint and, on a schedule of :class:`Phase` windows, injects what a real
SQS endpoint does when it is down, slow or overloaded:

* ``refuse``: the listening socket is closed (connections are refused) and open
  connections are dropped, for the whole window;
* ``delay``: the request is forwarded after ``delay`` seconds;
* ``error``: SQS's JSON-protocol error reply (``__type`` and ``x-amzn-query-error``,
  as :func:`bench.sqs_endpoint.error` and real SQS send them) without forwarding;
* ``lose_reply``: the request is forwarded (it takes effect), then answered with a 500;
* ``reject_entries`` (DeleteMessageBatch): every entry fails as ``ReceiptHandleIsInvalid``
  (sender fault), nothing is forwarded, so the messages reappear after their visibility.

Every injection is counted by (action, kind) in :attr:`FaultProxy.injected`; the proxy
learns which message each receipt handle belongs to from the ReceiveMessage replies it
relays, so tests can name the messages whose deletes it failed: :attr:`FaultProxy.rejected_ids`
holds those still in SQS when their delete was rejected (they must reappear and land again).
"""

from __future__ import annotations

import contextlib
import http.client
import json
import logging
import socket
import threading
import time
from collections import Counter
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from http.server import BaseHTTPRequestHandler
from typing import Any
from urllib.parse import urlsplit

log = logging.getLogger(__name__)

#: Error name -> (HTTP status, ``__type``, ``x-amzn-query-error``), as SQS answers.
ERRORS: dict[str, tuple[int, str, str]] = {
    "RequestThrottled": (403, "com.amazonaws.sqs#RequestThrottled", "RequestThrottled;Sender"),
    "OverLimit": (403, "com.amazonaws.sqs#OverLimit", "OverLimit;Sender"),
    "ThrottlingException": (
        400,
        "com.amazon.coral.availability#ThrottlingException",
        "ThrottlingException;Sender",
    ),
    "InternalError": (500, "com.amazonaws.sqs#InternalError", "InternalError;Receiver"),
    "ServiceUnavailable": (503, "com.amazonaws.sqs#ServiceUnavailable", "ServiceUnavailable;Receiver"),
}
KINDS = frozenset({"pass", "refuse", "delay", "error", "lose_reply", "reject_entries"})


@dataclass(frozen=True)
class Phase:
    """One window of the schedule.

    Attributes:
        kind: One of :data:`KINDS`.
        seconds: How long the window lasts.
        actions: The actions it applies to (empty: all).
        errors: For ``error``: the error names (:data:`ERRORS`) used in turn.
        every: Inject on every n-th matching request (1: all of them).
        delay: For ``delay``: seconds before forwarding.
        until: When above 0 the window is driven by events, not by the clock: it closes
            once it has hit traffic ``until`` times (for ``reject_entries``: rejected the
            delete of that many messages still in the queue), ``seconds`` being only the
            longest it waits. A slow or busy machine then cannot make the schedule miss.
    """

    kind: str
    seconds: float
    actions: frozenset[str] = frozenset()
    errors: tuple[str, ...] = ("InternalError",)
    every: int = 1
    delay: float = 0.0
    until: int = 0

    def __post_init__(self) -> None:
        """Reject unknown kinds and error names."""
        if self.kind not in KINDS or not set(self.errors) <= set(ERRORS):
            raise ValueError(f"bad phase {self}")


class FaultProxy:
    """The proxy: ``start()``, ``play(phases)``, read the counters, ``stop()``."""

    def __init__(self, upstream: str) -> None:
        """Create the proxy (not listening yet).

        Args:
            upstream: The real endpoint, e.g. moto's ``http://127.0.0.1:5000``.
        """
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.port = 0
        self.injected: Counter[tuple[str, str]] = Counter()
        self.requests: Counter[str] = Counter()
        self.rejected_ids: list[str] = []
        self.deleted_ids: list[str] = []
        self.on_delete: Callable[[list[str]], None] | None = None
        self._handles: dict[str, str] = {}
        self._lock = threading.Lock()
        self._listener: socket.socket | None = None
        self._conns: set[socket.socket] = set()
        self._phase: Phase | None = None
        self._matched = 0
        self._hits = 0  # how often the current phase hit traffic (for ``until``)
        self._phase_met = threading.Event()
        self._stop = threading.Event()
        self._cancel = threading.Event()
        self._first = threading.Event()
        self._done = threading.Event()
        self._done.set()
        self._applied = threading.Event()

    @property
    def url(self) -> str:
        """The proxy's endpoint URL."""
        return f"http://127.0.0.1:{self.port}"

    def start(self) -> FaultProxy:
        """Listen on a free loopback port and pass everything through."""
        self._listen()
        return self

    def stop(self) -> None:
        """Stop the schedule, close the listener and every connection."""
        self._stop.set()
        self.cancel()
        self._close_all()

    def play(self, phases: Sequence[Phase], *, on_first_request: bool = False) -> None:
        """Run ``phases`` one after the other, then pass everything through.

        Args:
            phases: The schedule (a schedule still playing is cancelled first).
            on_first_request: Start the clock at the next request rather than now.
        """
        self.cancel()
        self._cancel = threading.Event()
        self._first.clear()
        if not on_first_request:
            self._first.set()
        self._done.clear()
        self._applied.clear()
        threading.Thread(target=self._schedule, args=(list(phases), self._cancel), daemon=True).start()
        if not on_first_request:
            self._applied.wait(5)  # the first phase is in force when play() returns

    def wait_started(self, timeout: float) -> bool:
        """Wait for the schedule's clock to start (the first request, with ``on_first_request``)."""
        return self._applied.wait(timeout)

    def cancel(self) -> None:
        """End the schedule now (a refuse window reopens the listener)."""
        self._cancel.set()
        self._first.set()
        self._done.wait(5)

    @property
    def phase(self) -> Phase | None:
        """The phase in force (None outside a schedule)."""
        with self._lock:
            return self._phase

    @property
    def done(self) -> bool:
        """True when no schedule is playing."""
        return self._done.is_set()

    def wait(self, timeout: float | None = None) -> bool:
        """Wait for the schedule to end; True if it did."""
        return self._done.wait(timeout)

    def message_id(self, receipt_handle: str) -> str | None:
        """The message a receipt handle (seen in a relayed ReceiveMessage reply) belongs to."""
        with self._lock:
            return self._handles.get(receipt_handle)

    # ---- schedule and sockets ----------------------------------------------------------------------

    def _schedule(self, phases: list[Phase], cancel: threading.Event) -> None:
        self._first.wait()
        try:
            for phase in phases if not cancel.is_set() else []:
                with self._lock:
                    self._phase, self._matched, self._hits = phase, 0, 0
                    self._phase_met.clear()
                if phase.kind == "refuse":
                    self._close_all()
                self._applied.set()
                if phase.until:
                    deadline = time.monotonic() + phase.seconds
                    while (
                        not cancel.is_set() and time.monotonic() < deadline and not self._phase_met.wait(0.05)
                    ):
                        pass
                else:
                    cancel.wait(phase.seconds)
                if phase.kind == "refuse" and not self._stop.is_set():
                    self._listen()
                if cancel.is_set() or self._stop.is_set():
                    return
        finally:
            with self._lock:
                self._phase = None
            self._applied.set()
            self._done.set()

    def _listen(self) -> None:
        listener = socket.socket(socket.AF_INET, socket.SOCK_STREAM)
        listener.setsockopt(socket.SOL_SOCKET, socket.SO_REUSEADDR, 1)
        for _ in range(50):  # the port is ours; a just-closed one may take a moment to rebind
            try:
                listener.bind(("127.0.0.1", self.port))
                break
            except OSError:
                time.sleep(0.1)
        listener.listen(64)
        self.port = listener.getsockname()[1]
        self._listener = listener
        threading.Thread(target=self._accept, args=(listener,), daemon=True).start()

    def _accept(self, listener: socket.socket) -> None:
        while True:
            try:
                conn, address = listener.accept()
            except OSError:
                return  # closed: refusing, or stopped
            with self._lock:
                self._conns.add(conn)
            threading.Thread(target=self._serve, args=(conn, address), daemon=True).start()

    def _serve(self, conn: socket.socket, address: Any) -> None:
        try:
            _Handler(conn, address, self)
        except OSError:
            pass  # dropped by a refuse window
        finally:
            with self._lock:
                self._conns.discard(conn)
            conn.close()

    def _close_all(self) -> None:
        with self._lock:
            listener, self._listener = self._listener, None
            conns, self._conns = self._conns, set()
        if listener is not None:
            with contextlib.suppress(OSError):  # wakes the accept() blocked on it, and stops listening
                listener.shutdown(socket.SHUT_RDWR)
            listener.close()
        for conn in conns:
            with contextlib.suppress(OSError):
                conn.shutdown(socket.SHUT_RDWR)

    # ---- per request -------------------------------------------------------------------------------

    def fault_for(self, action: str) -> tuple[str, Phase | None]:
        """Decide what happens to one request (and count it).

        Args:
            action: The SQS action.

        Returns:
            (kind, the phase deciding it); ``("pass", None)`` outside any fault.
        """
        self._first.set()
        with self._lock:
            self.requests[action] += 1
            phase = self._phase
            if phase is None or phase.kind in ("pass", "refuse"):
                return "pass", None
            if phase.actions and action not in phase.actions:
                return "pass", None
            self._matched += 1
            if (self._matched - 1) % phase.every:
                return "pass", None
            return phase.kind, phase

    def error_name(self, phase: Phase) -> str:
        """The next error of an ``error`` phase (they are used in turn)."""
        with self._lock:
            return phase.errors[(self._matched - 1) // phase.every % len(phase.errors)]

    def count(self, action: str, kind: str, hits: int = 1) -> None:
        """Count one injection (``hits``: how much of the phase's ``until`` it fulfils)."""
        with self._lock:
            self.injected[(action, kind)] += 1
            self._hits += hits
            if self._phase is not None and self._phase.until and self._hits >= self._phase.until:
                self._phase_met.set()

    def learn(self, action: str, reply: bytes) -> None:
        """Remember receipt handle -> message id from a ReceiveMessage reply."""
        if action != "ReceiveMessage":
            return
        with contextlib.suppress(ValueError, TypeError, AttributeError):
            messages = json.loads(reply).get("Messages", [])
            with self._lock:
                self._handles.update((m["ReceiptHandle"], m["MessageId"]) for m in messages)

    def ids_of(self, request: bytes) -> list[str]:
        """Message ids of a batch request's receipt handles (unknown ones as ``?``)."""
        entries = json.loads(request).get("Entries", [])
        with self._lock:
            return [self._handles.get(e.get("ReceiptHandle", ""), "?") for e in entries]


class _Handler(BaseHTTPRequestHandler):
    """Serves one client connection (keep-alive) on behalf of a :class:`FaultProxy`."""

    protocol_version = "HTTP/1.1"
    server: FaultProxy  # type: ignore[assignment]

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet: the proxy's counters tell what happened."""

    def do_POST(self) -> None:
        """Forward one request, or answer it with the scheduled fault."""
        proxy = self.server
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        action = (self.headers.get("X-Amz-Target") or ".").rsplit(".", 1)[-1]
        kind, phase = proxy.fault_for(action)
        if kind == "error" and phase is not None:
            name = proxy.error_name(phase)
            proxy.count(action, name)
            self._error(name)
            return
        if kind == "reject_entries" and action == "DeleteMessageBatch":
            self._reject_entries(body)
            return
        if kind == "delay" and phase is not None:
            proxy.count(action, kind)
            time.sleep(phase.delay)
        if action == "DeleteMessageBatch":
            ids = proxy.ids_of(body)
            if proxy.on_delete is not None:
                proxy.on_delete(ids)
            with proxy._lock:
                proxy.deleted_ids.extend(ids)
        status, reply, headers = self._forward(body)
        proxy.learn(action, reply)
        if kind == "lose_reply":
            proxy.count(action, kind)
            self._error("InternalError")
            return
        self._reply(status, reply, headers)

    def _forward(self, body: bytes) -> tuple[int, bytes, dict[str, str]]:
        connection = http.client.HTTPConnection(*self.server.upstream, timeout=60)
        try:
            skip = {"host", "content-length", "connection"}
            headers = {k: v for k, v in self.headers.items() if k.lower() not in skip}
            connection.request("POST", self.path, body=body, headers=headers)
            response = connection.getresponse()
            return response.status, response.read(), dict(response.getheaders())
        finally:
            connection.close()

    def _error(self, name: str) -> None:
        status, shape, query_error = ERRORS[name]
        body = {"__type": shape, "message": f"injected {name}"}
        self._reply(status, json.dumps(body).encode(), {"x-amzn-query-error": query_error})

    def _reject_entries(self, body: bytes) -> None:
        entries = json.loads(body).get("Entries", [])
        ids = self.server.ids_of(body)
        with self.server._lock:  # a message whose delete was forwarded before is gone already
            deleted = set(self.server.deleted_ids)
            fresh = [i for i in ids if i not in deleted]
            self.server.rejected_ids.extend(fresh)
        self.server.count("DeleteMessageBatch", "reject_entries", hits=len(fresh))
        failed = [
            {"Id": e["Id"], "SenderFault": True, "Code": "ReceiptHandleIsInvalid", "Message": "injected"}
            for e in entries
        ]
        self._reply(200, json.dumps({"Successful": [], "Failed": failed}).encode(), {})

    def _reply(self, status: int, body: bytes, headers: dict[str, str]) -> None:
        self.send_response(status)
        keep = {"content-type", "x-amzn-requestid", "x-amzn-query-error"}
        for name, value in headers.items():
            if name.lower() in keep:
                self.send_header(name, value)
        if not any(n.lower() == "content-type" for n in headers):
            self.send_header("Content-Type", "application/x-amz-json-1.0")
        self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        self.wfile.write(body)

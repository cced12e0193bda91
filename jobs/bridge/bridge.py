"""The SQS bridge: parallel long-poll receivers feeding durable bronze files.

Threads: ``receivers`` long-poll ReceiveMessage loops put messages into the
:class:`~jobs.bridge.holding.Holding`; one flusher writes a bronze file when
``flush_max_messages`` are buffered or the oldest is ``flush_interval_seconds``
old, and only after the write returns deletes those messages; one keeper
extends the visibility of messages held too long and logs a metrics line per
flush interval. A crash at any instant loses nothing: an undeleted message
reappears and lands again (the stream dedupes it).
"""

from __future__ import annotations

import dataclasses
import logging
import threading
import time
from collections.abc import Callable
from types import TracebackType
from typing import TYPE_CHECKING, Any

from jobs.bridge.acks import Acknowledger
from jobs.bridge.flusher import Flusher
from jobs.bridge.holding import Holding
from jobs.bridge.landing import BronzeStore, open_bronze_store
from jobs.bridge.metrics import BridgeMetrics, MetricsSnapshot
from jobs.bridge.receiver import Receiver
from jobs.bridge.records import default_bridge_id
from jobs.bridge.retry import CALL_ERRORS, BridgeError, FailureGate, RetryPolicy
from jobs.bridge.sqsapi import SqsCalls, make_bridge_client, queue_backlog
from jobs.config import ConfigError, SilverlineConfig

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.2
_BACKLOG_CHECK_SECONDS = 1.0
# ReceiveMessage wait while draining (``run_until_empty``): still a long poll, which asks
# every SQS server (a short poll samples only some, and may answer empty while messages
# wait), but one that returns within a second once the queue is empty, so an
# ``available-now`` run ends about a second after the last message instead of waiting
# out ``wait_time_seconds`` (up to 20 s) twice: the empty receive, then the one that
# ``stop()`` joins.
DRAIN_WAIT_SECONDS = 1


class SqsBridge:
    """Drains one SQS queue into the bronze landing log; thread-based.

    Use ``start()`` / ``stop()`` (or ``with SqsBridge(...)``) inside a driver,
    ``run()`` until :meth:`request_stop`, or ``run_until_empty()``.
    """

    def __init__(
        self,
        config: SilverlineConfig,
        sqs_client: SqsCalls | None = None,
        store: BronzeStore | None = None,
        *,
        s3_client: S3Client | None = None,
        bridge_id: str | None = None,
        retry: RetryPolicy | None = None,
    ) -> None:
        """Create a bridge (no threads start and no request is made yet).

        Args:
            config: The job configuration (``sqs``, ``bridge``, ``aws``, ``lake``).
            sqs_client: Optional SQS client, e.g. a boto3 one (default: see
                :func:`~jobs.bridge.sqsapi.make_bridge_client`).
            store: Optional bronze store (default: ``<config.ops_root>bronze/``).
            s3_client: Optional S3 client for the default store on an ``s3://`` ops root.
            bridge_id: Names this process in bronze lines and file names.
            retry: Backoff policy (default: ``bridge.max_consecutive_errors``, 0.2 s to 20 s).

        Raises:
            ConfigError: ``sqs.queue_url`` is not set or the ops root is unusable.
        """
        if not config.sqs.queue_url:
            raise ConfigError(
                "sqs.queue_url is not set: pass --queue-url, set sqs.queue_url in the config "
                "or SILVERLINE__SQS__QUEUE_URL"
            )
        self._cfg = config.bridge
        self._queue_url = config.sqs.queue_url
        self._owns_client = sqs_client is None
        self._sqs = sqs_client if sqs_client is not None else make_bridge_client(config)
        self._store = store if store is not None else open_bronze_store(config, s3_client)
        self.bridge_id = bridge_id or default_bridge_id()
        endpoint = getattr(getattr(self._sqs, "meta", None), "endpoint_url", None)
        self._metrics = BridgeMetrics()
        self._gate = FailureGate(
            retry or RetryPolicy(max_consecutive_errors=self._cfg.max_consecutive_errors),
            self._metrics,
            where=f"queue {self._queue_url} at {endpoint or config.sqs_endpoint_url or 'AWS'}",
            store=self._store.uri,
        )
        capacity = max(2 * self._cfg.flush_max_messages, self._cfg.receivers * self._cfg.max_messages)
        self._holding = Holding(self._cfg.receivers, capacity)
        self._acks = Acknowledger(
            self._sqs,
            self._queue_url,
            holding=self._holding,
            gate=self._gate,
            metrics=self._metrics,
            visibility_seconds=self._cfg.visibility_timeout_seconds,
            workers=self._cfg.receivers,
        )
        self._stop_requested = False  # a plain flag: safe to set from a signal handler
        self._finished = threading.Event()
        self._receivers: list[threading.Thread] = []
        self._workers: list[threading.Thread] = []
        self._flusher = Flusher(
            self._store,
            self._acks,
            settings=self._cfg,
            bridge_id=self.bridge_id,
            holding=self._holding,
            gate=self._gate,
            metrics=self._metrics,
        )
        self._state = "new"
        self._wait_seconds = self._cfg.wait_time_seconds
        self._logged: tuple[float, MetricsSnapshot] = (time.monotonic(), MetricsSnapshot())
        self._backlog_checked = 0.0

    # ---- lifecycle ---------------------------------------------------------------------------------

    @property
    def store_uri(self) -> str:
        """Where bronze files land."""
        return self._store.uri

    @property
    def failure(self) -> BridgeError | None:
        """The error the bridge gave up with, if it did."""
        return self._gate.fatal

    def start(self) -> None:
        """Start the receiver, flusher and keeper threads.

        Raises:
            RuntimeError: The bridge was already started.
        """
        if self._state != "new":
            raise RuntimeError("an SqsBridge can be started once")
        self._state = "running"
        receivers = [self._receiver(i) for i in range(self._cfg.receivers)]
        self._receivers = [self._thread(f"receive-{r.index}", r.run, self._stopping) for r in receivers]
        self._workers = [self._thread("flush", self._flusher.run), self._thread("keep", self._keep_loop)]
        log.info(
            "bridge %s: %d receivers on %s -> %s",
            self.bridge_id,
            self._cfg.receivers,
            self._queue_url,
            self._store.uri,
        )

    def _receiver(self, index: int) -> Receiver:
        return Receiver(
            index,
            self._sqs,
            self._queue_url,
            settings=self._cfg,
            bridge_id=self.bridge_id,
            holding=self._holding,
            gate=self._gate,
            metrics=self._metrics,
            wait_seconds=self._wait_seconds,
        )

    def _stopping(self) -> bool:
        return self._stop_requested or self._gate.aborted.is_set()

    def _thread(self, name: str, target: Callable[..., None], *args: Any) -> threading.Thread:
        thread = threading.Thread(
            target=self._guarded, args=(target, *args), name=f"bridge-{name}", daemon=True
        )
        thread.start()
        return thread

    def _guarded(self, target: Callable[..., None], *args: Any) -> None:
        try:
            target(*args)
        except BridgeError as exc:
            self._gate.abort(exc)
        except BaseException as exc:
            log.exception("bridge %s: %s crashed", self.bridge_id, threading.current_thread().name)
            self._gate.abort(BridgeError(f"SQS bridge internal error ({exc!r}) on {self._queue_url}"))

    def request_stop(self) -> None:
        """Ask the bridge to stop receiving (safe from a signal handler); ``stop()`` finishes."""
        self._stop_requested = True

    def stop(self) -> MetricsSnapshot:
        """Stop receiving, land and delete everything held, join the threads.

        Receivers finish their current long poll first (up to ``wait_time_seconds``; while
        draining, up to :data:`DRAIN_WAIT_SECONDS`).

        Returns:
            The final metrics.

        Raises:
            BridgeError: The bridge gave up earlier (what it held reappears in the queue).
        """
        if self._state == "running":
            self._stop_requested = True
            for thread in self._receivers:
                thread.join()
            self._holding.start_draining()
            self._workers[0].join()
            self._finished.set()
            self._workers[1].join()
            self._acks.close()
            if self._owns_client:
                self._sqs.close()
            self._state = "stopped"
            log.info("bridge %s stopped: %s", self.bridge_id, self.metrics().log_line())
        self._gate.raise_if_failed()
        return self.metrics()

    def run(self) -> MetricsSnapshot:
        """Run until :meth:`request_stop` is called or the bridge gives up.

        Returns:
            The final metrics.

        Raises:
            BridgeError: SQS or the store kept failing.
        """
        return self._run_until(lambda: False)

    def run_until_empty(self) -> MetricsSnapshot:
        """Run until the queue is drained, then stop.

        Drained: every receiver's latest receive was empty, everything landed has been
        deleted, and the queue reports no visible, in-flight or delayed messages (so
        messages a crashed bridge still held are waited for, up to their visibility
        timeout). :meth:`request_stop` ends the run early. Receivers wait at most
        :data:`DRAIN_WAIT_SECONDS` per receive here, so the run ends about a second
        after the queue is empty, whatever ``bridge.wait_time_seconds`` says.

        Returns:
            The final metrics.

        Raises:
            BridgeError: SQS or the store kept failing.
        """
        self._wait_seconds = min(self._wait_seconds, DRAIN_WAIT_SECONDS)
        return self._run_until(lambda: self._holding.drained() and self._queue_is_empty())

    def _run_until(self, done: Callable[[], bool]) -> MetricsSnapshot:
        """Start, poll ``done`` until it holds or a stop is requested, then stop."""
        self.start()
        try:
            while not self._stopping() and not done():
                time.sleep(_POLL_SECONDS)
        finally:
            snapshot = self.stop()
        return snapshot

    def landed(self) -> int:
        """Messages landed in bronze since the bridge started."""
        return self.metrics().landed

    def backlog(self) -> int:
        """Messages in the queue now (visible, in flight and delayed), as SQS approximates them.

        Raises:
            botocore.exceptions.BotoCoreError: SQS cannot be reached.
            botocore.exceptions.ClientError: SQS refused the call.
        """
        return queue_backlog(self._sqs, self._queue_url)

    def metrics(self) -> MetricsSnapshot:
        """A snapshot of the counters (for the stream's batch metrics).

        Returns:
            Totals since start, and the messages held now.
        """
        return self._metrics.snapshot(held=self._holding.size())

    def __enter__(self) -> SqsBridge:
        self.start()
        return self

    def __exit__(
        self, exc_type: type[BaseException] | None, exc: BaseException | None, tb: TracebackType | None
    ) -> None:
        self.stop()

    # ---- threads -------------------------------------------------------------------------------------

    def _keep_loop(self) -> None:
        tick = min(1.0, self._cfg.visibility_timeout_seconds / 4)
        while not self._finished.wait(tick) and not self._gate.aborted.is_set():
            self._acks.extend_due()
            self._log_progress()

    def _log_progress(self) -> None:
        last_time, last = self._logged
        now = time.monotonic()
        if now - last_time < self._cfg.flush_interval_seconds:
            return
        snapshot = self.metrics()
        if dataclasses.replace(snapshot, held=0) != dataclasses.replace(last, held=0):
            log.info("bridge %s: %s", self.bridge_id, snapshot.log_line())
        self._logged = (now, snapshot)

    def _queue_is_empty(self) -> bool:
        if time.monotonic() - self._backlog_checked < _BACKLOG_CHECK_SECONDS:
            return False
        self._backlog_checked = time.monotonic()
        self._metrics.add(attribute_calls=1)
        try:
            backlog = queue_backlog(self._sqs, self._queue_url)
        except CALL_ERRORS as exc:
            self._gate.backoff("attributes", exc)
            return False
        self._gate.success("attributes")
        return backlog == 0

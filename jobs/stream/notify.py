"""Downstream "table updated" notifications, at most one per tenant table per window.

After every micro-batch the batch writer hands its commits to
:meth:`TableUpdateNotifier.record`. The first commit to a table that had no
message in the last ``notify.window_seconds`` is announced at once; later commits
inside the window are merged into one pending aggregate (rows and objects summed,
first/last batch and commit time, latest snapshot), sent once the window has
passed (on the next :meth:`~TableUpdateNotifier.record` or
:meth:`~TableUpdateNotifier.tick`) or on :meth:`~TableUpdateNotifier.flush`.
A failed send is logged and counted, and its aggregate stays pending for the
next call; one failed request ends the call, so a dead endpoint costs one
request (with the client's own retries) per micro-batch or idle tick.
"""

from __future__ import annotations

import hashlib
import json
import logging
import threading
import time
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import Any

import boto3
from botocore.config import Config as BotoConfig

from jobs.bridge.retry import CALL_ERRORS, error_code
from jobs.bridge.sqsapi import chunks
from jobs.config import SilverlineConfig

log = logging.getLogger(__name__)

MESSAGE_TYPE = "silverline.table_updated"
SCHEMA_VERSION = 1


@dataclass(frozen=True)
class TableUpdate:
    """One commit of one micro-batch to one tenant table."""

    table: str
    tenant: str
    dataset: str
    zone: str
    snapshot_id: int | None
    rows_written: int
    rows_deleted: int | None
    source_objects: int
    batch_id: int
    committed_at: datetime


@dataclass
class _Aggregate:
    """The commits to one table not announced yet (batch ids in arrival order, times by value)."""

    latest: TableUpdate
    first_batch_id: int
    first_committed_at: datetime
    last_committed_at: datetime
    snapshot_id: int | None = None
    rows_written: int = 0
    rows_deleted: int | None = None
    source_objects: int = 0
    commits: int = 0

    @classmethod
    def start(cls, update: TableUpdate) -> _Aggregate:
        return cls(update, update.batch_id, update.committed_at, update.committed_at)

    def add(self, update: TableUpdate) -> None:
        self.latest = update
        if update.snapshot_id is not None:
            self.snapshot_id = update.snapshot_id
        if update.rows_deleted is not None:
            self.rows_deleted = (self.rows_deleted or 0) + update.rows_deleted
        self.rows_written += update.rows_written
        self.source_objects += update.source_objects
        self.commits += 1
        self.first_committed_at = min(self.first_committed_at, update.committed_at, key=_utc)
        self.last_committed_at = max(self.last_committed_at, update.committed_at, key=_utc)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def _iso(moment: datetime) -> str:
    return _utc(moment).isoformat(timespec="milliseconds").replace("+00:00", "Z")


class TableUpdateNotifier:
    """Sends debounced "table updated" messages to an SQS queue or an SNS topic.

    Not a Spark object: it lives on the driver. Calls are serialised by a lock, so
    the batch writer and the idle loop may share one notifier.
    """

    def __init__(
        self,
        config: SilverlineConfig,
        *,
        client: Any = None,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create a notifier.

        Args:
            config: The job configuration; ``notify.target`` must be ``sqs`` or ``sns``.
            client: A boto3 SQS or SNS client (default: built from the configuration).
            clock: Seconds on a monotonic clock; tests pass a fake one.

        Raises:
            ValueError: ``notify.target`` is ``none``.
        """
        settings = config.notify
        if settings.target == "none":
            raise ValueError("notify.target is none: use notifier_for(config)")
        self._config = config
        self._sqs = settings.target == "sqs"
        self._address = (settings.queue_url if self._sqs else settings.topic_arn) or ""
        self._fifo = self._address.endswith(".fifo")
        self._window = settings.window_seconds
        self._clock = clock
        self._client = client if client is not None else _make_client(config)
        self._pending: dict[str, _Aggregate] = {}
        self._last_sent: dict[str, float] = {}
        self._lock = threading.Lock()
        self.sent = 0
        self.failed = 0

    @property
    def pending(self) -> int:
        """Tables with commits not announced yet."""
        return len(self._pending)

    def record(self, updates: Sequence[TableUpdate]) -> int:
        """Take one micro-batch's commits and send what is due.

        Args:
            updates: The batch's commits, one per table written.

        Returns:
            Messages sent by this call.
        """
        with self._lock:
            for update in updates:
                if update.table not in self._pending:
                    self._pending[update.table] = _Aggregate.start(update)
                self._pending[update.table].add(update)
            return self._send_due(everything=False)

    def tick(self) -> int:
        """Send the aggregates whose window has passed (call this while the stream is idle).

        Returns:
            Messages sent.
        """
        with self._lock:
            return self._send_due(everything=False)

    def flush(self) -> int:
        """Send every pending aggregate now, window or not (e.g. at shutdown).

        Returns:
            Messages sent.
        """
        with self._lock:
            return self._send_due(everything=True)

    def _send_due(self, *, everything: bool) -> int:
        now = self._clock()
        due = [
            table
            for table in self._pending
            if everything or table not in self._last_sent or now - self._last_sent[table] >= self._window
        ]
        done = 0
        for tables in chunks(due):
            accepted = self._deliver([self._message(self._pending[t]) for t in tables], tables)
            if accepted is None:  # the call failed as a whole: the rest would too, try again next call
                break
            for table in accepted:
                del self._pending[table]
                self._last_sent[table] = now
            done += len(accepted)
        self.sent += done
        return done

    def _message(self, agg: _Aggregate) -> dict[str, Any]:
        update = agg.latest
        body = {
            "type": MESSAGE_TYPE,
            "schema_version": SCHEMA_VERSION,
            "group": self._config.group.name,
            "bucket": self._config.group.bucket,
            "tenant": update.tenant,
            "dataset": update.dataset,
            "zone": update.zone,
            "table": update.table,
            "snapshot_id": agg.snapshot_id,
            "rows_written": agg.rows_written,
            "rows_deleted": agg.rows_deleted,
            "source_objects": agg.source_objects,
            "commits": agg.commits,
            "first_batch_id": agg.first_batch_id,
            "last_batch_id": update.batch_id,
            "first_committed_at": _iso(agg.first_committed_at),
            "last_committed_at": _iso(agg.last_committed_at),
            "window_seconds": self._window,
        }
        text = json.dumps(body, sort_keys=True)
        message: dict[str, Any] = {
            ("MessageBody" if self._sqs else "Message"): text,
            "MessageAttributes": {
                "tenant": {"DataType": "String", "StringValue": update.tenant},
                "dataset": {"DataType": "String", "StringValue": update.dataset},
            },
        }
        if self._fifo:
            message["MessageGroupId"] = update.table[:128]  # one group per table: ordered per table
            message["MessageDeduplicationId"] = hashlib.sha256(text.encode()).hexdigest()
        return message

    def _deliver(self, messages: list[dict[str, Any]], tables: Sequence[str]) -> list[str] | None:
        """Send up to 10 messages; return the tables whose message was accepted, None if the call failed."""
        key = "QueueUrl" if self._sqs else "TopicArn"
        try:
            if len(messages) == 1:
                send = self._client.send_message if self._sqs else self._client.publish
                send(**{key: self._address}, **messages[0])
                return list(tables)
            entries = [{"Id": str(i), **m} for i, m in enumerate(messages)]
            if self._sqs:
                response = self._client.send_message_batch(QueueUrl=self._address, Entries=entries)
            else:
                response = self._client.publish_batch(
                    TopicArn=self._address, PublishBatchRequestEntries=entries
                )
        except CALL_ERRORS as exc:
            self.failed += len(messages)
            log.warning("notify %s failed (%s), kept for retry: %s", self._address, error_code(exc), exc)
            return None
        failures = {str(f["Id"]): str(f.get("Code", "Unknown")) for f in response.get("Failed", [])}
        if failures:
            self.failed += len(failures)
            codes = ", ".join(sorted(set(failures.values())))
            log.warning(
                "notify %s: %d entries failed (%s), kept for retry", self._address, len(failures), codes
            )
        return [table for i, table in enumerate(tables) if str(i) not in failures]


def _make_client(config: SilverlineConfig) -> Any:
    """A boto3 SQS or SNS client with short timeouts, so a slow endpoint cannot stall the stream."""
    settings = BotoConfig(connect_timeout=3, read_timeout=10, retries={"mode": "standard", "max_attempts": 2})
    endpoint = config.notify.endpoint_url or config.aws.endpoint_url
    session = boto3.session.Session()
    if config.notify.target == "sqs":
        return session.client("sqs", region_name=config.aws.region, endpoint_url=endpoint, config=settings)
    return session.client("sns", region_name=config.aws.region, endpoint_url=endpoint, config=settings)


def notifier_for(config: SilverlineConfig) -> TableUpdateNotifier | None:
    """The configured notifier, or ``None`` when ``notify.target`` is ``none``.

    Args:
        config: The job configuration.

    Returns:
        A notifier with a client built from the configuration, or ``None``.
    """
    if config.notify.target == "none":
        return None
    return TableUpdateNotifier(config)

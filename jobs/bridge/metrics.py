"""Bridge counters: thread-safe totals and an immutable snapshot for batch metrics."""

from __future__ import annotations

import dataclasses
import threading
from collections.abc import Mapping
from dataclasses import dataclass, field
from typing import Any


@dataclass(frozen=True)
class MetricsSnapshot:
    """Totals since the bridge started (``held`` is the current gauge).

    Attributes:
        received: Messages returned by ReceiveMessage (a redelivery counts again).
        landed: Messages written to durable bronze files.
        deleted: Messages deleted from SQS after landing.
        redelivered: Received messages whose ApproximateReceiveCount was above 1.
        receive_calls: ReceiveMessage requests (including failed ones).
        empty_receives: ReceiveMessage requests that returned nothing.
        delete_calls: DeleteMessageBatch requests.
        visibility_calls: ChangeMessageVisibilityBatch requests.
        visibility_extended: Messages whose visibility was extended.
        attribute_calls: GetQueueAttributes requests (``run_until_empty`` only).
        files: Bronze files written.
        bytes_landed: Bytes written to bronze.
        errors: Failures by kind, ``<operation>.<error code>``.
        flush_seconds_total: Time spent making bronze files durable.
        flush_seconds_max: The slowest flush.
        flush_seconds_last: The latest flush.
        held: Messages received but not yet deleted, now.
    """

    received: int = 0
    landed: int = 0
    deleted: int = 0
    redelivered: int = 0
    receive_calls: int = 0
    empty_receives: int = 0
    delete_calls: int = 0
    visibility_calls: int = 0
    visibility_extended: int = 0
    attribute_calls: int = 0
    files: int = 0
    bytes_landed: int = 0
    errors: Mapping[str, int] = field(default_factory=dict)
    flush_seconds_total: float = 0.0
    flush_seconds_max: float = 0.0
    flush_seconds_last: float = 0.0
    held: int = 0

    @property
    def sqs_requests(self) -> int:
        """All SQS requests the bridge made."""
        return self.receive_calls + self.delete_calls + self.visibility_calls + self.attribute_calls

    @property
    def requests_per_message(self) -> float:
        """SQS requests per received message (0.0 before the first message)."""
        return self.sqs_requests / self.received if self.received else 0.0

    def as_dict(self) -> dict[str, Any]:
        """The snapshot as plain values, with the derived figures added.

        Returns:
            A JSON-friendly dict.
        """
        out = dataclasses.asdict(self)
        out["errors"] = dict(self.errors)
        out["sqs_requests"] = self.sqs_requests
        out["requests_per_message"] = round(self.requests_per_message, 4)
        return out

    def log_line(self) -> str:
        """One concise line for the log.

        Returns:
            The totals that matter when reading a log.
        """
        errors = ",".join(f"{k}={v}" for k, v in sorted(self.errors.items())) or "none"
        return (
            f"received={self.received} landed={self.landed} deleted={self.deleted} held={self.held} "
            f"files={self.files} bytes={self.bytes_landed} req/msg={self.requests_per_message:.2f} "
            f"flush_last={self.flush_seconds_last:.3f}s flush_max={self.flush_seconds_max:.3f}s "
            f"errors={errors}"
        )


_COUNTERS = tuple(f.name for f in dataclasses.fields(MetricsSnapshot) if f.type == "int" and f.name != "held")


class BridgeMetrics:
    """Counters shared by the bridge's threads."""

    def __init__(self) -> None:
        self._lock = threading.Lock()
        self._counts = dict.fromkeys(_COUNTERS, 0)
        self._errors: dict[str, int] = {}
        self._flush_total = 0.0
        self._flush_max = 0.0
        self._flush_last = 0.0

    def add(self, **counts: int) -> None:
        """Add to counters by name, e.g. ``add(received=10, receive_calls=1)``.

        Args:
            **counts: Counter name -> increment.
        """
        with self._lock:
            for name, value in counts.items():
                self._counts[name] += value

    def error(self, kind: str) -> None:
        """Count one failure.

        Args:
            kind: ``<operation>.<error code>``, e.g. ``receive.ThrottlingException``.
        """
        with self._lock:
            self._errors[kind] = self._errors.get(kind, 0) + 1

    def flushed(self, seconds: float, messages: int, size: int) -> None:
        """Record one durable bronze file.

        Args:
            seconds: How long the write took.
            messages: Messages in the file.
            size: Bytes in the file.
        """
        with self._lock:
            self._counts["files"] += 1
            self._counts["landed"] += messages
            self._counts["bytes_landed"] += size
            self._flush_total += seconds
            self._flush_last = seconds
            self._flush_max = max(self._flush_max, seconds)

    def snapshot(self, held: int = 0) -> MetricsSnapshot:
        """Copy the totals.

        Args:
            held: Messages currently held (the gauge).

        Returns:
            An immutable snapshot.
        """
        with self._lock:
            return MetricsSnapshot(
                **self._counts,
                errors=dict(self._errors),
                flush_seconds_total=self._flush_total,
                flush_seconds_max=self._flush_max,
                flush_seconds_last=self._flush_last,
                held=held,
            )

"""Messages the bridge holds: received, not yet deleted. The flush decisions live here.

A message is *buffered* from receipt until the flusher takes it into a batch,
then *in flight* until its deletion from SQS is settled. Both count as held:
their visibility is extended while held, and ``drained`` needs both empty.
"""

from __future__ import annotations

import threading
import time
from collections import deque
from collections.abc import Iterable
from dataclasses import dataclass


@dataclass(slots=True)
class HeldMessage:
    """One received message and what the bridge knows about it.

    Attributes:
        receipt_handle: The handle of this receipt (deletes and visibility need it).
        message_id: The SQS message id.
        line: Its encoded bronze line.
        received_mono: ``time.monotonic()`` when the receive call was sent.
        visible_until: Monotonic deadline after which SQS may redeliver it.
    """

    receipt_handle: str
    message_id: str
    line: bytes
    received_mono: float
    visible_until: float


def flush_due(
    count: int,
    oldest_age: float | None,
    max_messages: int,
    interval: float,
    draining: bool,
    *,
    buffered_bytes: int = 0,
    max_bytes: int | None = None,
) -> bool:
    """Decide whether buffered messages should be written now.

    Args:
        count: Buffered messages.
        oldest_age: Seconds since the oldest buffered message was received.
        max_messages: ``bridge.flush_max_messages``.
        interval: ``bridge.flush_interval_seconds``.
        draining: The receivers have stopped; write whatever is left.
        buffered_bytes: Bytes of the buffered bronze lines.
        max_bytes: ``bridge.flush_max_bytes`` (None: no byte limit).

    Returns:
        True to flush now.
    """
    if count == 0:
        return False
    if draining or count >= max_messages or (max_bytes is not None and buffered_bytes >= max_bytes):
        return True
    return oldest_age is not None and oldest_age >= interval


def flush_wait(oldest_age: float | None, interval: float, idle: float = 1.0) -> float:
    """Seconds until the interval rule can next make a flush due.

    Args:
        oldest_age: Age of the oldest buffered message (``None`` if none).
        interval: ``bridge.flush_interval_seconds``.
        idle: The wait when nothing is buffered.

    Returns:
        A positive number of seconds.
    """
    if oldest_age is None:
        return idle
    return max(0.001, interval - oldest_age)


class Holding:
    """Thread-safe buffer and in-flight set, with back-pressure on receivers."""

    def __init__(self, receivers: int, capacity: int) -> None:
        """Create an empty holding.

        Args:
            receivers: Number of receiver threads (each reports its last receive).
            capacity: Buffered messages above which receivers pause.
        """
        self._cond = threading.Condition()
        self._buffer: deque[HeldMessage] = deque()
        self._buffered_bytes = 0
        self._in_flight: dict[str, HeldMessage] = {}
        self._last_empty = [False] * receivers
        self._capacity = capacity
        self._draining = False

    def add(self, receiver: int, messages: list[HeldMessage]) -> None:
        """Buffer what one receive call returned (possibly nothing).

        Args:
            receiver: Index of the receiver thread.
            messages: The received messages.
        """
        with self._cond:
            self._last_empty[receiver] = not messages
            self._buffer.extend(messages)
            self._buffered_bytes += sum(len(m.line) for m in messages)
            self._cond.notify_all()

    def wait_for_room(self, timeout: float) -> bool:
        """Block a receiver while the buffer is full.

        Args:
            timeout: Longest wait in seconds.

        Returns:
            True if there is room now.
        """
        with self._cond:
            return self._cond.wait_for(lambda: len(self._buffer) < self._capacity, timeout)

    def start_draining(self) -> None:
        """The receivers have stopped: everything buffered is due now."""
        with self._cond:
            self._draining = True
            self._cond.notify_all()

    def next_batch(
        self, max_messages: int, interval: float, timeout: float = 1.0, *, max_bytes: int | None = None
    ) -> list[HeldMessage] | None:
        """Wait (at most ``timeout``) for a flush to become due and take its batch.

        Args:
            max_messages: The most messages in one bronze file.
            interval: ``bridge.flush_interval_seconds``.
            timeout: Longest wait in seconds.
            max_bytes: The most bytes in one bronze file (a single larger message still
                gets a file of its own); None for no byte limit.

        Returns:
            The batch (now in flight); ``[]`` if nothing is due yet; ``None`` once
            draining and nothing is buffered.
        """
        deadline = time.monotonic() + timeout
        with self._cond:
            while True:
                now = time.monotonic()
                oldest = now - self._buffer[0].received_mono if self._buffer else None
                due = flush_due(
                    len(self._buffer),
                    oldest,
                    max_messages,
                    interval,
                    self._draining,
                    buffered_bytes=self._buffered_bytes,
                    max_bytes=max_bytes,
                )
                if due:
                    return self._take(max_messages, max_bytes)
                if self._draining:
                    return None
                if now >= deadline:
                    return []
                self._cond.wait(min(deadline - now, flush_wait(oldest, interval)))

    def _take(self, max_messages: int, max_bytes: int | None) -> list[HeldMessage]:
        batch: list[HeldMessage] = []
        size = 0
        while self._buffer and len(batch) < max_messages:
            line_bytes = len(self._buffer[0].line)  # lines end with their newline
            if batch and max_bytes is not None and size + line_bytes > max_bytes:
                break
            batch.append(self._buffer.popleft())
            size += line_bytes
        self._buffered_bytes -= size
        self._in_flight.update((m.receipt_handle, m) for m in batch)
        self._cond.notify_all()
        return batch

    def release(self, receipt_handles: Iterable[str]) -> None:
        """Forget messages whose deletion is settled (deleted, or given up).

        Args:
            receipt_handles: Handles of in-flight messages.
        """
        with self._cond:
            for handle in receipt_handles:
                self._in_flight.pop(handle, None)
            self._cond.notify_all()

    def holds(self, receipt_handle: str) -> bool:
        """Whether a receipt is still held.

        Args:
            receipt_handle: The handle.

        Returns:
            True if buffered or in flight.
        """
        with self._cond:
            return receipt_handle in self._in_flight or any(
                m.receipt_handle == receipt_handle for m in self._buffer
            )

    def due_for_extension(self, now: float, margin: float) -> list[HeldMessage]:
        """Held messages whose visibility ends within ``margin`` seconds.

        Args:
            now: ``time.monotonic()``.
            margin: E.g. half the visibility timeout.

        Returns:
            The messages, oldest deadline first.
        """
        with self._cond:
            held = [*self._in_flight.values(), *self._buffer]
        due = [m for m in held if m.visible_until - now < margin]
        return sorted(due, key=lambda m: m.visible_until)

    def extended(self, messages: Iterable[HeldMessage], visible_until: float) -> None:
        """Record new visibility deadlines.

        Args:
            messages: Messages whose visibility was extended.
            visible_until: The new monotonic deadline.
        """
        with self._cond:
            for message in messages:
                message.visible_until = visible_until

    def drained(self) -> bool:
        """Every receiver's last receive was empty and nothing is held.

        Returns:
            True when the queue looks drained from here.
        """
        with self._cond:
            return all(self._last_empty) and not self._buffer and not self._in_flight

    def size(self) -> int:
        """Held messages (buffered plus in flight).

        Returns:
            The count.
        """
        with self._cond:
            return len(self._buffer) + len(self._in_flight)

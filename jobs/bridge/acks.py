"""Settling held messages with SQS: delete what landed, keep the rest invisible.

Deletes run only for messages already in a durable bronze file (the flusher
calls :meth:`Acknowledger.delete_landed` after the write returns). Entries that
fail on the server's side are retried with backoff; entries SQS rejects as the
sender's fault (e.g. an expired receipt handle) are counted and given up: the
message reappears in the queue and lands again, which the stream dedupes.
"""

from __future__ import annotations

import time
from collections.abc import Sequence
from concurrent.futures import ThreadPoolExecutor

from jobs.bridge.holding import HeldMessage, Holding
from jobs.bridge.metrics import BridgeMetrics
from jobs.bridge.retry import CALL_ERRORS, FailureGate, PartialBatchError
from jobs.bridge.sqsapi import SqsCalls, change_visibility_batch, chunks, delete_batch


class Acknowledger:
    """Deletes landed messages and extends the visibility of held ones."""

    def __init__(
        self,
        client: SqsCalls,
        queue_url: str,
        *,
        holding: Holding,
        gate: FailureGate,
        metrics: BridgeMetrics,
        visibility_seconds: int,
        workers: int,
    ) -> None:
        """Create the acknowledger.

        Args:
            client: SQS client.
            queue_url: The queue.
            holding: The bridge's held messages (released once settled).
            gate: Failure counting and backoff.
            metrics: Counters.
            visibility_seconds: Visibility timeout to (re)apply.
            workers: Parallel DeleteMessageBatch calls.
        """
        self._sqs = client
        self._queue_url = queue_url
        self._holding = holding
        self._gate = gate
        self._metrics = metrics
        self._visibility = visibility_seconds
        self._pool = ThreadPoolExecutor(max_workers=workers, thread_name_prefix="bridge-delete")

    def close(self) -> None:
        """Stop the delete workers."""
        self._pool.shutdown(wait=True)

    def delete_landed(self, batch: Sequence[HeldMessage]) -> None:
        """Delete messages that are durable in bronze, 10 per call, calls in parallel.

        Args:
            batch: Messages of one written bronze file.

        Raises:
            BridgeError: Deleting kept failing (the messages will reappear and land again).
        """
        handles = [m.receipt_handle for m in batch]
        futures = [self._pool.submit(self._delete_chunk, list(part)) for part in chunks(handles)]
        for future in futures:
            future.result()

    def _delete_chunk(self, handles: list[str]) -> None:
        pending = handles
        while pending:
            self._metrics.add(delete_calls=1)
            try:
                outcome = delete_batch(self._sqs, self._queue_url, pending)
            except CALL_ERRORS as exc:
                self._gate.backoff("delete", exc)
                continue
            self._metrics.add(deleted=len(outcome.succeeded))
            for _, code in outcome.rejected:
                self._metrics.error(f"delete.{code}")
            self._holding.release([*outcome.succeeded, *(h for h, _ in outcome.rejected)])
            pending = [handle for handle, _ in outcome.retryable]
            if pending:
                codes = [code for _, code in outcome.retryable]
                self._gate.backoff("delete", PartialBatchError("DeleteMessageBatch", codes))
            else:
                self._gate.success("delete")

    def extend_due(self) -> None:
        """Extend visibility of messages held for over half the visibility timeout.

        Failures are counted; the next call tries again.

        Raises:
            BridgeError: Extending kept failing.
        """
        due = self._holding.due_for_extension(time.monotonic(), self._visibility / 2)
        for part in chunks(due):
            self._extend(list(part))

    def _extend(self, messages: list[HeldMessage]) -> None:
        by_handle = {m.receipt_handle: m for m in messages}
        sent = time.monotonic()
        self._metrics.add(visibility_calls=1)
        try:
            outcome = change_visibility_batch(self._sqs, self._queue_url, list(by_handle), self._visibility)
        except CALL_ERRORS as exc:
            self._gate.backoff("visibility", exc)
            return
        self._gate.success("visibility")
        self._holding.extended([by_handle[h] for h in outcome.succeeded], sent + self._visibility)
        self._metrics.add(visibility_extended=len(outcome.succeeded))
        for handle, code in [*outcome.rejected, *outcome.retryable]:
            if self._holding.holds(handle):  # a message deleted meanwhile needs nothing
                self._metrics.error(f"visibility.{code}")

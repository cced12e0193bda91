"""One long-poll receiver: ReceiveMessage in a loop, messages into the holding."""

from __future__ import annotations

import time
from collections.abc import Callable
from datetime import UTC, datetime
from typing import TYPE_CHECKING

from jobs.bridge.holding import HeldMessage, Holding
from jobs.bridge.metrics import BridgeMetrics
from jobs.bridge.records import bronze_record, encode_line, iso_utc_ms
from jobs.bridge.retry import CALL_ERRORS, FailureGate
from jobs.bridge.sqsapi import SqsCalls, receive
from jobs.config import BridgeConfig

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef


class Receiver:
    """Receives until told to stop; bodies are copied, never parsed."""

    def __init__(
        self,
        index: int,
        client: SqsCalls,
        queue_url: str,
        *,
        settings: BridgeConfig,
        bridge_id: str,
        holding: Holding,
        gate: FailureGate,
        metrics: BridgeMetrics,
        wait_seconds: int | None = None,
    ) -> None:
        """Create a receiver.

        Args:
            index: Its number (the holding tracks each receiver's last receive).
            client: SQS client.
            queue_url: The queue.
            settings: ``bridge`` configuration (batch size, wait, visibility).
            bridge_id: Written into every bronze line.
            holding: Where received messages go.
            gate: Failure counting and backoff.
            metrics: Counters.
            wait_seconds: ReceiveMessage's wait (default: ``settings.wait_time_seconds``).
        """
        self.index = index
        self._sqs = client
        self._queue_url = queue_url
        self._cfg = settings
        self._bridge_id = bridge_id
        self._holding = holding
        self._gate = gate
        self._metrics = metrics
        self._wait_seconds = settings.wait_time_seconds if wait_seconds is None else wait_seconds

    def run(self, stopping: Callable[[], bool]) -> None:
        """Receive until ``stopping()``; the poll in progress then still completes.

        Args:
            stopping: Returns True once the bridge stops receiving.

        Raises:
            BridgeError: Receiving kept failing.
        """
        while not stopping():
            if not self._holding.wait_for_room(timeout=1.0):
                continue
            sent = time.monotonic()
            self._metrics.add(receive_calls=1)
            try:
                messages = receive(
                    self._sqs,
                    self._queue_url,
                    max_messages=self._cfg.max_messages,
                    wait_seconds=self._wait_seconds,
                    visibility_seconds=self._cfg.visibility_timeout_seconds,
                )
            except CALL_ERRORS as exc:
                self._gate.backoff("receive", exc)
                continue
            self._gate.success("receive")
            self._holding.add(self.index, self.hold(messages, sent))

    def hold(self, messages: list[MessageTypeDef], sent: float) -> list[HeldMessage]:
        """Turn received messages into held ones with their bronze lines.

        Args:
            messages: What ReceiveMessage returned.
            sent: ``time.monotonic()`` when the call was sent (visibility counts from there).

        Returns:
            The held messages, in the order received.
        """
        received_at = iso_utc_ms(datetime.now(UTC))
        deadline = sent + self._cfg.visibility_timeout_seconds
        held: list[HeldMessage] = []
        redelivered = 0
        for message in messages:
            record = bronze_record(
                message, queue_url=self._queue_url, received_at=received_at, bridge_id=self._bridge_id
            )
            redelivered += record["receive_count"] > 1
            line = encode_line(record)
            held.append(HeldMessage(message["ReceiptHandle"], record["message_id"], line, sent, deadline))
        self._metrics.add(received=len(held), empty_receives=int(not held), redelivered=redelivered)
        return held

"""The flusher: write a durable bronze file, then (only then) delete its messages."""

from __future__ import annotations

import logging
import time
from datetime import UTC, datetime

from jobs.bridge.acks import Acknowledger
from jobs.bridge.holding import HeldMessage, Holding
from jobs.bridge.landing import BronzeStore
from jobs.bridge.metrics import BridgeMetrics
from jobs.bridge.records import bronze_file_name, join_lines
from jobs.bridge.retry import CALL_ERRORS, FailureGate
from jobs.config import BridgeConfig

log = logging.getLogger(__name__)


class Flusher:
    """Takes due batches from the holding, lands them, deletes them."""

    def __init__(
        self,
        store: BronzeStore,
        acks: Acknowledger,
        *,
        settings: BridgeConfig,
        bridge_id: str,
        holding: Holding,
        gate: FailureGate,
        metrics: BridgeMetrics,
    ) -> None:
        """Create the flusher.

        Args:
            store: The bronze store.
            acks: Deletes landed messages.
            settings: ``bridge`` configuration (flush size and interval).
            bridge_id: Part of every file name.
            holding: The held messages.
            gate: Failure counting and backoff.
            metrics: Counters.
        """
        self._store = store
        self._acks = acks
        self._cfg = settings
        self._bridge_id = bridge_id
        self._holding = holding
        self._gate = gate
        self._metrics = metrics
        self._seq = 0

    def run(self) -> None:
        """Flush until the holding is drained after the receivers stopped, or the bridge gives up.

        Raises:
            BridgeError: Landing or deleting kept failing.
        """
        while not self._gate.aborted.is_set():
            batch = self._holding.next_batch(
                self._cfg.flush_max_messages,
                self._cfg.flush_interval_seconds,
                max_bytes=self._cfg.flush_max_bytes,
            )
            if batch is None:
                return
            if batch:
                self.land(batch)
                self._acks.delete_landed(batch)

    def land(self, batch: list[HeldMessage]) -> str:
        """Write one bronze file holding ``batch``; returns once it is durable.

        Args:
            batch: The messages, in order.

        Returns:
            The file's URI.

        Raises:
            BridgeError: The store kept failing.
        """
        self._seq += 1
        name = bronze_file_name(datetime.now(UTC), self._bridge_id, self._seq)
        data = join_lines(m.line for m in batch)
        while True:  # the same name on retry: a write that did succeed is overwritten, not doubled
            started = time.monotonic()
            try:
                uri = self._store.write(name, data)
            except CALL_ERRORS as exc:
                self._gate.backoff("land", exc)
                continue
            break
        self._gate.success("land")
        self._metrics.flushed(time.monotonic() - started, len(batch), len(data))
        log.debug("bridge %s: landed %d messages in %s", self._bridge_id, len(batch), uri)
        return uri

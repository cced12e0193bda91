"""The stop marker: how an operator (``silverline emr stop-stream``) asks a running stream to stop.

The marker is ``<ops_root>control/stop-stream``. The driver looks for it between
micro-batches (every few seconds) and, when it is there, finishes the current
batch, commits, releases the writer lease and exits 0. The marker stays until
the next deploy removes it, so a driver that YARN restarts after the stop exits
again at once instead of resuming.
"""

from __future__ import annotations

import json
import logging
import socket
import time
from datetime import UTC, datetime
from typing import Any

from jobs.config import SilverlineConfig

log = logging.getLogger(__name__)

STOP_NAME = "stop-stream"
CHECK_SECONDS = 5.0


def control_uri(config: SilverlineConfig) -> str:
    """``<ops_root>control/``."""
    return f"{config.ops_root}control/"


def _store(config: SilverlineConfig) -> Any:
    from jobs.bridge.landing import open_store

    return open_store(control_uri(config), config)


def request_stop(config: SilverlineConfig, reason: str = "operator request") -> str:
    """Write the stop marker; returns its URI."""
    body = {"requested_at": datetime.now(UTC).isoformat(), "by": socket.gethostname(), "reason": reason}
    uri: str = _store(config).write(STOP_NAME, json.dumps(body).encode("utf-8"))
    return uri


def clear_stop(config: SilverlineConfig) -> None:
    """Remove the stop marker (before a new deploy)."""
    _store(config).delete(STOP_NAME)


def stop_requested(config: SilverlineConfig) -> dict[str, Any] | None:
    """The marker's content when a stop was requested, else None."""
    store = _store(config)
    if STOP_NAME not in store.names():
        return None
    try:
        data: dict[str, Any] = json.loads(store.read(STOP_NAME))
    except (ValueError, OSError):
        return {"reason": "unreadable stop marker"}
    return data


class StopWatcher:
    """Checks for the stop marker at most every :data:`CHECK_SECONDS` (errors are logged, not raised)."""

    def __init__(self, config: SilverlineConfig, every: float = CHECK_SECONDS) -> None:
        """Create the watcher.

        Args:
            config: The job configuration.
            every: Seconds between checks.
        """
        self._config = config
        self._every = every
        self._last = 0.0

    def requested(self) -> dict[str, Any] | None:
        """The marker's content if a stop was requested (checked at most every ``every`` seconds)."""
        if time.monotonic() - self._last < self._every:
            return None
        self._last = time.monotonic()
        try:
            return stop_requested(self._config)
        except Exception as exc:  # an unreachable ops store must not stop the stream
            log.warning("could not check the stop marker: %s", exc)
            return None

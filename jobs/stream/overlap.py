"""``available-now`` over a long backlog: process what has landed while the bridge drains the rest.

With a short queue the job drains SQS into bronze first and then runs one
available-now query: one batch, and the simplest order of events. With a long
backlog that would leave Spark idle for as long as the drain takes. Past
``stream.overlap_backlog`` messages queued at start-up, :func:`run_overlapped`
drains on a background thread instead and runs available-now *rounds* meanwhile:
each round is one available-now query over the checkpoint, processing every bronze
file landed when it started. A round that starts after the drain has ended is the
last one, so nothing landed is left unprocessed. Between rounds it waits until the
bridge has landed more or finished (no round is started for nothing).

Every round is an ordinary restart of the query from its checkpoint, so the
exactly-once argument of :mod:`jobs.stream.microbatch` is unchanged.
"""

from __future__ import annotations

import logging
import threading
from collections.abc import Callable
from typing import Any, Protocol

log = logging.getLogger(__name__)

_POLL_SECONDS = 0.2


class DrainingBridge(Protocol):
    """What :func:`run_overlapped` needs of :class:`jobs.bridge.bridge.SqsBridge`."""

    def run_until_empty(self) -> Any:
        """Start, receive until the queue is drained, stop."""

    def request_stop(self) -> None:
        """Stop receiving soon (what is held still lands)."""

    def landed(self) -> int:
        """Messages landed in bronze so far."""
        ...


def run_overlapped(
    bridge: DrainingBridge,
    start_round: Callable[[int], Any],
    wait_round: Callable[[Any], None],
    stop: threading.Event,
) -> Any:
    """Drain the queue on a thread while available-now rounds process what has landed.

    Args:
        bridge: The bridge (not started).
        start_round: Starts round ``n`` (0-based) and returns its streaming query.
        wait_round: Waits until a round's query has ended (or ``stop`` ends it).
        stop: Set to stop: the bridge stops receiving and no further round starts.

    Returns:
        The last round's query (its ``exception()`` tells whether it failed).

    Raises:
        jobs.bridge.retry.BridgeError: The bridge gave up (after the last round ended).
    """
    failure: list[BaseException] = []

    def drain() -> None:
        try:
            bridge.run_until_empty()
        except BaseException as exc:  # raised in the caller's thread below
            failure.append(exc)

    thread = threading.Thread(target=drain, name="bridge-drain", daemon=True)
    thread.start()
    rounds = 0
    try:
        while True:
            draining = thread.is_alive()  # sampled first: a round after the drain sees everything
            seen = bridge.landed()
            log.info(
                "round %d: processing %d messages landed so far%s",
                rounds,
                seen,
                " while the bridge drains the queue" if draining else "",
            )
            query = start_round(rounds)
            rounds += 1
            wait_round(query)
            if not draining or stop.is_set() or query.exception() is not None:
                break
            while thread.is_alive() and bridge.landed() == seen and not stop.is_set():
                thread.join(_POLL_SECONDS)
    finally:
        if thread.is_alive():  # stopped, or a round failed: stop receiving; held messages land
            bridge.request_stop()
        thread.join()
    if failure:
        raise failure[0]
    log.info("backlog processed in %d rounds", rounds)
    return query

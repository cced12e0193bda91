"""available-now over a long backlog: rounds run while the bridge drains, and one round after it ends."""

from __future__ import annotations

import threading
from typing import Any

import pytest

from jobs.bridge.retry import BridgeError
from jobs.stream.overlap import run_overlapped

pytestmark = pytest.mark.unit
DEADLINE = 60.0  # generous: nothing here waits on time except a broken implementation


class Bridge:
    """Lands one message each time the test allows it, until told the queue is empty."""

    def __init__(self, fail: bool = False) -> None:
        self.step = threading.Semaphore(0)
        self.empty = threading.Event()
        self.stop_requested = threading.Event()
        self.fail = fail
        self.count = 0
        self.finished = threading.Event()

    def run_until_empty(self) -> None:
        try:
            while not self.stop_requested.is_set():
                if self.step.acquire(timeout=0.05):
                    self.count += 1
                if self.empty.is_set():
                    if self.fail:
                        raise BridgeError("SQS kept failing")
                    return
        finally:
            self.finished.set()

    def request_stop(self) -> None:
        self.stop_requested.set()

    def landed(self) -> int:
        return self.count


class Query:
    def __init__(self, error: Exception | None = None) -> None:
        self.error = error

    def exception(self) -> Exception | None:
        return self.error


def test_rounds_process_while_the_bridge_drains_and_one_runs_after_it_ended() -> None:
    bridge = Bridge()
    seen: list[tuple[int, int, bool]] = []  # (round, landed when it started, drain finished then)

    def start_round(n: int) -> Query:
        seen.append((n, bridge.landed(), bridge.finished.is_set()))
        return Query()

    def wait_round(_: Any) -> None:
        if len(seen) == 1:  # while round 0 runs, one message lands
            bridge.step.release()
        elif len(seen) == 2:  # while round 1 runs, the last lands and the queue is empty
            bridge.step.release()
            bridge.empty.set()
            assert bridge.finished.wait(DEADLINE)

    run_overlapped(bridge, start_round, wait_round, threading.Event())

    assert [n for n, _, _ in seen] == [0, 1, 2]
    assert [done for _, _, done in seen] == [False, False, True]  # the last round saw everything
    assert seen[1][1] == 1 and seen[2][1] == 2
    assert not bridge.stop_requested.is_set()


def test_no_round_starts_until_something_new_has_landed() -> None:
    bridge = Bridge()
    starts: list[int] = []

    def start_round(n: int) -> Query:
        starts.append(bridge.landed())
        return Query()

    def wait_round(_: Any) -> None:
        if len(starts) == 1:
            # Round 0 ends with nothing new. Round 1 may only start once a message landed:
            # release it from another thread a little later, then end the drain.
            def later() -> None:
                bridge.step.release()
                bridge.empty.set()

            threading.Timer(0.3, later).start()

    run_overlapped(bridge, start_round, wait_round, threading.Event())
    assert starts[0] == 0 and all(landed == 1 for landed in starts[1:])


def test_a_failed_round_or_a_stop_ends_the_rounds_and_stops_the_bridge() -> None:
    for ending in ("failed", "stopped"):
        bridge, stop = Bridge(), threading.Event()
        rounds: list[int] = []

        def start_round(
            n: int, ending: str = ending, rounds: list[int] = rounds, stop: threading.Event = stop
        ) -> Query:
            rounds.append(n)
            if ending == "stopped":
                stop.set()
            return Query(RuntimeError("batch failed") if ending == "failed" else None)

        query = run_overlapped(bridge, start_round, lambda _: None, stop)
        assert rounds == [0], ending
        assert bridge.stop_requested.is_set() and bridge.finished.is_set(), ending
        assert (query.exception() is not None) == (ending == "failed")


def test_a_bridge_that_gives_up_is_reported_after_a_last_round_over_what_landed() -> None:
    bridge = Bridge(fail=True)
    rounds: list[bool] = []

    def start_round(n: int) -> Query:
        rounds.append(bridge.finished.is_set())
        return Query()

    def wait_round(_: Any) -> None:
        if len(rounds) == 1:
            bridge.step.release()
            bridge.empty.set()
            assert bridge.finished.wait(DEADLINE)

    with pytest.raises(BridgeError, match="kept failing"):
        run_overlapped(bridge, start_round, wait_round, threading.Event())
    assert rounds == [False, True]

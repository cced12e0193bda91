"""Fault injection on the SQS side of the job (issue #13): SQS down, slow, throttling; bronze disk full.

SQS faults are injected on the real wire by :class:`tests.faultproxy.FaultProxy`
between the bridge and moto's server; the disk-full fault at the bronze store
boundary in the job's own process (``python -m tests.faultkit``). Traffic comes from
the simulator, and every scenario ends with the stream job turning bronze into
silver and the simulator's oracle (``verify``) judging it, plus: every message sent
is in bronze (none lost: R7), each batch's outcomes balance, and the job either
recovered (exit 0) or failed loudly (exit 1, one clear line, in bounded time).
Under ``pytest --soak`` the outages last minutes instead of seconds.
"""

from __future__ import annotations

import os
import signal
import time
from pathlib import Path
from typing import Any

import pytest

from tests import faultkit as fk
from tests import streamkit as kit
from tests.faultproxy import ERRORS, FaultProxy, Phase
from tests.stream.test_stream_e2e import assert_conserved

pytestmark = pytest.mark.integration

THROTTLES = ("RequestThrottled", "ThrottlingException", "OverLimit")
SERVER_ERRORS = ("InternalError", "ServiceUnavailable")
DELETE = frozenset({"DeleteMessageBatch"})
RECEIVE = frozenset({"ReceiveMessage"})


def error_budget(outage: float) -> int:
    """``max_consecutive_errors`` that outlasts ``outage`` seconds of failures (0.2 s doubling to 20 s,
    equal jitter: each wait is at least half its ceiling), with room for a few more."""
    waited, attempts = 0.0, 0
    while waited < outage:
        attempts += 1
        waited += min(20.0, 0.2 * 2 ** (attempts - 1)) / 2
    return attempts + 3


def simulate(lake: Path, soak: bool, seed: int) -> tuple[list[str], Any]:
    from jobs.simulate import SimulationSpec, run

    spec = SimulationSpec(tenants=3, objects=150 if soak else 30, dup_rate=0.2, reorder_rate=0.2, seed=seed)
    return run(spec, lake)


def assert_all_landed(lake: Path, sent: list[str], endpoint: str, queue: str, dlq: str) -> None:
    """R7 on the SQS side: every message sent is in bronze; nothing is left in the queue or the DLQ."""
    landed = set(kit.bronze_message_ids(lake))
    missing = [m for m in sent if m not in landed]
    assert not missing, f"{len(missing)} of {len(sent)} messages sent never landed in bronze"
    assert kit.queue_counts(endpoint, queue) == 0
    assert kit.queue_counts(endpoint, dlq) == 0


def run_bridge_through(
    proxy: FaultProxy, phases: list[Phase], bodies: list[str], env: dict[str, Any], log: Path
) -> dict[str, Any]:
    """Play ``phases`` while ``bodies`` trickle in and the bridge CLI drains them; then SIGTERM it.

    Returns:
        The bridge's final metrics (it must have exited 0).
    """
    config = fk.fault_config(
        env["tmp"], env["lake"], env["endpoint"], env["queue"], sqs_endpoint=proxy.url, **env["bridge"]
    )
    proc = fk.start(fk.silverline_cmd("bridge", "--config", str(config)), log)
    # Traffic over the schedule's timed windows, and 2 s into each event-driven one; a few
    # bodies are held back for the windows only a delete can meet (the receivers' polls meet
    # the others), each sent when such a window is open and the queue is empty.
    seconds = sum(2.0 if p.until else p.seconds for p in phases)

    def delete_wanted() -> bool:
        phase = proxy.phase
        if proxy.done or phase is None:
            return True
        return phase.actions == DELETE and kit.queue_counts(env["endpoint"], env["queue"]) == 0

    reserve = 2 * sum(1 for p in phases if p.actions == DELETE)
    trickle = fk.Trickle(
        env["endpoint"], env["queue"], bodies, seconds=seconds, reserve=reserve, release=delete_wanted
    )
    try:
        proxy.play(phases, on_first_request=True)  # the clock starts when the bridge is up
        assert proxy.wait_started(timeout=120), fk.outputs(log)[1][-3000:]
        trickle.start()
        trickle.join()
        assert trickle.error is None, trickle.error
        env["sent"] += trickle.ids
        assert proxy.wait(timeout=sum(p.seconds for p in phases) + 30)
        # Drained: nothing visible or in flight (redelivered messages came back and landed again).
        # A generous deadline, not a schedule: the poll returns as soon as the queue is empty, and a
        # machine busy with other work (pytest --cpu-hog) needs several visibility timeouts.
        fk.wait_until(lambda: kit.queue_counts(env["endpoint"], env["queue"]) == 0, 420, "the queue to drain")
        assert proc.poll() is None, fk.outputs(log)[1][-3000:]
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=60) == 0, fk.outputs(log)[1][-3000:]
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    return fk.final_metrics(fk.outputs(log)[0])


def injected_errors(proxy: FaultProxy) -> dict[str, int]:
    """The bridge error kinds the proxy's whole-call error replies must show up as."""
    kinds: dict[str, int] = {}
    for (action, kind), n in proxy.injected.items():
        name = "InternalError" if kind == "lose_reply" else kind
        if name in ERRORS:
            key = f"{fk.OPERATIONS[action]}.{name}"
            kinds[key] = kinds.get(key, 0) + n
    return kinds


def sqs_schedule(soak: bool) -> list[Phase]:
    """Down, slow, throttled, 5xx, failed deletes.

    The outage is timed (its length is the point: seconds, minutes under soak). Every
    other window is driven by traffic (``until``): it closes once it has hit enough
    requests to use each of its error kinds, so a bridge still backing off after the
    outage on a busy machine cannot miss it. Under soak the windows are long and timed.
    """

    def hits(n: int) -> int:
        return 0 if soak else n

    return [
        Phase("pass", 1.5),
        Phase("refuse", 150.0 if soak else 3.0),
        # 6 s of 10 s visibility under soak: extensions needed
        Phase("delay", 60.0, delay=6.0 if soak else 0.8, until=hits(2)),
        Phase("error", 60.0, actions=RECEIVE, errors=THROTTLES, every=2, until=hits(len(THROTTLES))),
        Phase("error", 60.0, errors=SERVER_ERRORS, every=2, until=hits(len(SERVER_ERRORS))),
        Phase("lose_reply", 60.0, actions=DELETE, until=1),
        Phase("reject_entries", 60.0, actions=DELETE, until=1),
    ]


def boto3_schedule(soak: bool) -> list[Phase]:
    return [
        Phase("refuse", 120.0 if soak else 4.0),
        Phase("error", 30.0, errors=(*THROTTLES, *SERVER_ERRORS), until=0 if soak else 3),
        Phase("reject_entries", 60.0, actions=DELETE, until=1),
    ]


def test_sqs_down_slow_throttled_and_failed_deletes_lose_nothing(
    tmp_path: Path, moto_endpoint: str, soak: bool
) -> None:
    lake = tmp_path / "lake"
    bodies, truth = simulate(lake, soak, seed=41)
    queue, dlq = kit.make_queue(moto_endpoint)
    proxy = FaultProxy(moto_endpoint).start()
    first, second, last = bodies[: len(bodies) * 3 // 5], bodies[len(bodies) * 3 // 5 : -5], bodies[-5:]
    env: dict[str, Any] = {
        "tmp": tmp_path,
        "lake": lake,
        "endpoint": moto_endpoint,
        "queue": queue,
        "sent": [],
    }
    try:
        # 1. The lean JSON client: outage, slow replies, throttling, 5xx, lost and rejected deletes.
        phases = sqs_schedule(soak)
        # The budget outlasts the outage and the error windows right after it, whatever the order
        # in which the receivers meet them (each window injects at most one error per kind).
        budget = error_budget(phases[1].seconds) + len(THROTTLES) + len(SERVER_ERRORS)
        env["bridge"] = {"max_consecutive_errors": budget, "sqs_transport": "direct"}
        metrics = run_bridge_through(proxy, phases, first, env, tmp_path / "direct.log")
        _, err = fk.outputs(tmp_path / "direct.log")
        assert_sqs_faults_reported(proxy, metrics, err, lake, exact=True)

        # 2. botocore's client (it retries throttles and 5xx itself, 3 attempts, before the bridge does).
        injected_before = sum(injected_errors(proxy).values())
        proxy.rejected_ids.clear()
        phases = boto3_schedule(soak)
        env["bridge"] = {"max_consecutive_errors": error_budget(phases[0].seconds), "sqs_transport": "boto3"}
        metrics = run_bridge_through(proxy, phases, second, env, tmp_path / "boto3.log")
        injected = sum(injected_errors(proxy).values()) - injected_before
        bridge_errors = sum(n for k, n in metrics["errors"].items() if k.split(".")[1] in ERRORS)
        assert injected > 0 and bridge_errors <= injected, (injected, metrics["errors"])
        assert any("Connect" in k for k in metrics["errors"]), metrics["errors"]  # the outage surfaced
        assert_redelivered_landed_again(proxy, metrics, lake)

        # 3. An outage longer than the give-up budget: exit 1, one clear line, nothing deleted.
        env["sent"] += kit.send_all(moto_endpoint, queue, last)
        assert_gives_up_loudly(proxy, env, tmp_path / "giveup.log")
        assert kit.queue_counts(moto_endpoint, queue) == len(last)

        # 4. The stream job drains the rest through throttling and 5xx, then builds silver.
        proxy.play([Phase("error", 3.0, errors=("RequestThrottled", "ServiceUnavailable"), every=2)],
                   on_first_request=True)  # fmt: skip
        config = fk.fault_config(tmp_path, lake, moto_endpoint, queue, sqs_endpoint=proxy.url)
        code = fk.run_stream(config, tmp_path / "stream.log")
        assert code == 0, fk.outputs(tmp_path / "stream.log")[1][-4000:]
    finally:
        proxy.stop()
    assert_oracle_and_conservation(lake, truth, env["sent"], moto_endpoint, queue, dlq)


def assert_sqs_faults_reported(
    proxy: FaultProxy, metrics: dict[str, Any], stderr: str, lake: Path, *, exact: bool
) -> None:
    """Every kind of fault hit traffic, and the bridge counted (and logged) each error it saw."""
    kinds = {kind for _, kind in proxy.injected}
    assert {*THROTTLES, *SERVER_ERRORS, "delay", "lose_reply", "reject_entries"} <= kinds, proxy.injected
    errors = metrics["errors"]
    for kind, n in injected_errors(proxy).items():
        assert errors.get(kind, 0) == n if exact else errors.get(kind, 0) <= n, (kind, n, errors)
    assert any(k.startswith("receive.") and "Connect" in k for k in errors), errors  # the outage
    assert "retrying" in stderr, "the bridge logged no retry"
    assert_redelivered_landed_again(proxy, metrics, lake)


def assert_redelivered_landed_again(proxy: FaultProxy, metrics: dict[str, Any], lake: Path) -> None:
    """A message whose delete SQS rejected reappears and lands a second time (a duplicate for the stream)."""
    rejected = set(proxy.rejected_ids)
    assert rejected, "no delete was rejected: the schedule missed the traffic"
    assert metrics["errors"].get("delete.ReceiptHandleIsInvalid", 0) >= len(proxy.rejected_ids)
    assert metrics["redelivered"] >= len(rejected)
    counts = fk.bronze_count(lake)
    assert all(counts.get(m, 0) >= 2 for m in rejected), {m: counts.get(m, 0) for m in rejected}


def assert_gives_up_loudly(proxy: FaultProxy, env: dict[str, Any], log: Path) -> None:
    proxy.play([Phase("refuse", 300.0)])
    config = fk.fault_config(
        env["tmp"],
        env["lake"],
        env["endpoint"],
        env["queue"],
        sqs_endpoint=proxy.url,
        max_consecutive_errors=3,
    )
    started = time.monotonic()
    proc = fk.start(fk.silverline_cmd("bridge", "--config", str(config), "--until-empty"), log)
    try:
        code = proc.wait(timeout=60)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
        proxy.cancel()
    out, err = fk.outputs(log)
    assert code == 1, err[-3000:]
    assert time.monotonic() - started < 30  # backed off, then gave up: no hang, no hot loop
    [line] = [x for x in err.splitlines() if x.startswith("silverline bridge:")]
    assert "gave up on receive after 3 consecutive failures" in line, line
    assert env["queue"] in line and proxy.url in line and "EndpointConnectionError" in line, line
    assert fk.final_metrics(out)["deleted"] == 0


def assert_oracle_and_conservation(
    lake: Path, truth: Any, sent: list[str], endpoint: str, queue: str, dlq: str
) -> None:
    from jobs.simulate import verify

    result = verify(lake, truth)
    assert result.ok, result.summary()  # the oracle: every table, no missing, unexpected or duplicate row
    assert sum(t.duplicates for t in result.tables) == 0
    assert_all_landed(lake, sent, endpoint, queue, dlq)
    assert_conserved(lake)

"""Fault injection at the bronze store (issue #13): the disk under the landing log fills up.

The fault is injected at the store boundary in the job's own process
(``python -m tests.faultkit <flag> ...``: ``LocalBronzeStore.write`` fails with
``OSError(ENOSPC)`` while the flag file exists), so it runs wherever CI runs, without
mounts. SQS traffic goes through :class:`tests.faultproxy.FaultProxy` (no faults) so
every DeleteMessageBatch on the wire is checked against what is on disk at that
moment: nothing may be deleted that is not durable in bronze (R7).
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
from tests.bridge.test_faults_sqs import assert_oracle_and_conservation, error_budget, simulate
from tests.faultproxy import FaultProxy

pytestmark = pytest.mark.integration


def injected(flag: Path) -> int:
    """ENOSPC failures injected so far (one line each)."""
    counter = Path(f"{flag}.count")
    return len(counter.read_text(encoding="utf-8").splitlines()) if counter.exists() else 0


def watch_deletes(proxy: FaultProxy, lake: Path) -> list[str]:
    """Check every delete on the wire against bronze on disk; returns the list of violations."""
    violations: list[str] = []

    def check(ids: list[str]) -> None:
        durable = set(kit.bronze_message_ids(lake))
        violations.extend(i for i in ids if i not in durable)

    proxy.on_delete = check
    return violations


def test_bronze_disk_full_gives_up_loudly_or_backs_off_and_lands_everything(
    tmp_path: Path, moto_endpoint: str, soak: bool
) -> None:
    lake = tmp_path / "lake"
    bodies, truth = simulate(lake, soak, seed=43)
    queue, dlq = kit.make_queue(moto_endpoint)
    proxy = FaultProxy(moto_endpoint).start()
    violations = watch_deletes(proxy, lake)
    flag = tmp_path / "disk_full"
    flag.touch()
    try:
        sent = kit.send_all(moto_endpoint, queue, bodies)
        # 1. The disk stays full: the bridge gives up after its budget, loudly, deleting nothing.
        config = fk.fault_config(
            tmp_path, lake, moto_endpoint, queue, sqs_endpoint=proxy.url, max_consecutive_errors=3
        )
        assert_gives_up_on_full_disk(config, flag, tmp_path / "giveup.log", lake)
        assert not proxy.deleted_ids and kit.queue_counts(moto_endpoint, queue) == len(sent)

        # 2. The stream job meets a full disk, backs off, and lands everything once space returns.
        outage = 150.0 if soak else 4.0
        config = fk.fault_config(
            tmp_path, lake, moto_endpoint, queue, sqs_endpoint=proxy.url,
            max_consecutive_errors=error_budget(outage), visibility_timeout_seconds=20,
        )  # fmt: skip
        log = tmp_path / "stream.log"
        before = injected(flag)
        proc = fk.start(fk.silverline_cmd("stream", "--config", str(config), disk_full_flag=flag), log)
        try:
            fk.wait_until(lambda: injected(flag) > before or proc.poll() is not None, 300, "a failed write")
            time.sleep(outage)
            assert proc.poll() is None, fk.outputs(log)[1][-3000:]  # still backing off, not given up
            flag.unlink()
            code = proc.wait(timeout=600)
        finally:
            if proc.poll() is None:
                os.killpg(proc.pid, signal.SIGKILL)
        _, err = fk.outputs(log)
        assert code == 0, err[-4000:]
        assert "land failed (ENOSPC" in err and "land works again" in err, err[-4000:]
        assert injected(flag) - before >= 2
    finally:
        proxy.stop()
    assert violations == [], f"{len(violations)} messages deleted before they were durable in bronze"
    assert proxy.deleted_ids, "nothing was deleted through the proxy"
    assert_oracle_and_conservation(lake, truth, sent, moto_endpoint, queue, dlq)


def assert_gives_up_on_full_disk(config: Path, flag: Path, log: Path, lake: Path) -> None:
    started = time.monotonic()
    proc = fk.start(
        fk.silverline_cmd("bridge", "--config", str(config), "--until-empty", disk_full_flag=flag), log
    )
    try:
        code = proc.wait(timeout=120)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)
    out, err = fk.outputs(log)
    assert code == 1, err[-3000:]
    assert time.monotonic() - started < 60
    [line] = [x for x in err.splitlines() if x.startswith("silverline bridge:")]
    assert "gave up on land after 3 consecutive failures" in line, line
    assert "bronze store file://" in line and "ENOSPC" in line and "No space left on device" in line, line
    assert injected(flag) == 3
    final: dict[str, Any] = fk.final_metrics(out)
    assert final["errors"].get("land.ENOSPC") == 3 and final["deleted"] == 0 and final["landed"] == 0
    assert kit.bronze_message_ids(lake) == []

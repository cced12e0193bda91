"""``silverline bridge`` as a process: SIGKILL at random points, SIGTERM, exit codes."""

from __future__ import annotations

import json
import os
import random
import signal
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.bridge.test_bridge_sqs import (
    assert_landed,
    bronze_dir,
    drain,
    make_queue,
    read_bronze,
    sample_bodies,
    send,
    sqs_client,
)

pytestmark = pytest.mark.integration
PROJECT = Path(__file__).resolve().parents[2]
STARTED = "receivers on"  # the bridge's start-up log line


def write_config(tmp_path: Path, **bridge: Any) -> Path:
    settings = {
        "receivers": 4,
        "wait_time_seconds": 1,
        "visibility_timeout_seconds": 10,
        "flush_max_messages": 25,
        "flush_interval_seconds": 0.3,
        "max_consecutive_errors": 5,
        **bridge,
    }
    path = tmp_path / "bridge.yaml"
    path.write_text(yaml.safe_dump({"group": {"name": "demo"}, "bridge": settings}), encoding="utf-8")
    return path


def bridge_command(config: Path, queue_url: str, endpoint: str, lake: Path, *extra: str) -> list[str]:
    return [
        sys.executable,
        "-m",
        "jobs",
        "bridge",
        "--config",
        str(config),
        "--queue-url",
        queue_url,
        "--sqs-endpoint-url",
        endpoint,
        "--lake-root",
        str(lake),
        *extra,
    ]


def child_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SILVERLINE__")}
    env["PYTHONPATH"] = str(PROJECT)
    return env


def start(command: list[str], log: Path) -> subprocess.Popen[bytes]:
    with log.open("wb") as err:
        return subprocess.Popen(command, cwd=PROJECT, env=child_env(), stdout=subprocess.PIPE, stderr=err)


def wait_for_line(log: Path, text: str, timeout: float = 30) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if text in log.read_text(errors="replace"):
            return
        time.sleep(0.05)
    raise AssertionError(f"{text!r} not in {log}:\n{log.read_text(errors='replace')}")


def test_sigkill_at_random_points_loses_no_message(moto_endpoint: str, tmp_path: Path) -> None:
    client = sqs_client(moto_endpoint)
    queue = make_queue(client, max_receive_count=10)
    sent = send(client, queue.url, sample_bodies(200))
    command = bridge_command(write_config(tmp_path), queue.url, moto_endpoint, tmp_path / "lake")
    seed = random.randrange(10**6)
    rng = random.Random(seed)

    for attempt in range(3):
        log = tmp_path / f"kill-{attempt}.log"
        process = start(command, log)
        wait_for_line(log, STARTED)
        time.sleep(rng.uniform(0.1, 2.0))
        process.kill()  # SIGKILL: no handler, no flush, no delete
        process.wait(timeout=10)
    final = subprocess.run(
        [*command, "--until-empty"], cwd=PROJECT, env=child_env(), capture_output=True, timeout=120
    )

    assert final.returncode == 0, final.stderr.decode()[-3000:]
    rows = read_bronze(bronze_dir(tmp_path / "lake"))  # every file whole: killed writes left no torn file
    landed = {r["message_id"] for r in rows}
    dead_lettered = drain(client, queue.dlq_url)
    assert drain(client, queue.url) == {}, f"seed {seed}: --until-empty left messages behind"
    assert set(sent) <= landed | set(dead_lettered), (
        f"seed {seed}: lost {set(sent) - landed - set(dead_lettered)}"
    )
    assert_landed(rows, {k: v for k, v in sent.items() if k in landed}, exactly_once=False)
    metrics = json.loads(final.stdout.decode().strip().splitlines()[-1])
    assert metrics["held"] == 0 and metrics["landed"] == metrics["deleted"] == metrics["received"]
    print(f"\nseed {seed}: {len(rows)} lines for {len(sent)} messages ({len(rows) - len(landed)} duplicates)")


def test_sigterm_lands_and_deletes_what_was_received_then_exits_0(moto_endpoint: str, tmp_path: Path) -> None:
    client = sqs_client(moto_endpoint)
    queue = make_queue(client)
    sent = send(client, queue.url, sample_bodies(150))
    log = tmp_path / "bridge.log"
    command = bridge_command(
        write_config(tmp_path, visibility_timeout_seconds=60), queue.url, moto_endpoint, tmp_path / "lake"
    )
    process = start(command, log)
    wait_for_line(log, STARTED)
    deadline = time.monotonic() + 30
    while not list(bronze_dir(tmp_path / "lake").glob("dt=*/*.jsonl")) and time.monotonic() < deadline:
        time.sleep(0.05)

    process.send_signal(signal.SIGTERM)
    stdout, _ = process.communicate(timeout=30)

    assert process.returncode == 0, log.read_text()
    metrics = json.loads(stdout.decode().strip().splitlines()[-1])
    assert metrics["held"] == 0 and metrics["landed"] == metrics["deleted"] == metrics["received"] > 0
    rows = read_bronze(bronze_dir(tmp_path / "lake"))
    landed = {r["message_id"]: r["body"] for r in rows}
    left = drain(client, queue.url)  # a message received but not deleted would be invisible for 60 s
    assert not set(landed) & set(left)
    assert {**landed, **left} == sent
    assert_landed(rows, landed, exactly_once=False)
    assert "stopped:" in log.read_text()


def test_missing_queue_exits_1_with_a_clear_error(moto_endpoint: str, tmp_path: Path) -> None:
    missing = f"{moto_endpoint}/123456789012/no-such-queue"
    command = bridge_command(
        write_config(tmp_path), missing, moto_endpoint, tmp_path / "lake", "--until-empty"
    )

    result = subprocess.run(command, cwd=PROJECT, env=child_env(), capture_output=True, timeout=60)

    assert result.returncode == 1
    err = result.stderr.decode()
    assert "silverline bridge: SQS bridge gave up on receive after a permanent error" in err
    assert missing in err and "NonExistentQueue" in err

"""Helpers for the fault-injection scenarios: configs, the bridge CLI, trickled traffic, disk full.

``python -m tests.faultkit <flag-file> <silverline args...>`` runs the ``silverline``
CLI with the local bronze store's writes failing with ``OSError(ENOSPC)`` for as long
as ``<flag-file>`` exists (each injected failure appends a line to ``<flag-file>.count``):
the disk-full fault, injected at the store boundary in the job's own process.
"""

from __future__ import annotations

import errno
import json
import os
import signal
import subprocess
import sys
import threading
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import Any

import yaml

from tests import streamkit as kit

#: The bridge's operation name for each SQS action (its error kinds are ``<operation>.<code>``).
OPERATIONS = {
    "ReceiveMessage": "receive",
    "DeleteMessageBatch": "delete",
    "ChangeMessageVisibilityBatch": "visibility",
    "GetQueueAttributes": "attributes",
}


def fault_config(
    tmp: Path, lake: Path, endpoint: str, queue_url: str, *, sqs_endpoint: str | None = None, **bridge: Any
) -> Path:
    """streamkit's config with bridge settings for fault runs (short polls, 10 s visibility).

    Args:
        tmp: Directory for the config file.
        lake: The lake directory.
        endpoint: moto's endpoint (S3 and, without ``sqs_endpoint``, SQS).
        queue_url: The queue.
        sqs_endpoint: The SQS endpoint the bridge talks to (e.g. a fault proxy).
        **bridge: ``bridge`` settings on top.

    Returns:
        The config file.
    """
    settings = {"visibility_timeout_seconds": 10, "flush_interval_seconds": 1, **bridge}
    path = kit.write_config(tmp, lake, endpoint, queue_url, bridge=settings)
    config = yaml.safe_load(path.read_text(encoding="utf-8"))
    if sqs_endpoint:
        config["sqs"]["endpoint_url"] = sqs_endpoint
    name = f"silverline-{abs(hash((sqs_endpoint, tuple(sorted(bridge.items()))))) % 10**8}.yaml"
    out = tmp / name
    out.write_text(yaml.safe_dump(config), encoding="utf-8")
    return out


def silverline_cmd(*args: str, disk_full_flag: Path | None = None) -> list[str]:
    """The command line of ``silverline <args>`` (through the disk-full launcher when a flag is given)."""
    if disk_full_flag is not None:
        return [sys.executable, "-m", "tests.faultkit", str(disk_full_flag), *args]
    return [sys.executable, "-m", "jobs", *args]


def start(cmd: Sequence[str], log: Path) -> subprocess.Popen[bytes]:
    """Start a command in its own session, stdout to ``log``, stderr to ``log.err``."""
    out, err = log.open("wb"), log.with_suffix(".err").open("wb")
    return subprocess.Popen(
        list(cmd), stdout=out, stderr=err, env=kit.job_env(), cwd=kit.PROJECT, start_new_session=True
    )


def run_stream(config: Path, log: Path, *, disk_full_flag: Path | None = None, timeout: float = 900) -> int:
    """Run ``silverline stream --trigger available-now`` to the end (output in ``log``); its exit code."""
    cmd = silverline_cmd(
        "stream", "--config", str(config), "--trigger", "available-now", disk_full_flag=disk_full_flag
    )
    proc = start(cmd, log)
    try:
        return proc.wait(timeout=timeout)
    finally:
        if proc.poll() is None:
            os.killpg(proc.pid, signal.SIGKILL)


def outputs(log: Path) -> tuple[str, str]:
    """(stdout, stderr) of a process started by :func:`start`."""
    return log.read_text(encoding="utf-8"), log.with_suffix(".err").read_text(encoding="utf-8")


def final_metrics(stdout: str) -> dict[str, Any]:
    """The bridge CLI's final metrics: the last stdout line, one JSON object."""
    lines = [line for line in stdout.splitlines() if line.startswith("{")]
    assert lines, f"no metrics line in the bridge's stdout: {stdout[-2000:]!r}"
    return dict(json.loads(lines[-1]))


def wait_until(condition: Callable[[], bool], timeout: float, what: str, poll: float = 0.5) -> None:
    """Poll ``condition`` until it holds; fail the test naming ``what`` after ``timeout`` seconds."""
    deadline = time.monotonic() + timeout
    while not condition():
        assert time.monotonic() < deadline, f"timed out after {timeout:.0f} s waiting for {what}"
        time.sleep(poll)


class Trickle(threading.Thread):
    """Sends bodies straight to moto a few at a time over ``seconds`` (traffic during the faults).

    With ``reserve``, the last ``reserve`` bodies are held back and sent one at a time,
    each when ``release()`` says traffic is wanted now (e.g. a fault window that only a
    delete can meet is open and the queue is empty); past ``deadline`` seconds they go
    without waiting. The traffic then follows the fault schedule's events, not the
    clock, however slow the machine.
    """

    def __init__(
        self,
        endpoint: str,
        queue_url: str,
        bodies: list[str],
        seconds: float,
        *,
        reserve: int = 0,
        release: Callable[[], bool] | None = None,
        deadline: float = 240.0,
    ) -> None:
        """Create the sender (``start()`` it; ``join()``; then read :attr:`ids`)."""
        super().__init__(daemon=True)
        self._args = (endpoint, queue_url, bodies, seconds)
        self._reserve = min(reserve, len(bodies)) if release is not None else 0
        self._release = release
        self._deadline = deadline
        self.ids: list[str] = []
        self.error: BaseException | None = None

    def run(self) -> None:
        """Send chunks of up to 3 bodies at even intervals, then the held-back ones as released."""
        endpoint, queue_url, bodies, seconds = self._args
        paced, held = bodies[: len(bodies) - self._reserve], bodies[len(bodies) - self._reserve :]
        chunks = [paced[i : i + 3] for i in range(0, len(paced), 3)]
        try:
            for chunk in chunks:
                self.ids += kit.send_all(endpoint, queue_url, chunk)
                time.sleep(seconds / max(1, len(chunks)))
            give_up = time.monotonic() + self._deadline
            for body in held:
                while self._release is not None and not self._release() and time.monotonic() < give_up:
                    time.sleep(0.1)
                self.ids += kit.send_all(endpoint, queue_url, [body])
        except BaseException as exc:  # surfaced by the test after join()
            self.error = exc


def bronze_count(lake: Path) -> dict[str, int]:
    """How many times each message id landed in bronze."""
    counts: dict[str, int] = {}
    for message_id in kit.bronze_message_ids(lake):
        counts[message_id] = counts.get(message_id, 0) + 1
    return counts


def _fail_while_flagged(flag: Path) -> None:
    """Make the local bronze store's writes fail with ENOSPC while ``flag`` exists."""
    from jobs.bridge.landing import LocalBronzeStore

    real_write = LocalBronzeStore.write

    def write(self: LocalBronzeStore, name: str, data: bytes) -> str:
        if flag.exists():
            with open(f"{flag}.count", "a", encoding="utf-8") as counter:
                counter.write(f"{name}\n")
            raise OSError(errno.ENOSPC, os.strerror(errno.ENOSPC), name)
        return real_write(self, name, data)

    LocalBronzeStore.write = write  # type: ignore[method-assign]


def main(argv: Sequence[str]) -> int:
    """Run ``silverline`` with the disk-full fault armed on ``argv[0]``.

    Args:
        argv: The flag file, then the ``silverline`` arguments.

    Returns:
        The CLI's exit code.
    """
    _fail_while_flagged(Path(argv[0]))
    from jobs.cli import main as silverline

    return int(silverline(list(argv[1:])) or 0)


if __name__ == "__main__":
    sys.exit(main(sys.argv[1:]))

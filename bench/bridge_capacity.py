"""Benchmark: SQS bridge capacity, messages/s into bronze and SQS requests per message.

Runs the real SqsBridge (configuration from --config via jobs.config, bronze store
in a temporary local directory) until its queue is drained, against

- moto's ThreadedMotoServer with about 1,000 messages: the functional ceiling
  of the local setup (moto itself is the bottleneck, tens to about a hundred
  msgs/s, and it shares this process), and
- the synthetic SQS endpoint (bench/sqs_endpoint.py, in its own process) with
  e.g. 50,000 seeded S3 notifications: the bridge's own ceiling,

for a few receiver counts and both SQS clients of the bridge (bridge.sqs_transport:
its lean JSON-protocol client, "direct", and botocore's, "boto3"). Each run
reports messages/s (messages over the time from start until the bridge had
deleted them all, i.e. landed durably first; the drain tail, which waits for
long polls to come back empty, is in the wall time), SQS requests per message
as the endpoint counted them and as the bridge's metrics did (they must agree),
and the CPU seconds of the bridge's process and of the endpoint's. It verifies
conservation: the bronze lines are exactly the messages sent (ids and bodies),
and the endpoint saw every message deleted exactly once.

    .venv/bin/python bench/bridge_capacity.py --messages 50000 --receivers 1 4 8

Prints the figures and writes them to bench/results/bridge_capacity.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import hashlib
import json
import logging
import os
import platform
import sys
import tempfile
import threading
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any
from urllib.parse import urlparse
from urllib.request import url2pathname

import boto3
from sqs_endpoint import endpoint_process, fetch_stats, message_id, notification_body  # bench/, beside this

from jobs.bridge import LocalBronzeStore, MetricsSnapshot, SqsBridge
from jobs.bridge.sqsapi import queue_backlog
from jobs.config import SilverlineConfig, load_config
from jobs.localaws import TEST_CREDENTIALS, local_aws

PROJECT = Path(__file__).resolve().parents[1]
#: Issue targets on the synthetic endpoint.
TARGET_MSGS_PER_S = 5000
TARGET_REQUESTS_PER_MESSAGE = 0.25
_WATCH_SECONDS = 0.02
_ACTION_METRIC = {
    "ReceiveMessage": "receive_calls",
    "DeleteMessageBatch": "delete_calls",
    "ChangeMessageVisibilityBatch": "visibility_calls",
    "GetQueueAttributes": "attribute_calls",
}


@dataclass(frozen=True)
class Run:
    """One measurement: which endpoint, how many receivers, which SQS client."""

    endpoint: str
    receivers: int
    transport: str


def bridge_config(
    args: argparse.Namespace, run: Run, lake: Path, endpoint: str, queue_url: str
) -> SilverlineConfig:
    """The configuration file with this run's queue, endpoint, lake, receivers and transport."""
    bridge = {"receivers": run.receivers, "sqs_transport": run.transport}
    overrides = {
        "lake": {"root": str(lake)},
        "sqs": {"queue_url": queue_url, "endpoint_url": endpoint},
        "bridge": {**bridge, "wait_time_seconds": args.wait_time_seconds},
    }
    return load_config(args.config, environ={}, overrides=overrides)


def read_bronze(store: LocalBronzeStore) -> tuple[int, dict[str, str]]:
    """(bronze lines, message id -> body digest) of everything the bridge landed."""
    lines = 0
    digests: dict[str, str] = {}
    for name in store.names():
        for line in store.read(name).splitlines():
            record = json.loads(line)
            lines += 1
            digests[record["message_id"]] = hashlib.sha1(record["body"].encode()).hexdigest()
    return lines, digests


def digests(bodies: dict[str, str]) -> dict[str, str]:
    """Message id -> body digest."""
    return {mid: hashlib.sha1(body.encode()).hexdigest() for mid, body in bodies.items()}


@functools.cache
def synthetic_digests(messages: int, seed: int) -> dict[str, str]:
    """Message id -> body digest of the synthetic endpoint's supply (the same for every run)."""
    return digests({message_id(i, seed): notification_body(i, seed) for i in range(messages)})


@dataclass(frozen=True)
class Drained:
    """What one drain measured.

    Attributes:
        snap: The bridge's final metrics.
        to_last_delete: Seconds from start until the bridge had deleted ``expected`` messages.
        wall: Seconds until ``run_until_empty`` returned (includes the drain tail).
        cpu: CPU seconds of this process (every thread) over the whole run.
        store: The bronze store.
    """

    snap: MetricsSnapshot
    to_last_delete: float | None
    wall: float
    cpu: float
    store: LocalBronzeStore


def drain(config: SilverlineConfig, expected: int) -> Drained:
    """Run a bridge until the queue is empty, noting when its deletions reach ``expected``."""
    store = LocalBronzeStore(Path(url2pathname(urlparse(config.ops_root).path)) / "bronze")
    bridge = SqsBridge(config, store=store)
    done: list[float] = []
    finished = threading.Event()

    def watch() -> None:
        while not finished.wait(_WATCH_SECONDS):
            if bridge.metrics().deleted >= expected:
                done.append(time.perf_counter())
                return

    watcher = threading.Thread(target=watch, name="bench-watch", daemon=True)
    started, cpu = time.perf_counter(), time.process_time()
    watcher.start()
    try:
        snap = bridge.run_until_empty()
    finally:
        finished.set()
        watcher.join()
    wall, cpu = time.perf_counter() - started, time.process_time() - cpu
    return Drained(snap, done[0] - started if done else None, wall, cpu, store)


def rates(messages: int, run: Drained) -> dict[str, Any]:
    """Messages/s up to the last deletion, and the run's wall time."""
    busy = run.to_last_delete
    return {
        "msgs_per_s": round(messages / busy, 1) if busy else None,
        "seconds_to_last_delete": round(busy, 2) if busy else None,
        "wall_seconds_incl_drain_tail": round(run.wall, 2),
    }


def conservation(store: LocalBronzeStore, sent: dict[str, str], snap: MetricsSnapshot) -> dict[str, Any]:
    """Bronze against what was sent (id -> body digest), and the bridge's own counts against each other."""
    lines, landed = read_bronze(store)
    return {
        "bronze_lines": lines,
        "distinct_messages_landed": len(landed),
        "bronze_bodies_equal_sent": landed == sent,
        "every_receipt_landed_once": lines == snap.received,
        "bridge_counts_balance": snap.received == snap.landed == snap.deleted and snap.held == 0,
    }


def synthetic_run(args: argparse.Namespace, run: Run, tmp: Path) -> dict[str, Any]:
    sent = synthetic_digests(args.messages, args.seed)
    with endpoint_process(args.messages, args.seed, args.latency_ms) as (endpoint, queue_url):
        before = fetch_stats(endpoint)
        lake = tmp / f"synthetic-{run.transport}-{run.receivers}"
        config = bridge_config(args, run, lake, endpoint, queue_url)
        run_ = drain(config, args.messages)
        stats = fetch_stats(endpoint)
    snap = run_.snap
    requests = sum(stats["requests"].values())
    row = {
        "endpoint": "synthetic",
        "receivers": run.receivers,
        "transport": run.transport,
        "messages": args.messages,
        **rates(args.messages, run_),
        "requests_per_message": round(requests / args.messages, 4),
        "bridge_requests_per_message": round(snap.requests_per_message, 4),
        "requests": stats["requests"],
        "bridge_cpu_seconds": round(run_.cpu, 2),
        "bridge_cpu_us_per_message": round(run_.cpu / args.messages * 1e6, 1),
        "endpoint_cpu_seconds": round(stats["cpu_seconds"] - before["cpu_seconds"], 2),
        "empty_receives": snap.empty_receives,
        "files": snap.files,
        "errors": dict(snap.errors),
    }
    row["requests_agree"] = all(
        stats["requests"].get(action, 0) == getattr(snap, metric) for action, metric in _ACTION_METRIC.items()
    )
    row["conservation"] = {
        **conservation(run_.store, sent, snap),
        "deleted_exactly_once": stats["deleted_once"] == args.messages,
        "deleted_more_than_once": stats["deleted_more_than_once"],
        "never_deleted": stats["never_deleted"],
        "left_in_queue": stats["available"] + stats["in_flight"],
        "redelivered": stats["redelivered"],
    }
    return row


def moto_run(args: argparse.Namespace, run: Run, tmp: Path) -> dict[str, Any]:
    bodies = [notification_body(i, args.seed) for i in range(args.moto_messages)]
    with local_aws() as endpoint:
        client = boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")
        queue_url = client.create_queue(QueueName="bench-events")["QueueUrl"]
        sent: dict[str, str] = {}
        for start in range(0, len(bodies), 10):
            chunk = bodies[start : start + 10]
            entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
            response = client.send_message_batch(QueueUrl=queue_url, Entries=entries)  # type: ignore[arg-type]
            sent.update({ok["MessageId"]: chunk[int(ok["Id"])] for ok in response["Successful"]})
        config = bridge_config(args, run, tmp / f"moto-{run.transport}-{run.receivers}", endpoint, queue_url)
        run_ = drain(config, len(sent))
        left = queue_backlog(client, queue_url)
    snap = run_.snap
    checks = conservation(run_.store, digests(sent), snap)
    # moto's SQS is not thread-safe: parallel receives can hand a message out twice
    # (each receipt then lands once and is deleted); lines above the sent count are those.
    checks["moto_double_deliveries"] = snap.received - len(sent)
    checks["left_in_queue"] = left
    return {
        "endpoint": "moto",
        "receivers": run.receivers,
        "transport": run.transport,
        "messages": len(sent),
        **rates(len(sent), run_),
        "bridge_requests_per_message": round(snap.requests_per_message, 4),
        "bridge_requests": {
            action: getattr(snap, metric)
            for action, metric in _ACTION_METRIC.items()
            if getattr(snap, metric)
        },
        "process_cpu_seconds_incl_moto": round(run_.cpu, 2),
        "empty_receives": snap.empty_receives,
        "files": snap.files,
        "errors": dict(snap.errors),
        "conservation": checks,
    }


def passed(row: dict[str, Any]) -> bool:
    """Whether a run conserved every message (and, on the synthetic endpoint, counted right)."""
    checks = row["conservation"]
    common = (
        checks["bronze_bodies_equal_sent"]
        and checks["every_receipt_landed_once"]
        and checks["bridge_counts_balance"]
        and checks["left_in_queue"] == 0
    )
    if row["endpoint"] == "moto":
        return bool(common)
    return bool(
        common
        and checks["bronze_lines"] == row["messages"]
        and checks["deleted_exactly_once"]
        and row["requests_agree"]
    )


def summary(row: dict[str, Any]) -> str:
    rpm = row.get("requests_per_message", row["bridge_requests_per_message"])
    cpu = row.get("bridge_cpu_seconds", row.get("process_cpu_seconds_incl_moto"))
    return (
        f"{row['endpoint']:>9} {row['transport']:>6} receivers={row['receivers']:<2} "
        f"messages={row['messages']:<6} "
        f"{row['msgs_per_s']} msgs/s  {rpm} req/msg  cpu={cpu}s  "
        f"conservation={'ok' if passed(row) else 'FAILED'}"
    )


class _HelpFormatter(argparse.RawDescriptionHelpFormatter, argparse.ArgumentDefaultsHelpFormatter):
    """The module docstring as written, and every option's default."""


def parse_args(argv: Sequence[str] | None) -> argparse.Namespace:
    parser = argparse.ArgumentParser(description=__doc__, formatter_class=_HelpFormatter)
    parser.add_argument("--messages", type=int, default=50_000, help="messages on the synthetic endpoint")
    parser.add_argument(
        "--receivers", type=int, nargs="+", default=[1, 4, 8], help="receiver counts (synthetic endpoint)"
    )
    parser.add_argument("--moto-messages", type=int, default=1000, help="messages on moto (0: skip moto)")
    parser.add_argument("--moto-receivers", type=int, nargs="+", default=[4], help="receiver counts (moto)")
    parser.add_argument(
        "--transports",
        nargs="+",
        choices=["direct", "boto3"],
        default=["direct", "boto3"],
        help="bridge.sqs_transport values measured on the synthetic endpoint (moto: the first)",
    )
    parser.add_argument("--seed", type=int, default=7, help="seed of the synthetic notifications")
    parser.add_argument(
        "--latency-ms",
        type=float,
        default=0.0,
        help="added by the synthetic endpoint to every request, to mimic the round trip to a real SQS "
        "(then receiver counts matter)",
    )
    parser.add_argument(
        "--config",
        default=str(PROJECT / "conf" / "local.yaml"),
        help="the silverline configuration (its bridge section is what is measured)",
    )
    parser.add_argument(
        "--wait-time-seconds",
        type=int,
        default=2,
        help="bridge.wait_time_seconds override: only the drain tail (polls coming back empty) "
        "depends on it, so a short one keeps runs short",
    )
    parser.add_argument("--log-level", default="WARNING", help="the bridge's log level")
    parser.add_argument(
        "--out",
        default=str(PROJECT / "bench" / "results" / "bridge_capacity.json"),
        help="results file (JSON)",
    )
    return parser.parse_args(argv)


def main(argv: Sequence[str] | None = None) -> int:
    args = parse_args(argv)
    os.environ.update(TEST_CREDENTIALS)  # every endpoint here is local: never sign with real credentials
    logging.basicConfig(level=logging.WARNING, format="%(asctime)s %(levelname)s %(name)s: %(message)s")
    logging.getLogger("jobs").setLevel(args.log_level)
    logging.getLogger("werkzeug").setLevel(logging.WARNING)  # moto's server logs every request
    runs = [Run("moto", r, args.transports[0]) for r in (args.moto_receivers if args.moto_messages else [])]
    runs += [Run("synthetic", r, t) for t in args.transports for r in args.receivers]
    rows = []
    for run in runs:
        with tempfile.TemporaryDirectory(prefix="bridge-bench-") as tmp:  # one lake per run
            row = (moto_run if run.endpoint == "moto" else synthetic_run)(args, run, Path(tmp))
        rows.append(row)
        print(summary(row), flush=True)
    synthetic = [r for r in rows if r["endpoint"] == "synthetic"]
    best = max(synthetic, key=lambda r: r["msgs_per_s"] or 0, default=None)
    report = {
        "command": "python bench/bridge_capacity.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        "bridge_settings": {
            **load_config(args.config, environ={}).bridge.model_dump(exclude={"receivers", "sqs_transport"}),
            "wait_time_seconds": args.wait_time_seconds,
        },
        "synthetic_latency_ms": args.latency_ms,
        "targets": {"msgs_per_s": TARGET_MSGS_PER_S, "requests_per_message": TARGET_REQUESTS_PER_MESSAGE},
        "targets_met_on_synthetic": bool(
            best
            and best["msgs_per_s"] >= TARGET_MSGS_PER_S
            and best["requests_per_message"] <= TARGET_REQUESTS_PER_MESSAGE
        ),
        "all_conserved": all(passed(r) for r in rows),
        "runs": rows,
    }
    out = Path(args.out)
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print(f"wrote {out.relative_to(PROJECT) if out.is_relative_to(PROJECT) else out.name}")
    return 0 if report["all_conserved"] else 1


if __name__ == "__main__":
    raise SystemExit(main())

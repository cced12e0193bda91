"""Helpers for end-to-end stream tests: a queue on moto, a config file, a job run, readers."""

from __future__ import annotations

import contextlib
import io
import json
import logging
import os
import subprocess
import sys
import time
import uuid
from pathlib import Path
from typing import Any
from unittest import mock

import boto3
import pyarrow as pa
import yaml

PROJECT = Path(__file__).resolve().parents[1]


def sqs_client(endpoint: str) -> Any:
    return boto3.client("sqs", endpoint_url=endpoint, region_name="us-east-1")


def make_queue(endpoint: str, max_receive_count: int = 5) -> tuple[str, str]:
    """A fresh queue with a DLQ and a redrive policy; returns (queue URL, DLQ URL)."""
    sqs = sqs_client(endpoint)
    name = f"q-{uuid.uuid4().hex[:10]}"
    dlq_url = sqs.create_queue(QueueName=f"{name}-dlq")["QueueUrl"]
    dlq_arn = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=["QueueArn"])["Attributes"][
        "QueueArn"
    ]
    redrive = json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": str(max_receive_count)})
    url = sqs.create_queue(QueueName=name, Attributes={"RedrivePolicy": redrive, "VisibilityTimeout": "30"})[
        "QueueUrl"
    ]
    return url, dlq_url


def send_all(endpoint: str, queue_url: str, bodies: list[str]) -> list[str]:
    """Send bodies in batches of 10; returns the message ids in order."""
    sqs = sqs_client(endpoint)
    ids: list[str] = []
    for start in range(0, len(bodies), 10):
        chunk = bodies[start : start + 10]
        entries = [{"Id": str(i), "MessageBody": body} for i, body in enumerate(chunk)]
        result = sqs.send_message_batch(QueueUrl=queue_url, Entries=entries)
        assert not result.get("Failed"), result.get("Failed")
        ids += [r["MessageId"] for r in sorted(result["Successful"], key=lambda r: int(r["Id"]))]
    return ids


def write_config(
    tmp: Path,
    lake: Path,
    endpoint: str,
    queue_url: str,
    *,
    bridge: dict[str, Any] | None = None,
    **stream: Any,
) -> Path:
    config = {
        "mode": "local",
        "group": {"name": "e2e", "bucket": "demo-lake"},
        "lake": {"root": str(lake)},
        "aws": {"region": "us-east-1", "endpoint_url": endpoint},
        "sqs": {"queue_url": queue_url},
        "bridge": {
            "receivers": 2,
            "wait_time_seconds": 1,
            "flush_interval_seconds": 1,
            "flush_max_messages": 50,
            **(bridge or {}),
        },
        "stream": {
            "datasets_file": str(PROJECT / "conf" / "datasets.yaml"),
            "max_files_per_trigger": 2,
            **stream,
        },
        "spark": {
            "master": "local[2]",
            "defaults_file": str(PROJECT / "conf" / "spark" / "local.conf"),
            "conf": {"spark.sql.shuffle.partitions": "2", "spark.driver.memory": "1g"},
        },
    }
    path = tmp / "silverline.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def job_env() -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("SILVERLINE__")}
    env.setdefault("AWS_ACCESS_KEY_ID", "testing")
    env.setdefault("AWS_SECRET_ACCESS_KEY", "testing")
    return env


def run_job(config: Path, *args: str, timeout: float = 420) -> subprocess.CompletedProcess[str]:
    """Run ``silverline stream`` in its own process (its own JVM)."""
    cmd = [sys.executable, "-m", "jobs", "stream", "--config", str(config), *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=job_env(), check=False)


def run_command(
    config: Path, command: str, *args: str, timeout: float = 420
) -> subprocess.CompletedProcess[str]:
    """Run ``silverline <command> --config <config> ...`` in its own process."""
    cmd = [sys.executable, "-m", "jobs", command, *args, "--config", str(config)]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=timeout, env=job_env(), check=False)


def run_here(spark: Any, config: Path, command: str, *args: str) -> subprocess.CompletedProcess[str]:
    """Run ``silverline <command> --config <config> ...`` in this process, on the test session's Spark.

    For scenarios where a process boundary is not what is tested (no kill, no restart, no
    environment of its own): a job run then costs no JVM start, no imports and no cold first
    batch. Each run gets a catalog name of its own, so it loads the tables afresh as a new
    process would (a loaded catalog caches its tables). Log lines and printed output come back
    as a finished process's stderr and stdout.

    Args:
        spark: The session fixture (the job's session factory returns it).
        config: The config file.
        command: The subcommand (``stream``, ``backfill``, ...).
        *args: Further arguments.
    """
    from jobs.cli import build_parser, run_parsed
    from jobs.logs import _FORMAT, QUIET_LOGGERS

    assert spark is not None  # the runs below reuse it
    argv = [command, "--config", str(config), *args]
    parsed = build_parser().parse_args(argv)
    out, err = io.StringIO(), io.StringIO()
    handler = logging.StreamHandler(err)
    handler.setFormatter(logging.Formatter(_FORMAT))
    root = logging.getLogger()
    level = root.level
    root.addHandler(handler)
    root.setLevel(logging.INFO)
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(logging.WARNING)
    catalog = {"SILVERLINE__CATALOG__NAME": f"run{uuid.uuid4().hex[:10]}"}
    try:
        with (
            mock.patch.dict(os.environ, catalog),
            contextlib.redirect_stdout(out),
            contextlib.redirect_stderr(err),
        ):
            code = run_parsed(parsed)
    finally:
        root.removeHandler(handler)
        root.setLevel(level)
    return subprocess.CompletedProcess(argv, code, out.getvalue(), err.getvalue())


def start_job(config: Path, *args: str, log: Path) -> subprocess.Popen[bytes]:
    cmd = [sys.executable, "-m", "jobs", "stream", "--config", str(config), *args]
    handle = log.open("ab")
    return subprocess.Popen(
        cmd, stdout=handle, stderr=subprocess.STDOUT, env=job_env(), start_new_session=True
    )


def latest_metadata(table_dir: Path) -> Path | None:
    files = list((table_dir / "metadata").glob("v*.metadata.json"))
    if not files:
        return None
    return max(files, key=lambda p: int(p.name.split(".")[0][1:]))


def read_table(table_dir: Path) -> pa.Table | None:
    """Read an Iceberg table with pyiceberg (independent of Spark); None if it does not exist."""
    from pyiceberg.table import StaticTable

    metadata = latest_metadata(table_dir)
    if metadata is None:
        return None
    return StaticTable.from_metadata(str(metadata)).scan().to_arrow()


def silver_dir(lake: Path, tenant: str, dataset: str, bucket: str = "demo-lake") -> Path:
    return lake / bucket / tenant / "silver" / dataset


def ops_dir(lake: Path, table: str, group: str = "e2e") -> Path:
    return lake / "_ops" / group / "tables" / "ops" / table


def silver_rows(
    lake: Path, tenant: str, dataset: str, columns: list[str], bucket: str = "demo-lake"
) -> list[tuple[Any, ...]]:
    table = read_table(silver_dir(lake, tenant, dataset, bucket))
    if table is None:
        return []
    return sorted((tuple(r[c] for c in columns) for r in table.select(columns).to_pylist()), key=repr)


def queue_counts(endpoint: str, url: str) -> int:
    attrs = sqs_client(endpoint).get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"]
    return int(attrs["ApproximateNumberOfMessages"]) + int(attrs["ApproximateNumberOfMessagesNotVisible"])


def bronze_message_ids(lake: Path, group: str = "e2e") -> list[str]:
    ids = []
    for path in (lake / "_ops" / group / "bronze").rglob("*.jsonl"):
        if "_tmp" in path.parts:
            continue
        ids += [
            json.loads(line)["message_id"] for line in path.read_text(encoding="utf-8").splitlines() if line
        ]
    return ids


def assert_balanced(rows: list[dict[str, Any]]) -> None:
    """R7 per batch: the outcomes (listed here by hand, independently of the job) add up."""
    outcomes = (
        "applied",
        "duplicate",
        "stale",
        "ignored",
        "test",
        "parked",
        "quarantined",
        "rejected",
        "deferred",
        "dropped",
    )
    for row in rows:
        total = sum(row[o] for o in outcomes)
        assert total == row["records_in"] + row["retried_in"], row


def wait_for(check: Any, timeout: float, what: str) -> None:
    """Call ``check`` every 2 s until it stops raising AssertionError; fail after ``timeout`` s."""
    deadline = time.monotonic() + timeout
    last: Any = None
    while time.monotonic() < deadline:
        try:
            check()
            return
        except AssertionError as exc:
            last = exc
        time.sleep(2)
    raise AssertionError(f"{what} within {timeout:.0f} s: {last}")

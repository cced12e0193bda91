"""Shared parts of the end-to-end benchmarks: a seeded lake, bronze lines, the job, its metrics.

The workload is what the simulator's tenants upload most: small orders CSV files
(about 50 rows each) under ``<tenant>/raw/orders/``, one S3 ``ObjectCreated:Put``
notification per file with a sequencer, landed in the bronze log exactly as the
SQS bridge writes it. The job runs as ``silverline stream --no-bridge`` in its own
process (its own JVM), and the figures come from the batch metrics it writes.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import subprocess
import sys
import time
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import yaml

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from jobs.config import SilverlineConfig

PROJECT = Path(__file__).resolve().parents[1]
RESULTS = PROJECT / "bench" / "results"
BUCKET = "bench-lake"
GROUP = "bench"
SEQUENCER_BASE = 0x5500000000000000


def orders_csv(rng: random.Random, n_rows: int, file_no: int) -> bytes:
    """One orders CSV file: header and ``n_rows`` valid rows."""
    lines = ["order_id,customer_id,amount,currency,order_ts"]
    for i in range(n_rows):
        ts = dt.datetime(2024, 3, 1 + i % 5, rng.randint(0, 23), rng.randint(0, 59), tzinfo=dt.UTC)
        lines.append(f"{file_no * 1000 + i},c{rng.randint(1, 500)},{rng.randint(100, 99999) / 100:.2f},EUR,"
                     f"{ts.strftime('%Y-%m-%dT%H:%M:%SZ')}")  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


def stamp(when: dt.datetime) -> str:
    """An S3-style event time: ``2024-03-01T12:00:00.000Z``."""
    return when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"


def notification(key: str, data: bytes, sequencer: int, when: dt.datetime) -> str:
    """The S3 notification body for one uploaded object."""
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": stamp(when),
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": BUCKET},
            "object": {
                "key": key,
                "size": len(data),
                "eTag": hashlib.md5(data).hexdigest(),
                "sequencer": f"{sequencer:018X}",
            },
        },
    }
    return json.dumps({"Records": [record]})


def bronze_line(n: int, body: str, when: dt.datetime) -> str:
    """One bronze log line, as the bridge lands it."""
    line: dict[str, Any] = {"message_id": f"m-{n}", "queue_url": "bench", "body": body}
    line["received_at"] = stamp(when)
    line.update({"receive_count": 1, "sent_at": stamp(when), "bridge_id": "bench"})
    return json.dumps(line)


def object_key(n: int, tenants: int) -> str:
    """The key of file ``n``: tenants take turns."""
    return f"tenant{n % tenants:03d}/raw/orders/2024/03/{n:06d}.csv"


def write_objects(lake: Path, files: int, tenants: int, rows: int) -> list[tuple[str, bytes]]:
    """Write ``files`` seeded orders files into the lake; returns (key, bytes) in file order."""
    rng = random.Random(42)
    written = []
    for n in range(files):
        key = object_key(n, tenants)
        data = orders_csv(rng, rows, n)
        path = lake / BUCKET / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        written.append((key, data))
    return written


def add_workload_arguments(parser: argparse.ArgumentParser, *, files: int, max_files: int) -> None:
    """The backlog's options: files, tenants, rows per file, messages per bronze file, files per batch."""
    parser.add_argument("--files", type=int, default=files, help="orders CSV files uploaded before the start")
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--rows", type=int, default=50, help="rows per CSV file")
    parser.add_argument("--per-bronze-file", type=int, default=100, help="messages per bronze file")
    parser.add_argument("--max-files-per-trigger", type=int, default=max_files, help="bronze files per batch")


def bronze_dir(lake: Path, when: dt.datetime) -> Path:
    """The bronze partition directory of a day."""
    path = lake / "_ops" / GROUP / "bronze" / f"dt={when:%Y-%m-%d}"
    path.mkdir(parents=True, exist_ok=True)
    return path


def land(lake: Path, objects: Sequence[tuple[str, bytes]], first: int, when: dt.datetime, name: str) -> None:
    """Land one bronze file with a notification per object (numbered from ``first``)."""
    lines = [
        bronze_line(first + i, notification(key, data, SEQUENCER_BASE + first + i, when), when)
        for i, (key, data) in enumerate(objects)
    ]
    target = bronze_dir(lake, when) / name
    tmp = target.with_name("." + target.name + ".tmp")
    tmp.write_text("\n".join(lines) + "\n")
    os.replace(tmp, target)  # the file source must never see half a file


def build_backlog(lake: Path, files: int, tenants: int, rows: int, per_bronze_file: int) -> None:
    """Objects and their notifications, all landed before the job starts."""
    objects = write_objects(lake, files, tenants, rows)
    now = dt.datetime.now(dt.UTC)
    for start in range(0, files, per_bronze_file):
        land(lake, objects[start : start + per_bronze_file], start, now, f"{start:09d}-bench.jsonl")


def write_config(
    tmp: Path, lake: Path, max_files: int, spark_conf: dict[str, str] | None = None, master: str = "local[2]"
) -> Path:
    """The job's YAML configuration for a benchmark lake."""
    config: dict[str, Any] = {
        "group": {"name": GROUP, "bucket": BUCKET},
        "lake": {"root": str(lake)},
        "stream": {
            "datasets_file": str(PROJECT / "conf" / "datasets.yaml"),
            "max_files_per_trigger": max_files,
        },
        "spark": {"master": master, "defaults_file": str(PROJECT / "conf" / "spark" / "local.conf")},
    }
    if spark_conf:
        config["spark"]["conf"] = spark_conf
    path = tmp / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def job_command(config: Path, trigger: str, log_level: str) -> list[str]:
    """``silverline stream --no-bridge`` in a fresh interpreter."""
    return [sys.executable, "-m", "jobs", "--log-level", log_level, "stream", "--config", str(config),
            "--no-bridge", "--trigger", trigger]  # fmt: skip


def run_job(config: Path, *, log_path: Path | None = None) -> float:
    """Run the job with ``--trigger available-now`` until the backlog is done; returns wall seconds."""
    return run_job_sampled(config, log_path=log_path)[0]


def run_job_sampled(config: Path, *, log_path: Path | None = None) -> tuple[float, dict[str, float]]:
    """:func:`run_job`, and the peak resident memory (MB) of the driver, the JVM and the Python workers.

    Sampled every second (:class:`RssSampler`): a shorter peak can be missed.
    """
    started = time.perf_counter()
    level = "INFO" if log_path else "WARNING"
    job = subprocess.Popen(
        job_command(config, "available-now", level),
        stdout=subprocess.DEVNULL,
        stderr=subprocess.PIPE,
        text=True,
    )
    sampler = RssSampler(job.pid, every=1.0)
    _, stderr = job.communicate()
    memory = sampler.stop()
    wall = time.perf_counter() - started
    if log_path:
        log_path.write_text(stderr)
    if job.returncode != 0:
        raise RuntimeError(f"the job failed ({job.returncode}):\n{stderr[-3000:]}")
    peaks = {kind: float(value["peak_mb"]) for kind, value in memory.items() if isinstance(value, dict)}
    return wall, peaks


def read_ops_table(lake: Path, name: str, columns: Sequence[str] | None = None) -> list[dict[str, Any]]:
    """The rows of one of the job's ops tables, read with pyiceberg from its newest metadata.

    Raises:
        FileNotFoundError: The job has not created the table (yet).
    """
    from jobs.config import load_config
    from jobs.lakeread import read_iceberg

    table_dir = lake / "_ops" / GROUP / "tables" / "ops" / name
    rows = read_iceberg(
        table_dir, load_config(None, environ={}, overrides={"lake": {"root": str(lake)}}), columns
    )
    if rows is None:
        raise FileNotFoundError(f"no ops table {name} under {lake}")
    found: list[dict[str, Any]] = rows.to_pylist()
    return found


def read_metrics(lake: Path) -> list[dict[str, Any]]:
    """Every batch-metrics row the job wrote, oldest batch first (read with pyiceberg)."""
    rows = read_ops_table(lake, "batch_metrics")
    for row in rows:
        row["details"] = json.loads(row["details"])
    return sorted(rows, key=lambda r: r["started_at"])


PHASES = ("source", "parse", "judge", "read", "validate", "commit", "ledger")


def phase_seconds(rows: Sequence[dict[str, Any]]) -> dict[str, float]:
    """Seconds per batch phase summed over batches, and ``other`` (the rest of the batch time)."""
    phases = {k: sum(r["details"]["phase_seconds"].get(k, 0.0) for r in rows) for k in PHASES}
    total = sum(batch_seconds(r) for r in rows)
    phases["other"] = max(0.0, total - sum(phases.values()))
    return {k: round(v, 2) for k, v in phases.items()}


def batch_seconds(row: dict[str, Any]) -> float:
    """One batch's duration."""
    return float((row["finished_at"] - row["started_at"]).total_seconds())


def machine() -> dict[str, Any]:
    """What the figures were measured on."""
    import platform

    return {"python": platform.python_version(), "cpus": os.cpu_count(), "load_average": os.getloadavg()}


def save(name: str, result: dict[str, Any], out: str | None = None) -> Path:
    """Print ``result`` and write it to ``bench/results/<name>.json`` (or ``out``)."""
    print(json.dumps(result, indent=2, default=str))
    return write_results(result, out or RESULTS / f"{name}.json")


def write_results(result: dict[str, Any], out: str | Path) -> Path:
    """Write a benchmark's figures as JSON and say where (relative to the project when inside it)."""
    path = Path(out)
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(json.dumps(result, indent=2, default=str) + "\n")
    where = path.resolve()
    print(f"wrote {where.relative_to(PROJECT) if where.is_relative_to(PROJECT) else path.name}")
    return path


def spark_session(
    config_file: str, master: str, defaults_file: str, lake: Path
) -> tuple[SparkSession, SilverlineConfig]:
    """A session from the project's factory, as the local job builds it (lake in a temp dir)."""
    from jobs.config import load_config
    from jobs.session import build_spark_session

    overrides = {
        "group": {"bucket": BUCKET},
        "lake": {"root": str(lake)},
        "spark": {"master": master, "defaults_file": defaults_file},
    }
    config = load_config(config_file, overrides=overrides)
    return build_spark_session(config), config


def command_line() -> str:
    """How this benchmark was run, relative to the project root."""
    script = Path(sys.argv[0]).resolve()
    try:
        shown = script.relative_to(PROJECT)
    except ValueError:
        shown = Path(script.name)
    return " ".join(["python", str(shown), *sys.argv[1:]])


def _children(pid: int) -> list[int]:
    """Every descendant of ``pid`` (Linux ``/proc``)."""
    parents: dict[int, int] = {}
    for stat in Path("/proc").glob("[0-9]*/stat"):
        try:
            fields = stat.read_text().rsplit(")", 1)[1].split()
            parents[int(stat.parent.name)] = int(fields[1])
        except (OSError, IndexError, ValueError):
            continue
    found, frontier = [], [pid]
    while frontier:
        parent = frontier.pop()
        kids = [child for child, ppid in parents.items() if ppid == parent]
        found += kids
        frontier += kids
    return found


def rss_by_kind(pid: int) -> dict[str, int]:
    """Resident memory (bytes) of a job process tree: the Python driver, the JVM, Python workers."""
    totals = {"python_driver": 0, "jvm": 0, "python_workers": 0}
    for each in [pid, *_children(pid)]:
        try:
            status = Path(f"/proc/{each}/status").read_text()
            name = Path(f"/proc/{each}/comm").read_text().strip()
        except OSError:
            continue
        rss = next(
            (int(line.split()[1]) * 1024 for line in status.splitlines() if line.startswith("VmRSS:")), 0
        )
        kind = "python_driver" if each == pid else ("jvm" if name == "java" else "python_workers")
        totals[kind] += rss
    return totals


class RssSampler:
    """Samples a job's resident memory every few seconds on a thread (Linux only)."""

    def __init__(self, pid: int, every: float = 5.0) -> None:
        """Start sampling ``pid`` and its descendants."""
        import threading

        self.samples: list[tuple[float, dict[str, int]]] = []
        self._pid, self._every = pid, every
        self._stop = threading.Event()
        self._thread = threading.Thread(target=self._run, daemon=True)
        self._thread.start()

    def _run(self) -> None:
        started = time.monotonic()
        while not self._stop.wait(self._every):
            self.samples.append((time.monotonic() - started, rss_by_kind(self._pid)))

    def stop(self) -> dict[str, Any]:
        """Stop; the first, second and last minute's average and the peak per kind, in MB.

        The first minute includes the JVM's start; compare the second with the last.
        """
        self._stop.set()
        self._thread.join()
        if not self.samples:
            return {}
        end = self.samples[-1][0]
        summary: dict[str, Any] = {"samples": len(self.samples), "seconds": round(end, 1)}
        for kind in self.samples[0][1]:
            first = [s[kind] for t, s in self.samples if t <= 60]
            second = [s[kind] for t, s in self.samples if 60 < t <= 120] or first  # after JVM start
            last = [s[kind] for t, s in self.samples if t >= end - 60]
            summary[kind] = {
                "first_minute_mb": round(sum(first) / len(first) / 1e6, 1),
                "second_minute_mb": round(sum(second) / len(second) / 1e6, 1),
                "last_minute_mb": round(sum(last) / len(last) / 1e6, 1),
                "peak_mb": round(max(s[kind] for _, s in self.samples) / 1e6, 1),
            }
        return summary

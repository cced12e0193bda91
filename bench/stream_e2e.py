"""Benchmark (a): bronze -> committed silver, end to end, small CSV files across tenants.

Two modes, each running ``silverline stream --no-bridge`` in its own process:

``backlog`` (default)
    N files for T tenants are uploaded and their notifications landed in bronze
    before the job starts; the job drains them with ``--trigger available-now`` in
    micro-batches of ``--max-files-per-trigger`` bronze files. Reports events/s
    inside batches, sustained events/s (from the second batch's start to the last
    batch's end, so JVM start and the first batch's warm-up are out), and where
    the batch time goes (phases).

``--rate R --duration S``
    The job runs with ``--trigger interval=<I>s``; a feeder lands R notifications
    per second for S seconds (event time = landing time), then the job is stopped
    with the stop marker once it has caught up. Freshness is exact: for every
    object, the ledger's commit time minus its event time (p50/p95/max).

``--soak``
    The steady mode for 10 minutes (default 100 events/s). The job's resident
    memory (Python driver, JVM, Python workers) is sampled every 5 s throughout,
    and the first and last minute are compared. Not part of CI.

    python bench/stream_e2e.py --files 15000 --tenants 10 --max-files-per-trigger 30
    python bench/stream_e2e.py --rate 150 --duration 90 --tenants 10
    python bench/stream_e2e.py --soak

Prints the figures and writes bench/results/stream_e2e[_rate|_soak].json.
"""

from __future__ import annotations

import argparse
import contextlib
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchkit as kit


def backlog(args: argparse.Namespace, tmp: Path, master: str = "local[2]") -> dict[str, Any]:
    """Drain a landed backlog; figures from the batch metrics."""
    lake = tmp / "lake"
    kit.build_backlog(lake, args.files, args.tenants, args.rows, args.per_bronze_file)
    config = kit.write_config(tmp, lake, args.max_files_per_trigger, master=master)
    wall, memory = kit.run_job_sampled(config, log_path=Path(args.job_log) if args.job_log else None)
    rows = kit.read_metrics(lake)
    applied = sum(r["applied"] for r in rows)
    in_batches = sum(kit.batch_seconds(r) for r in rows)
    result: dict[str, Any] = {
        "mode": "backlog",
        "master": master,
        "files": args.files,
        "tenants": args.tenants,
        "rows_per_file": args.rows,
        "events_per_batch": args.max_files_per_trigger * args.per_bronze_file,
        "batches": len(rows),
        "applied_events": applied,
        "rows_written": sum(r["rows_written"] for r in rows),
        "wall_seconds_incl_jvm_start": round(wall, 1),
        "batch_seconds": round(in_batches, 1),
        "events_per_s_in_batches": round(applied / in_batches, 1) if in_batches else None,
        "events_per_s_wall": round(applied / wall, 1),
        "all_batches_balanced": all(r["details"]["balanced"] for r in rows),
        "phase_seconds": kit.phase_seconds(rows),
        "batch_seconds_each": [round(kit.batch_seconds(r), 2) for r in rows],
        "peak_rss_mb": memory,  # sampled every second: driver (Python), JVM, Python workers
    }
    if len(rows) > 1:
        later = rows[1:]
        span = (later[-1]["finished_at"] - later[0]["started_at"]).total_seconds()
        result["sustained_events_per_s"] = round(sum(r["applied"] for r in later) / span, 1)
        result["sustained_files_per_s"] = round(sum(r["files_read"] for r in later) / span, 1)
        result["phase_seconds_after_first_batch"] = kit.phase_seconds(later)
    return result


def by_master(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """The same backlog drained once per Spark master, one after the other (R12: work in tasks)."""
    runs = {}
    for master in args.masters:
        work = tmp / master.replace("[", "-").replace("]", "").replace("*", "all")
        work.mkdir()
        run = runs[master] = backlog(args, work, master)
        rate = run["events_per_s_in_batches"]
        print(f"{master}: {rate} events/s in batches, read+validate {_read_validate(run):.1f} s")
    first, last = runs[args.masters[0]], runs[args.masters[-1]]
    ratio = {
        "events_per_s_in_batches": _ratio(last["events_per_s_in_batches"], first["events_per_s_in_batches"]),
        "read_and_validate_seconds": _ratio(_read_validate(first), _read_validate(last)),
    }
    name = f"ratio_{args.masters[-1]}_over_{args.masters[0]}"
    print(f"{name}: {ratio}")
    return {"mode": "backlog_by_master", "runs": runs, name: ratio}


def _read_validate(run: dict[str, Any]) -> float:
    phases = run["phase_seconds"]
    return float(phases.get("read", 0.0)) + float(phases.get("validate", 0.0))


def _ratio(a: float | None, b: float | None) -> float | None:
    return None if not a or not b else round(a / b, 2)


def wait_for(path: Path, text: str, timeout: float, job: subprocess.Popen[str]) -> None:
    """Wait until ``text`` appears in the job's log file."""
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if path.exists() and text in path.read_text(errors="replace"):
            return
        if job.poll() is not None:
            raise RuntimeError(f"the job exited early:\n{path.read_text()[-3000:]}")
        time.sleep(0.5)
    raise RuntimeError(f"no {text!r} in the job's log after {timeout:.0f}s")


def steady_rate(args: argparse.Namespace, tmp: Path) -> dict[str, Any]:
    """Feed R events/s for S seconds into a running job; exact freshness from the ledger."""
    from jobs.config import load_config
    from jobs.stream.control import request_stop

    lake = tmp / "lake"
    total = args.rate * args.duration
    objects = kit.write_objects(lake, total, args.tenants, args.rows)
    config_path = kit.write_config(tmp, lake, args.max_files_per_trigger)
    log_path = Path(args.job_log) if args.job_log else tmp / "job.log"
    with log_path.open("w") as log_file:
        cmd = kit.job_command(config_path, f"interval={args.interval}s", "INFO")
        job = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=log_file, text=True)
        sampler = kit.RssSampler(job.pid)
        try:
            wait_for(log_path, "ingest query", 180, job)
            fed_from = time.monotonic()
            for second in range(args.duration):  # one bronze file per second, R events each
                due = fed_from + second
                time.sleep(max(0.0, due - time.monotonic()))
                now = dt.datetime.now(dt.UTC)
                chunk = objects[second * args.rate : (second + 1) * args.rate]
                kit.land(lake, chunk, second * args.rate, now, f"{second:09d}-feed.jsonl")
            fed_seconds = time.monotonic() - fed_from
            applied = wait_until_applied(lake, total, args.drain_timeout)
            memory = sampler.stop()
            request_stop(load_config(str(config_path)), reason="benchmark done")
            job.wait(timeout=120)
        finally:
            if job.poll() is None:
                job.kill()
    ledger = kit.read_ops_table(lake, "ledger", ("key", "event_time", "updated_at"))
    delays = sorted((r["updated_at"] - r["event_time"]).total_seconds() for r in ledger)
    rows = kit.read_metrics(lake)
    return {
        "mode": "rate",
        "rate_events_per_s": args.rate,
        "duration_s": args.duration,
        "feed_seconds": round(fed_seconds, 1),
        "tenants": args.tenants,
        "trigger_interval_s": args.interval,
        "events_fed": total,
        "events_applied": applied,
        "batches": len(rows),
        "freshness_s": {
            "p50": round(_rank(delays, 0.50), 2),
            "p95": round(_rank(delays, 0.95), 2),
            "max": round(delays[-1], 2),
            "mean": round(statistics.fmean(delays), 2),
        },
        "batch_seconds_median": round(statistics.median(kit.batch_seconds(r) for r in rows), 2),
        "phase_seconds": kit.phase_seconds(rows),
        "all_batches_balanced": all(r["details"]["balanced"] for r in rows),
        "rss": memory,
    }


def wait_until_applied(lake: Path, total: int, timeout: float) -> int:
    """Poll the batch metrics until every fed event is applied (or time is up); returns the count."""
    deadline = time.monotonic() + timeout
    applied = 0
    while time.monotonic() < deadline:
        with contextlib.suppress(ValueError, OSError):  # no metrics yet, or a commit in flight
            applied = sum(r["applied"] for r in kit.read_metrics(lake))
        if applied >= total:
            return applied
        time.sleep(2)
    return applied


def _rank(ordered: list[float], p: float) -> float:
    return ordered[max(0, int(-(-p * len(ordered) // 1)) - 1)]


def main() -> int:
    """Run one mode and write its figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    kit.add_workload_arguments(parser, files=15000, max_files=50)
    parser.add_argument("--rate", type=int, help="steady mode: events per second fed while the job runs")
    parser.add_argument("--duration", type=int, default=120, help="steady mode: seconds of feeding")
    parser.add_argument("--interval", type=int, default=5, help="steady mode: trigger interval in seconds")
    parser.add_argument("--drain-timeout", type=float, default=300, help="steady mode: wait after feeding")
    parser.add_argument(
        "--soak",
        action="store_true",
        help="steady mode for 10 minutes (--duration 600, default --rate 100): watch the RSS for growth",
    )
    parser.add_argument(
        "--masters",
        nargs="+",
        help="backlog: run once per Spark master (e.g. local[1] local[2]) and compare them",
    )
    parser.add_argument("--job-log", help="keep the job's log (level INFO) in this file")
    parser.add_argument("--out", help="where the JSON goes (default bench/results/stream_e2e[_rate].json)")
    args = parser.parse_args()
    if args.soak:
        args.rate, args.duration = args.rate or 100, 600
    with tempfile.TemporaryDirectory(prefix="silverline-bench-") as tmp_name:
        tmp = Path(tmp_name)
        if args.rate:
            result = steady_rate(args, tmp)
        elif args.masters:
            result = by_master(args, tmp)
        else:
            result = backlog(args, tmp)
    result = {"command": kit.command_line(), "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
              **result, "machine": kit.machine()}  # fmt: skip
    name = "stream_e2e_soak" if args.soak else ("stream_e2e_rate" if args.rate else "stream_e2e")
    name = "stream_e2e_cores" if args.masters and not args.rate else name
    kit.save(name, result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark (k): silverline against a naive Spark job over the same objects.

The workload: ``--files`` small orders CSV files over ``--tenants`` tenants, every
notification landed in the bronze log before the start. Two whole processes are
timed, JVM start-up included, side by side (alternating, a fresh lake each run):

- **silverline**: ``silverline stream --no-bridge --trigger available-now``:
  bronze parse, watermark dedupe, the ledger's judge, reads and row checks in
  Spark tasks, great-expectations, one commit per tenant table, the ledger.
- **naive**: Spark's CSV reader over each tenant's files and one Iceberg table
  written per tenant (partitioned as silver is), with no dedupe, no checks, no
  ledger, no accounting: the job a team writes first.

    python bench/vs_naive.py --files 20000 --tenants 10
    python bench/vs_naive.py --files 1200 --tenants 400 --out bench/results/vs_naive_tenants.json
    python bench/vs_naive.py --files 20000 --tenants 10 --masters local[1] local[2]

Both must write every row (checked). Prints the figures and writes
bench/results/vs_naive.json. The SQS bridge is not part of either time.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchkit as kit

ORDERS_SCHEMA = (
    "order_id BIGINT, customer_id STRING, amount DECIMAL(12,2), currency STRING, order_ts TIMESTAMP"
)


def naive_job(lake: Path, warehouse: Path, tenants: int, master: str) -> int:
    """The naive job itself (run in its own process): read each tenant's CSV files, write a table."""
    from pyspark.sql import functions as F

    spark, config = kit.spark_session(
        str(kit.PROJECT / "conf" / "local.yaml"),
        master,
        str(kit.PROJECT / "conf" / "spark" / "local.conf"),
        warehouse,
    )
    rows = 0
    for n in range(tenants):
        tenant = f"tenant{n:03d}"
        source = lake / kit.BUCKET / tenant / "raw" / "orders"
        frame = (
            spark.read.schema(ORDERS_SCHEMA)
            .option("header", "true")
            .option("recursiveFileLookup", "true")
            .csv(str(source))
        )
        table = f"{config.catalog.name}.`{kit.BUCKET}`.{tenant}.silver.orders"
        frame.writeTo(table).using("iceberg").partitionedBy(F.days("order_ts")).createOrReplace()
        rows += spark.table(table).count()
    print(f"rows {rows}")
    spark.stop()
    return 0


def run_naive(lake: Path, tenants: int, master: str) -> tuple[float, int]:
    """Time the naive job as a whole process; returns (wall seconds, rows it wrote)."""
    with tempfile.TemporaryDirectory(prefix="silverline-naive-") as warehouse:
        cmd = [sys.executable, __file__, "--naive-job", str(lake), warehouse,
               "--tenants", str(tenants), "--masters", master]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(cmd, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
    if done.returncode != 0:
        raise RuntimeError(f"the naive job failed:\n{done.stderr[-3000:]}")
    rows = int(next(line for line in done.stdout.splitlines() if line.startswith("rows ")).split()[1])
    return wall, rows


def one_run(args: argparse.Namespace, master: str) -> dict[str, Any]:
    """One silverline run and one naive run over a fresh lake of the same objects."""
    with tempfile.TemporaryDirectory(prefix="silverline-bench-") as tmp_name:
        tmp = Path(tmp_name)
        lake = tmp / "lake"
        kit.build_backlog(lake, args.files, args.tenants, args.rows, args.per_bronze_file)
        config = kit.write_config(tmp, lake, max_files=args.max_files_per_trigger, master=master)
        wall, peaks = kit.run_job_sampled(config)
        metrics = kit.read_metrics(lake)
        naive_wall, naive_rows = run_naive(lake, args.tenants, master)
    applied = sum(int(r["applied"]) for r in metrics)
    expected_rows = args.files * args.rows
    if applied != args.files or naive_rows != expected_rows:
        raise RuntimeError(f"unequal work: silverline applied {applied} of {args.files} objects, "
                           f"the naive job wrote {naive_rows} of {expected_rows} rows")  # fmt: skip
    return {
        "silverline_wall_s": round(wall, 2),
        "naive_wall_s": round(naive_wall, 2),
        "batches": len(metrics),
        "batch_seconds": round(sum(kit.batch_seconds(r) for r in metrics), 2),
        "phase_seconds": kit.phase_seconds(metrics),
        "silverline_peak_rss_mb": peaks,
    }


def main() -> int:
    """Run both jobs ``--runs`` times per master and write the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    kit.add_workload_arguments(parser, files=20000, max_files=1000)
    parser.add_argument("--runs", type=int, default=1, help="runs of each job per master")
    parser.add_argument("--masters", nargs="+", default=["local[2]"], help="e.g. local[1] local[2]")
    parser.add_argument("--naive-job", nargs=2, metavar=("LAKE", "WAREHOUSE"), help=argparse.SUPPRESS)
    parser.add_argument("--out", help="where the JSON goes (default bench/results/vs_naive.json)")
    args = parser.parse_args()
    if args.naive_job:
        return naive_job(Path(args.naive_job[0]), Path(args.naive_job[1]), args.tenants, args.masters[0])

    by_master: dict[str, Any] = {}
    for master in args.masters:
        runs = []
        for number in range(args.runs):
            print(f"{master}: run {number + 1} of {args.runs} ...", file=sys.stderr, flush=True)
            runs.append(one_run(args, master))
            print(f"  silverline {runs[-1]['silverline_wall_s']} s, naive {runs[-1]['naive_wall_s']} s",
                  file=sys.stderr, flush=True)  # fmt: skip
        silverline = statistics.median(r["silverline_wall_s"] for r in runs)
        naive = statistics.median(r["naive_wall_s"] for r in runs)
        by_master[master] = {
            "runs": runs,
            "silverline_wall_s": silverline,
            "naive_wall_s": naive,
            "naive_over_silverline": round(naive / silverline, 2),
            "events_per_s_wall": round(args.files / silverline, 1),
            "events_per_s_in_batches": round(
                args.files / statistics.median(r["batch_seconds"] for r in runs), 1
            ),
        }
    result: dict[str, Any] = {
        "command": kit.command_line(),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "files": args.files,
        "tenants": args.tenants,
        "rows_per_file": args.rows,
        "by_master": by_master,
        "machine": kit.machine(),
    }
    if "local[1]" in by_master and "local[2]" in by_master:
        one, two = by_master["local[1]"], by_master["local[2]"]
        ratio = one["silverline_wall_s"] / two["silverline_wall_s"]
        result["silverline_local1_over_local2"] = round(ratio, 2)
        result["naive_local1_over_local2"] = round(one["naive_wall_s"] / two["naive_wall_s"], 2)
    kit.save("vs_naive", result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

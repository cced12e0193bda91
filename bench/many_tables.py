"""Benchmark (c): batch time against the number of tenant tables a batch touches.

For each table count T, one job drains two rounds of uploads, one micro-batch
each: round 1 creates the T tenant tables, round 2 writes K more files to every
one of them. Round 2 is the steady state the figures describe (the tables exist,
as they do for a running platform): batch seconds, the commit phase's seconds
(target: at most 10 s for 100 tables), and per-table commit cost.

    python bench/many_tables.py --tables 1 10 100 300

Prints the figures and writes bench/results/many_tables.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import sys
import tempfile
from pathlib import Path
from typing import Any

import benchkit as kit


def one_count(
    tables: int, per_table: int, rows: int, threads: int | None, spark_conf: dict[str, str] | None = None
) -> dict[str, Any]:
    """Run the two rounds for ``tables`` tenant tables; figures of round 2."""
    with tempfile.TemporaryDirectory(prefix="silverline-bench-") as tmp_name:
        tmp = Path(tmp_name)
        lake = tmp / "lake"
        per_round = tables * per_table
        objects = kit.write_objects(lake, 2 * per_round, tables, rows)
        now = dt.datetime.now(dt.UTC)
        for round_no in range(2):  # one bronze file per round, one round per micro-batch
            start = round_no * per_round
            kit.land(lake, objects[start : start + per_round], start, now, f"{round_no:09d}-bench.jsonl")
        config = kit.write_config(tmp, lake, max_files=1, spark_conf=spark_conf)
        if threads:
            text = config.read_text().replace("stream:\n", f"stream:\n  commit_threads: {threads}\n", 1)
            config.write_text(text)
        wall = kit.run_job(config)
        rows_ = kit.read_metrics(lake)
    if len(rows_) != 2:
        raise RuntimeError(f"expected 2 batches, got {len(rows_)}")
    first, steady = rows_
    commit = steady["details"]["phase_seconds"].get("commit", 0.0)
    return {
        "tables": tables,
        "files_per_table": per_table,
        "tables_committed": steady["tables_committed"],
        "batch_seconds": round(kit.batch_seconds(steady), 2),
        "commit_seconds": round(commit, 2),
        "commit_seconds_per_table": round(commit / tables, 3),
        "phase_seconds": kit.phase_seconds([steady]),
        "first_batch_seconds_creating_tables": round(kit.batch_seconds(first), 2),
        "wall_seconds_incl_jvm_start": round(wall, 1),
        "balanced": steady["details"]["balanced"] and first["details"]["balanced"],
    }


def main() -> int:
    """Run every table count and write the figures."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--tables", type=int, nargs="+", default=[1, 10, 100, 300])
    parser.add_argument("--files-per-table", type=int, default=3, help="files per table per round")
    parser.add_argument("--rows", type=int, default=50, help="rows per CSV file")
    parser.add_argument("--commit-threads", type=int, help="stream.commit_threads (default: the job's)")
    parser.add_argument(
        "--spark-conf", action="append", default=[], metavar="KEY=VALUE", help="a Spark setting (repeatable)"
    )
    parser.add_argument("--out", help="where the JSON goes (default bench/results/many_tables.json)")
    args = parser.parse_args()
    spark_conf = dict(item.split("=", 1) for item in args.spark_conf) or None
    results = []
    for count in args.tables:
        print(f"{count} tables ...", file=sys.stderr, flush=True)
        results.append(one_count(count, args.files_per_table, args.rows, args.commit_threads, spark_conf))
        print(f"  batch {results[-1]['batch_seconds']}s, commit {results[-1]['commit_seconds']}s",
              file=sys.stderr, flush=True)  # fmt: skip
    result = {
        "command": kit.command_line(),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "results": results,
        "machine": kit.machine(),
    }
    kit.save("many_tables", result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

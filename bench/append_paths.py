"""Benchmark: a batch's plain appends, Spark's writer against the metadata-only FastAppend.

Issue #22 asks for metadata-only commits. For the same rows of the same tenant
tables, in one Spark session, this times one round of appends to every table
through each path, alternating rounds so both see the same machine:

- ``spark``: what the batch writer did before: the rows staged as one Parquet
  file, read by Spark and appended by Spark's Iceberg writer
  (``jobs.silver.commit.append_writer``, one task, fanout);
- ``fast``: ``jobs.silver.fastappend``: the rows written as data files from Arrow
  (what the batch's Spark tasks do, here in this process) and committed with one
  ``FastAppend`` through Iceberg's Java API.

Both go through ``jobs.silver.commit.commit_changes`` on ``--threads`` threads,
with the replay check before and the snapshot lookup after each commit, as in a batch.

    .venv/bin/python bench/append_paths.py --tables 50 --rows 150 --rounds 3

Writes bench/results/append_paths.json: per path the median seconds of a round and per table.
"""

from __future__ import annotations

import argparse
import datetime as dt
import statistics
import tempfile
import time
from decimal import Decimal
from pathlib import Path
from typing import Any

import benchkit as kit

PROJECT = Path(__file__).resolve().parents[1]


def arrow_rows(tenant: str, rows: int, batch_id: int, contract: Any) -> Any:
    """``rows`` silver rows of one object of ``tenant`` (the orders contract)."""
    import pyarrow as pa

    from jobs.objects.formats import arrow_type
    from jobs.silver.commit import silver_columns

    when = dt.datetime(2026, 1, 1, tzinfo=dt.UTC)
    values = {
        "order_id": list(range(rows)),
        "customer_id": [f"c{i % 17}" for i in range(rows)],
        "amount": [Decimal(i % 1000) / 100 for i in range(rows)],
        "currency": ["EUR"] * rows,
        "order_ts": [when + dt.timedelta(hours=i % 72) for i in range(rows)],
        "_source_bucket": [kit.BUCKET] * rows,
        "_source_key": [f"{tenant}/raw/orders/{batch_id}.csv"] * rows,
        "_event_time": [when] * rows,
        "_ingest_time": [when] * rows,
        "_batch_id": [batch_id] * rows,
    }
    columns = {}
    for name, kind in silver_columns(contract):
        arrow = arrow_type(kind)
        columns[name] = pa.array(values.get(name, [None] * rows), arrow)
    return pa.table(columns)


def one_round(spark: Any, config: Any, contract: Any, tenants: list[str], path: str, **kw: Any) -> float:
    """Append one object's rows to every table through ``path``; the round's seconds."""
    import pyarrow.parquet as pq

    from jobs.silver.commit import TableChange, commit_changes
    from jobs.silver.fastappend import put_local, target_of, write_data_files
    from jobs.storage import silver_location, table_name

    batch_id, rows, threads = kw["batch_id"], kw["rows"], kw["threads"]
    staging = Path(kw["staging"])
    started = time.perf_counter()

    def change(tenant: str) -> TableChange:
        table = arrow_rows(tenant, rows, batch_id, contract)
        common = {
            "table": table_name(config, kit.BUCKET, tenant, "orders"),
            "location": silver_location(config.lake.root, kit.BUCKET, tenant, "orders"),
            "contract": contract,
            "replace_keys": [],
            "row_count": rows,
        }
        if path == "fast":
            target = target_of(spark, str(common["table"]))
            files = write_data_files(table, target, put_local)
            return TableChange(rows=None, files=files, target=target, **common)
        staged = staging / f"bench{batch_id}-{tenant}.parquet"
        pq.write_table(table, staged, compression="none")
        return TableChange(rows=spark.read.parquet(staged.as_uri()), **common)

    from concurrent.futures import ThreadPoolExecutor

    with ThreadPoolExecutor(max_workers=threads) as pool:  # the planner stages tables side by side
        changes = list(pool.map(change, tenants))
    results = commit_changes(spark, changes, batch_id=batch_id, query_id="bench", max_workers=threads)
    seconds = time.perf_counter() - started
    for staged in staging.glob("*.parquet"):
        staged.unlink()
    failed = [r for r in results if r.status != "committed"]
    if failed:
        raise RuntimeError(f"{len(failed)} commits did not land: {failed[0]}")
    return seconds


def main() -> None:
    parser = argparse.ArgumentParser(description=__doc__.split("\n\n")[0])
    parser.add_argument("--tables", type=int, default=50)
    parser.add_argument("--rows", type=int, default=150, help="rows per table per round")
    parser.add_argument("--rounds", type=int, default=3, help="measured rounds per path (after one warm-up)")
    parser.add_argument("--threads", type=int, default=4, help="commit threads (stream.commit_threads)")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--config", default=str(PROJECT / "conf" / "local.yaml"))
    parser.add_argument("--spark-defaults", default=str(PROJECT / "conf" / "spark" / "local.conf"))
    parser.add_argument("--out", default=None)
    args = parser.parse_args()

    from jobs.contracts import load_contracts
    from jobs.silver.commit import TableChange, ensure_table
    from jobs.storage import silver_location, table_name

    with tempfile.TemporaryDirectory() as tmp:
        spark, config = kit.spark_session(args.config, args.master, args.spark_defaults, Path(tmp) / "lake")
        contract = load_contracts(PROJECT / "conf" / "datasets.yaml")["orders"]
        tenants = [f"t{i:04d}" for i in range(args.tables)]
        for tenant in tenants:
            ensure_table(
                spark,
                TableChange(
                    table=table_name(config, kit.BUCKET, tenant, "orders"),
                    location=silver_location(config.lake.root, kit.BUCKET, tenant, "orders"),
                    contract=contract,
                    rows=None,
                    replace_keys=[],
                    files=(),
                ),
            )
        times: dict[str, list[float]] = {"spark": [], "fast": []}
        warm: dict[str, float] = {}
        batch_id = 0
        for run in range(args.rounds + 1):
            for path in ("spark", "fast"):
                batch_id += 1
                seconds = one_round(
                    spark,
                    config,
                    contract,
                    tenants,
                    path,
                    batch_id=batch_id,
                    rows=args.rows,
                    threads=args.threads,
                    staging=tmp,
                )
                print(f"round {run} {path}: {seconds:.2f} s", flush=True)
                if run == 0:
                    warm[path] = seconds
                else:
                    times[path].append(seconds)
        spark.stop()
    spark_median, fast_median = (statistics.median(times[p]) for p in ("spark", "fast"))
    result: dict[str, Any] = {
        "command": kit.command_line(),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "machine": kit.machine(),
        "master": args.master,
        "tables": args.tables,
        "rows_per_table": args.rows,
        "threads": args.threads,
        "paths": {
            path: {
                "warmup_seconds": round(warm[path], 2),
                "round_median_seconds": round(statistics.median(times[path]), 2),
                "per_table_seconds": round(statistics.median(times[path]) / args.tables, 4),
                "rounds": [round(t, 2) for t in times[path]],
            }
            for path in ("spark", "fast")
        },
        "spark_over_fast": round(spark_median / fast_median, 2),
    }
    print(f"spark {spark_median:.2f} s, fast {fast_median:.2f} s per round: {result['spark_over_fast']}x")
    kit.save("append_paths", result, args.out)


if __name__ == "__main__":
    main()

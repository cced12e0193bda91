"""Benchmark: replacing one object's rows in a tenant table, against the table's size.

For each size F, one table gets F appends of one object each (ROWS rows, one
data file each, keys ``<tenant>/raw/orders/uploads/<n>/part.csv``). Then one
object is replaced again and again, alternating two MERGEs in the same session:

- ``pruned``: the stream's MERGE (``jobs.silver.commit.merge_sql``): its ON clause
  also says ``t._source_key IN (<keys>)``, so Iceberg plans the scan from the data
  files' exact ``_source_key`` bounds;
- ``plain``: the same MERGE without that clause (as before): it reads every data file;
- ``metadata``: the object's new rows as data files (written here, as the tasks write
  them), committed by ``jobs.silver.fastappend.replace_files``: the object's rows are in
  files of their own, so one ``OverwriteFiles`` drops them and adds the new file.

Each is timed alone: the MERGE statement, or the metadata-only commit.

    python bench/replace_cost.py --files 10 100 400

Prints the median seconds per replacement and writes bench/results/replace_cost.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import decimal
import statistics
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import benchkit as kit
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

from jobs.contracts import load_contracts
from jobs.silver.commit import TableChange, commit_change, merge_source, merge_sql
from jobs.silver.fastappend import put_local, replace_files, target_of, write_data_files
from jobs.storage import silver_location, silver_table_name

BUCKET = kit.BUCKET


def rows_frame(spark: Any, tenant: str, number: int, rows: int, batch: int) -> Any:
    """``rows`` silver rows of object number ``number`` (one day: one partition, one file)."""
    from pyspark.sql import functions as F

    key = f"{tenant}/raw/orders/uploads/{number:06d}/part.csv"
    return spark.range(rows).select(
        (F.col("id") + number * rows).alias("order_id"),
        F.concat(F.lit("c-"), F.col("id").cast("string")).alias("customer_id"),
        F.lit("12.50").cast("decimal(12,2)").alias("amount"),
        F.lit("EUR").alias("currency"),
        F.lit(dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)).cast("timestamp").alias("order_ts"),
        F.lit(None).cast("string").alias("_rescued"),
        F.lit(BUCKET).alias("_source_bucket"),
        F.lit(key).alias("_source_key"),
        F.lit(None).cast("string").alias("_source_version_id"),
        F.lit("etag").alias("_source_etag"),
        F.lit(f"{number:016X}").alias("_source_sequencer"),
        F.current_timestamp().alias("_event_time"),
        F.current_timestamp().alias("_ingest_time"),
        F.lit(batch).cast("bigint").alias("_batch_id"),
    )


def arrow_rows(key: str, number: int, rows: int) -> pa.Table:
    """The same rows as :func:`rows_frame`, as Arrow (what a task writes)."""
    now = dt.datetime.now(dt.UTC)
    utc = pa.timestamp("us", tz="UTC")
    return pa.table(
        {
            "order_id": pa.array(range(number * rows, (number + 1) * rows), pa.int64()),
            "customer_id": pa.array([f"c-{i}" for i in range(rows)]),
            "amount": pa.array([decimal.Decimal("12.50")] * rows, pa.decimal128(12, 2)),
            "currency": pa.array(["EUR"] * rows),
            "order_ts": pa.array([dt.datetime(2026, 3, 1, 10, tzinfo=dt.UTC)] * rows, utc),
            "_rescued": pa.nulls(rows, pa.string()),
            "_source_bucket": pa.array([BUCKET] * rows),
            "_source_key": pa.array([key] * rows),
            "_source_version_id": pa.nulls(rows, pa.string()),
            "_source_etag": pa.array(["etag"] * rows),
            "_source_sequencer": pa.array([f"{number:016X}"] * rows),
            "_event_time": pa.array([now] * rows, utc),
            "_ingest_time": pa.array([now] * rows, utc),
            "_batch_id": pa.array([0] * rows, pa.int64()),
        }
    )


def one_size(spark: Any, catalog: str, files: int, rows: int, runs: int) -> dict[str, Any]:
    """Build a table of ``files`` objects, then time ``runs`` replacements of each kind."""
    contract = load_contracts(kit.PROJECT / "conf" / "datasets.yaml")["orders"]
    tenant = f"t{files}"
    table = silver_table_name(catalog, BUCKET, tenant, "orders")

    def change(number: int, batch: int, keys: list[str]) -> TableChange:
        return TableChange(
            table=table,
            location=silver_location("file:///unused/", BUCKET, tenant, "orders"),
            contract=contract,
            rows=rows_frame(spark, tenant, number, rows, batch),
            replace_keys=keys,
        )

    started = time.perf_counter()
    for number in range(files):
        commit_change(spark, change(number, number, []), batch_id=number, query_id="bench")
    build = time.perf_counter() - started
    target = f"{tenant}/raw/orders/uploads/{files - 1:06d}/part.csv"
    seconds: dict[str, list[float]] = {"pruned": [], "plain": [], "metadata": []}
    files_target = target_of(spark, table)
    for run in range(runs):
        for kind in ("pruned", "plain"):
            replacement = change(files - 1, files + 2 * run + (kind == "plain"), [target])
            sql, args = merge_sql(replacement, prune=kind == "pruned")
            source = merge_source(spark, replacement)
            began = time.perf_counter()
            spark.sql(sql, args=args, source=source)
            seconds[kind].append(round(time.perf_counter() - began, 3))
        new_rows = arrow_rows(target, files - 1, rows)
        written = write_data_files(new_rows, files_target, put_local)
        began = time.perf_counter()
        if replace_files(spark, files_target, written, [target], {"silverline.batch-id": f"m{run}"}) is None:
            raise RuntimeError(f"{table}: the object's rows are not in files of their own")
        seconds["metadata"].append(round(time.perf_counter() - began, 3))
    left = spark.sql(f"SELECT count(*) AS n FROM {table}").collect()[0]["n"]
    if left != files * rows:
        raise RuntimeError(f"{table}: {left} rows after the replacements, expected {files * rows}")
    data_files = spark.sql(f"SELECT count(*) AS n FROM {table}.files WHERE content = 0").collect()[0]["n"]
    result = {
        "files": files,
        "data_files": data_files,
        "rows": files * rows,
        "build_seconds": round(build, 1),
        "pruned_seconds": seconds["pruned"],
        "plain_seconds": seconds["plain"],
        "metadata_seconds": seconds["metadata"],
        "pruned_median": statistics.median(seconds["pruned"]),
        "plain_median": statistics.median(seconds["plain"]),
        "metadata_median": statistics.median(seconds["metadata"]),
    }
    result["plain_over_pruned"] = round(result["plain_median"] / result["pruned_median"], 2)
    return result


def main() -> int:
    """Run the benchmark and write the results."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, nargs="+", default=[10, 100, 400], help="objects in the table")
    parser.add_argument("--rows", type=int, default=5000, help="rows per object")
    parser.add_argument("--runs", type=int, default=3, help="replacements of each kind, alternating")
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--out", default=str(kit.RESULTS / "replace_cost.json"))
    args = parser.parse_args()
    results = []
    with tempfile.TemporaryDirectory(prefix="silverline-bench-") as tmp:
        spark, config = kit.spark_session(
            str(kit.PROJECT / "conf" / "local.yaml"),
            args.master,
            str(kit.PROJECT / "conf" / "spark" / "local.conf"),
            Path(tmp) / "lake",
        )
        try:
            for files in args.files:
                result = one_size(spark, config.catalog.name, files, args.rows, args.runs)
                results.append(result)
                medians = (
                    f"pruned {result['pruned_median']:.2f}s, plain {result['plain_median']:.2f}s, "
                    f"metadata-only {result['metadata_median']:.3f}s"
                )
                print(
                    f"{files:>5} objects ({result['data_files']} data files, {result['rows']:,} rows): "
                    f"replace one: {medians} ({result['plain_over_pruned']}x)",
                    flush=True,
                )
        finally:
            spark.stop()
    kit.write_results(
        {
            "command": kit.command_line(),
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": kit.machine(),
            "master": args.master,
            "rows_per_object": args.rows,
            "results": results,
        },
        args.out,
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Benchmark: Spark's CSV reader, silverline's ObjectReader and raw pyarrow on the same small files.

Writes N small orders CSV files (50 rows each) into a temporary local lake and,
in one run, reads all of them with:

- ``spark``: ``spark.read.schema(...).csv(paths)`` plus ``input_file_name()``
  lineage, forced with a ``noop`` write (or ``count``), on a session from the
  project's factory (``local[2]``, ``conf/spark/local.conf``); once with
  ``spark.sql.sources.parallelPartitionDiscovery.threshold`` at Spark's default
  (32: listing runs as a Spark job) and once as configured (driver-side listing);
- ``silverline``: ``ObjectReader.read`` with ``stream.read_threads`` threads, as
  the stream uses it (and with 1 thread, for the per-thread cost);
- ``pyarrow``: ``pyarrow.csv.read_csv`` with the declared types, one thread,
  one file after the other: the floor.

    .venv/bin/python bench/reader_baseline.py --files 3000

Prints best and median files/s per reader, the ratios silverline/Spark and
pyarrow/silverline of this run, and where ObjectReader's time goes per file
(one thread), and writes them to bench/results/reader_baseline.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import functools
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

import benchkit as kit
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.csv as pa_csv  # type: ignore[import-untyped, unused-ignore]

from jobs.contracts import DatasetContract, load_contracts
from jobs.objects.formats import ContractDecoder, contract_schema
from jobs.objects.reader import ObjectReader, ObjectRef

try:
    import psutil  # type: ignore[import-untyped, unused-ignore]
except ImportError:  # optional: without it, CPU time leaves out the JVM
    psutil = None

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

PROJECT = Path(__file__).resolve().parents[1]
BUCKET = "bench-lake"
HEADER = "order_id,customer_id,amount,currency,order_ts"
DISCOVERY_THRESHOLD = "spark.sql.sources.parallelPartitionDiscovery.threshold"
SPARK_DEFAULT_THRESHOLD = "32"


def orders_csv(file_no: int, rows: int) -> str:
    """One small orders CSV file whose values all convert."""
    lines = [HEADER]
    for i in range(rows):
        ts = dt.datetime(2024, 3, 1 + i % 5, i % 24, i % 60, tzinfo=dt.UTC)
        lines.append(
            f"{file_no * 1000 + i},c{i % 500},{(i * 37) % 9999 / 100:.2f},EUR,{ts:%Y-%m-%dT%H:%M:%SZ}"
        )
    return "\n".join(lines) + "\n"


def write_files(lake: Path, files: int, rows: int) -> list[ObjectRef]:
    """Write the files under ``<lake>/<bucket>/t1/raw/orders/`` and return their refs."""
    refs = []
    for n in range(files):
        key = f"t1/raw/orders/baseline/{n:05d}.csv"
        path = lake / BUCKET / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(orders_csv(n, rows))
        refs.append(ObjectRef(BUCKET, key, "t1", "orders", None, None, f"{n:018X}", None, None))
    return refs


def cpu_seconds() -> float:
    """CPU seconds of this process and its children (the JVM) so far; this process only without psutil."""
    if psutil is None:
        return time.process_time()
    me = psutil.Process()
    total = sum(me.cpu_times()[:2])
    for child in me.children(recursive=True):
        try:
            total += sum(child.cpu_times()[:2])
        except psutil.Error:
            continue
    return float(total)


def timed(run: Callable[[], object], repeats: int, warm_up: bool = True) -> list[tuple[float, float]]:
    """(wall seconds, CPU seconds incl. the JVM) per repeat, after one warm-up run."""
    if warm_up:
        run()
    seconds = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), cpu_seconds()
        run()
        seconds.append((time.perf_counter() - wall, cpu_seconds() - cpu))
    return seconds


def rates(files: int, seconds: list[tuple[float, float]]) -> dict[str, Any]:
    """Best and median files/s (wall) and best files per CPU-second."""
    per_s = sorted(files / wall for wall, _ in seconds)
    return {
        "files_per_s_best": round(per_s[-1]),
        "files_per_s_median": round(statistics.median(per_s)),
        "files_per_cpu_s_best": round(max(files / cpu for _, cpu in seconds if cpu > 0) if seconds else 0),
        "wall_s": [round(wall, 3) for wall, _ in seconds],
    }


def spark_frame(spark: SparkSession, paths: list[str], contract: DatasetContract) -> DataFrame:
    """Spark's own file reader path: declared schema, the contract's options, file lineage."""
    from pyspark.sql import functions as F

    return (
        spark.read.schema(contract.ddl_columns())
        .options(**contract.options)
        .csv(paths)
        .withColumn("_source_file", F.input_file_name())
    )


def check_spark(spark: SparkSession, paths: list[str], contract: DatasetContract, rows: int) -> None:
    """Every row read and every value converted, so Spark does the same work as the others."""
    from pyspark.sql import functions as F

    names = contract.column_names
    counts = (
        spark_frame(spark, paths, contract)
        .agg(
            F.count(F.lit(1)).alias("rows"),
            F.countDistinct("_source_file").alias("files"),
            *[F.count(name).alias(name) for name in names],
        )
        .first()
    )
    found = counts.asDict() if counts is not None else {}
    expected = {"rows": rows, "files": len(paths), **dict.fromkeys(names, rows)}
    if found != expected:
        raise SystemExit(f"Spark did not read the files as expected: {found} != {expected}")


def run_spark(
    spark: SparkSession, paths: list[str], contract: DatasetContract, action: str, repeats: int
) -> dict[str, dict[str, Any]]:
    """Time Spark's reader with the default and with the configured partition-discovery threshold."""
    configured = spark.conf.get(DISCOVERY_THRESHOLD, SPARK_DEFAULT_THRESHOLD) or SPARK_DEFAULT_THRESHOLD

    def force() -> None:
        frame = spark_frame(spark, paths, contract)
        if action == "count":
            frame.count()
        else:
            frame.write.format("noop").mode("overwrite").save()

    results = {}
    for label, threshold in (("spark_default_threshold", SPARK_DEFAULT_THRESHOLD), ("spark", configured)):
        spark.conf.set(DISCOVERY_THRESHOLD, threshold)
        row = {
            "discovery_threshold": int(threshold),
            "action": action,
            **rates(len(paths), timed(force, repeats)),
        }
        results[label] = row
        print(f"{label:>24}: {row}", flush=True)
    spark.conf.set(DISCOVERY_THRESHOLD, configured)
    return results


def typed_convert_options(contract: DatasetContract) -> pa_csv.ConvertOptions:
    """pyarrow convert options with the contract's declared types (as the reader's fast path)."""
    schema = contract_schema(contract)
    return pa_csv.ConvertOptions(column_types=dict(zip(schema.names, schema.types, strict=True)))


def run_local(
    lake: Path, refs: list[ObjectRef], contract: DatasetContract, threads: int, rows: int, repeats: int
) -> dict[str, dict[str, Any]]:
    """Time ObjectReader (stream threads and 1 thread) and pyarrow's read_csv in one thread."""
    paths = [str(lake / ref.bucket / ref.key) for ref in refs]
    read_options = pa_csv.ReadOptions(use_threads=False)
    convert = typed_convert_options(contract)

    def floor() -> None:
        for path in paths:
            pa_csv.read_csv(path, read_options=read_options, convert_options=convert)

    results: dict[str, dict[str, Any]] = {}
    for label, workers in ((f"silverline_{threads}_threads", threads), ("silverline_1_thread", 1)):
        reader = ObjectReader(lake.as_uri() + "/", max_workers=workers)
        table, outcomes = reader.read(refs, contract)
        if table.num_rows != rows or any(o.status != "ok" or o.rows_with_errors for o in outcomes):
            raise SystemExit(f"ObjectReader did not read every file cleanly ({label})")
        row = {
            "threads": workers,
            **rates(len(refs), timed(functools.partial(reader.read, refs, contract), repeats)),
        }
        results[label] = row
        print(f"{label:>24}: {row}", flush=True)
    row = {"threads": 1, **rates(len(refs), timed(floor, repeats))}
    results["pyarrow_1_thread"] = row
    print(f"{'pyarrow_1_thread':>24}: {row}", flush=True)
    return results


def breakdown(lake: Path, refs: list[ObjectRef], contract: DatasetContract, repeats: int) -> dict[str, float]:
    """Microseconds per file, one thread, best of the repeats: where ObjectReader's time goes."""
    paths = [str(lake / ref.bucket / ref.key) for ref in refs]
    data = [Path(path).read_bytes() for path in paths]
    read_options = pa_csv.ReadOptions(use_threads=False)
    convert = typed_convert_options(contract)
    decoder = ContractDecoder(contract)
    reader = ObjectReader(lake.as_uri() + "/", max_workers=1)
    stages: dict[str, Callable[[], object]] = {
        "read_bytes": lambda: [Path(path).read_bytes() for path in paths],
        "pyarrow_read_csv_from_path": lambda: [
            pa_csv.read_csv(path, read_options=read_options, convert_options=convert) for path in paths
        ],
        "pyarrow_read_csv_from_bytes": lambda: [
            pa_csv.read_csv(pa.py_buffer(body), read_options=read_options, convert_options=convert)
            for body in data
        ],
        "decoder_decode_object": lambda: [
            decoder.decode_object(body, ref.key) for body, ref in zip(data, refs, strict=True)
        ],
        "object_reader_read": lambda: reader.read(refs, contract),
    }
    us = {}
    for name, run in stages.items():
        best = min(wall for wall, _ in timed(run, repeats))
        us[name] = round(best / len(refs) * 1e6, 1)
    # what ObjectReader adds to its decoder: fetch (path checks, open, read) and assembly (concat, lineage)
    us["fetch_and_assemble"] = round(us["object_reader_read"] - us["decoder_decode_object"], 1)
    us["decoder_over_pyarrow"] = round(us["decoder_decode_object"] - us["pyarrow_read_csv_from_bytes"], 1)
    print(f"{'us_per_file_1_thread':>24}: {us}", flush=True)
    return us


def ratio(top: dict[str, Any], bottom: dict[str, Any]) -> dict[str, float]:
    """Best over best and median over median."""
    return {
        kind: round(top[f"files_per_s_{kind}"] / bottom[f"files_per_s_{kind}"], 2)
        for kind in ("best", "median")
    }


def main(argv: Sequence[str] | None = None) -> int:
    """Run the benchmark and write the results.

    Args:
        argv: Command-line arguments (default ``sys.argv[1:]``).

    Returns:
        The exit code.
    """
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--rows", type=int, default=50, help="rows per file")
    parser.add_argument("--repeats", type=int, default=5, help="timed runs per reader, after one warm-up")
    parser.add_argument("--config", default=str(PROJECT / "conf" / "local.yaml"), help="silverline config")
    parser.add_argument("--spark-defaults", default=str(PROJECT / "conf" / "spark" / "local.conf"))
    parser.add_argument("--master", default="local[2]")
    parser.add_argument(
        "--spark-action", choices=["noop", "count"], default="noop", help="what forces the read"
    )
    parser.add_argument("--datasets-file", default=str(PROJECT / "conf" / "datasets.yaml"))
    parser.add_argument("--label", default="", help="free text kept in the results, e.g. a commit")
    parser.add_argument("--out", default=str(PROJECT / "bench" / "results" / "reader_baseline.json"))
    args = parser.parse_args(argv)
    load_at_start = [round(x, 1) for x in os.getloadavg()]
    logging.disable(logging.WARNING)
    contract = load_contracts(args.datasets_file)["orders"]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="reader-baseline-") as tmp:
        lake = Path(tmp) / "lake"
        refs = write_files(lake, args.files, args.rows)
        started = time.perf_counter()
        spark, config = kit.spark_session(args.config, args.master, args.spark_defaults, lake)
        session_s = time.perf_counter() - started
        try:
            paths = [str(lake / ref.bucket / ref.key) for ref in refs]
            check_spark(spark, paths, contract, args.files * args.rows)
            results.update(run_spark(spark, paths, contract, args.spark_action, args.repeats))
        finally:
            spark.stop()
        threads = config.stream.read_threads
        results.update(run_local(lake, refs, contract, threads, args.files * args.rows, args.repeats))
        us_per_file = breakdown(lake, refs, contract, args.repeats)
    silverline = results[f"silverline_{threads}_threads"]
    ratios = {
        "silverline_over_spark": ratio(silverline, results["spark"]),
        "silverline_over_spark_default_threshold": ratio(silverline, results["spark_default_threshold"]),
        "pyarrow_over_silverline": ratio(results["pyarrow_1_thread"], silverline),
        "pyarrow_over_silverline_1_thread": ratio(
            results["pyarrow_1_thread"], results["silverline_1_thread"]
        ),
    }
    for name, value in ratios.items():
        print(f"{name:>40}: {value}")
    report = {
        "command": "python bench/reader_baseline.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "files": args.files,
        "rows_per_file": args.rows,
        "repeats": args.repeats,
        "spark_master": args.master,
        "spark_action": args.spark_action,
        "spark_session_start_s": round(session_s, 1),
        "read_threads": threads,
        "cpu_includes_jvm": psutil is not None,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        "label": args.label,
        "results": results,
        "ratios": ratios,
        "us_per_file_1_thread": us_per_file,
    }
    kit.write_results(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

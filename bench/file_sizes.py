"""Benchmark: ObjectReader and Spark's CSV reader on one orders CSV file per size, 5 KB to 500 MB.

For each size (5 KB, 50 KB, 500 KB, 5 MB, 50 MB, 500 MB; decimal units; stop
earlier with --max-mb) writes one orders CSV file into a temporary local lake
(a block of rows written again and again with new order ids) and measures:

- ``ObjectReader.read`` on it, in a fresh process per size: wall time, MB/s,
  rows/s, the growth of the process's peak RSS over its RSS before the read
  (``VmHWM``, reset before the read on Linux; else ``getrusage``), the peak of
  Arrow's memory pool, the result's size, and how much of the time decoding
  takes. The first read is also reported alone: in a fresh process it pays for
  the first touch of its memory. A read that fails, or a process that goes
  above --max-rss-mb (it is killed), is recorded with its memory and the
  benchmark goes on;
- Spark's CSV reader on the same file (``spark.read.schema(...).csv`` with
  ``input_file_name()``, forced with a noop write; large files are split), on a
  session from the project's factory (``local[2]``, ``conf/spark/local.conf``).

    .venv/bin/python bench/file_sizes.py --max-mb 500

Prints one line per size and writes bench/results/file_sizes.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import gc
import logging
import multiprocessing
import os
import platform
import resource
import statistics
import sys
import tempfile
import time
from collections.abc import Sequence
from multiprocessing.connection import Connection
from pathlib import Path
from typing import TYPE_CHECKING, Any

import benchkit as kit

from jobs.config import load_config
from jobs.contracts import DatasetContract, load_contracts
from jobs.objects.formats import ContractDecoder
from jobs.objects.reader import ObjectReader, ObjectRef

try:
    import psutil  # type: ignore[import-untyped, unused-ignore]
except ImportError:  # optional: /proc is used instead
    psutil = None

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

PROJECT = Path(__file__).resolve().parents[1]
BUCKET = "bench-lake"
HEADER = b"order_id,customer_id,amount,currency,order_ts\n"
SIZES = (5_000, 50_000, 500_000, 5_000_000, 50_000_000, 500_000_000, 2_000_000_000)
BLOCK_BYTES = 1 << 20
MARK = b"#######"  # 7 bytes in each row of a block, replaced by the block number
FIRST_BLOCK = 1_000_000
MB = 1_000_000


def block_template(target: int) -> bytes:
    """Rows of about ``target`` bytes; every order id starts with :data:`MARK`."""
    lines, size, i = [], 0, 0
    while size < target and i < 1_000_000:
        ts = dt.datetime(2024, 3, 1 + i % 5, i % 24, i % 60, i % 59, tzinfo=dt.UTC)
        line = f"{MARK.decode()}{i:06d},c{i % 500},{(i * 37) % 9999 / 100:.2f},EUR,{ts:%Y-%m-%dT%H:%M:%SZ}\n"
        lines.append(line)
        size += len(line)
        i += 1
    return "".join(lines).encode()


def write_orders_file(path: Path, size: int) -> int:
    """Write an orders CSV file of about ``size`` bytes (whole rows, unique ids); return its rows."""
    template = block_template(min(size, BLOCK_BYTES))
    path.parent.mkdir(parents=True, exist_ok=True)
    rows, written, block_no = 0, len(HEADER), 0
    with path.open("wb") as out:
        out.write(HEADER)
        while written < size:
            block = template.replace(MARK, b"%07d" % (FIRST_BLOCK + block_no))
            room = size - written
            if len(block) > room:  # the last block: whole rows only, at least one
                block = block[: block.rfind(b"\n", 0, room) + 1 or block.find(b"\n") + 1]
            out.write(block)
            written += len(block)
            rows += block.count(b"\n")
            block_no += 1
    return rows


def size_label(size: int) -> str:
    """``5KB``, ``50MB``, ... (decimal units)."""
    return f"{size // MB}MB" if size >= MB else f"{size // 1000}KB"


def object_ref(key: str, size: int) -> ObjectRef:
    """The ref of a benchmark file (no eTag: the local lake's MD5 check is left out)."""
    return ObjectRef(BUCKET, key, "t1", "orders", None, None, "0" * 18, None, size)


def rss_bytes(pid: int) -> int | None:
    """Resident set size of a process now, or None when it cannot be read."""
    if psutil is not None:
        try:
            return int(psutil.Process(pid).memory_info().rss)
        except psutil.Error:
            return None
    try:
        pages = int(Path(f"/proc/{pid}/statm").read_text().split()[1])
    except (OSError, IndexError, ValueError):
        return None
    return pages * os.sysconf("SC_PAGE_SIZE")


def peak_rss_bytes() -> int:
    """Peak RSS of this process: ``VmHWM`` where there is /proc, else ``ru_maxrss``.

    ``ru_maxrss`` also keeps the size of the parent at the ``exec`` of a spawned
    process; ``VmHWM`` is this process's own mark, the one :func:`reset_peak_rss` resets.
    """
    try:
        for line in Path("/proc/self/status").read_text().splitlines():
            if line.startswith("VmHWM:"):
                return int(line.split()[1]) * 1024
    except (OSError, ValueError):
        pass
    peak = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss  # KiB on Linux, bytes on macOS
    return int(peak if sys.platform == "darwin" else peak * 1024)


def reset_peak_rss() -> bool:
    """Reset the kernel's peak-RSS mark of this process (Linux ``clear_refs``); False when not possible."""
    try:
        Path("/proc/self/clear_refs").write_text("5")
    except OSError:
        return False
    return True


def measure_reader(lake: str, key: str, size: int, warm_key: str, args: dict[str, Any]) -> dict[str, Any]:
    """Time ObjectReader.read on one file and measure this process's memory (runs in a child)."""
    import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

    logging.disable(logging.WARNING)
    contract = load_contracts(args["datasets_file"])["orders"]
    reader = ObjectReader(
        Path(lake).as_uri() + "/", max_workers=args["threads"], block_bytes=args["block_bytes"]
    )
    reader.read([object_ref(warm_key, 0)], contract)  # warm-up: imports, compute kernels
    gc.collect()
    reset = reset_peak_rss()  # else the peak of the imports counts too
    rss_before, walls = rss_bytes(os.getpid()), []
    result: dict[str, Any] = {"rss_before_bytes": rss_before, "peak_rss_reset_before_read": reset}
    for _ in range(args["repeats"]):
        started = time.perf_counter()
        if args["blocks"]:
            table, outcomes = _read_in_blocks(reader, object_ref(key, size), contract)
        else:
            table, outcomes = reader.read([object_ref(key, size)], contract)
        walls.append(time.perf_counter() - started)
        outcome = outcomes[0]
        if outcome.status != "ok":
            return {**result, "error": f"{outcome.status} {outcome.reason}: {outcome.detail}"[:500]}
        result.update(
            rows=table.num_rows, result_bytes=table.nbytes, rows_with_errors=outcome.rows_with_errors
        )
        del table, outcomes
    result["peak_rss_growth_bytes"] = peak_rss_bytes() - (rss_before or 0)
    result["arrow_pool_peak_bytes"] = pa.default_memory_pool().max_memory()
    result["arrow_pool_backend"] = pa.default_memory_pool().backend_name
    if args["blocks"]:  # reading the file whole to time its decoding would defeat the point
        result["decode_s"] = None
        result["blocks"] = result.pop("result_bytes")
    else:
        data = (Path(lake) / BUCKET / key).read_bytes()
        started = time.perf_counter()
        ContractDecoder(contract).decode_object(data, key)
        result["decode_s"] = round(time.perf_counter() - started, 5)
    best = min(walls)
    result.update(
        wall_s=[round(w, 5) for w in walls],
        first_read_s=round(walls[0], 5),  # cold: the process's memory is fresh
        mb_per_s_first_read=round(size / MB / walls[0], 2),
        best_s=round(best, 5),
        median_s=round(statistics.median(walls), 5),
        mb_per_s=round(size / MB / best, 2),
        rows_per_s=round(result["rows"] / best),
        decode_share=None if result["decode_s"] is None else round(result["decode_s"] / best, 2),
    )
    return result


def _read_in_blocks(reader: ObjectReader, ref: ObjectRef, contract: DatasetContract) -> tuple[Any, list[Any]]:
    """Read as a stream's task does, keeping no rows: a stand-in table (rows, and blocks as its size)."""
    from types import SimpleNamespace

    rows = blocks = 0
    outcomes = []
    for piece in reader.read_pieces([ref], contract):
        rows += piece.table.num_rows
        blocks += bool(piece.table.num_rows)
        outcomes.extend(outcome for _, outcome in piece.outcomes)
        del piece  # as a task does: the block's rows are gone before the next is read
    return SimpleNamespace(num_rows=rows, nbytes=blocks), outcomes


def reader_child(
    conn: Connection, lake: str, key: str, size: int, warm_key: str, args: dict[str, Any]
) -> None:
    """Entry point of the child process: send the measurement, or the failure and the memory."""
    try:
        result = measure_reader(lake, key, size, warm_key, args)
    except BaseException as exc:  # MemoryError, pyarrow errors: the numbers are the point
        result = {"error": f"{type(exc).__name__}: {exc}"[:500]}
    result["peak_rss_bytes"] = peak_rss_bytes()
    conn.send(result)
    conn.close()


def run_reader(lake: Path, key: str, size: int, warm_key: str, args: dict[str, Any]) -> dict[str, Any]:
    """Run :func:`reader_child` in a fresh process, sampling its RSS and killing it above the cap."""
    context = multiprocessing.get_context("spawn")
    receive, send = context.Pipe(duplex=False)
    child = context.Process(target=reader_child, args=(send, str(lake), key, size, warm_key, args))
    child.start()
    send.close()
    result: dict[str, Any] | None = None
    sampled = 0
    while result is None and child.is_alive():
        if receive.poll(0.05):
            try:
                result = receive.recv()
            except EOFError:
                break
        elif child.pid is not None:
            sampled = max(sampled, rss_bytes(child.pid) or 0)
            if sampled > args["max_rss_bytes"]:
                child.kill()
                result = {"error": f"killed: RSS above {args['max_rss_bytes'] // MB} MB"}
    child.join(60)
    if result is None:
        result = {"error": f"reader process ended with exit code {child.exitcode} (out of memory?)"}
    result["sampled_peak_rss_bytes"] = sampled  # the whole child, interpreter included
    return result


def spark_frame(spark: SparkSession, path: str, contract: DatasetContract) -> DataFrame:
    """Spark's own file reader path: declared schema, the contract's options, file lineage."""
    from pyspark.sql import functions as F

    return (
        spark.read.schema(contract.ddl_columns())
        .options(**contract.options)
        .csv(path)
        .withColumn("_source_file", F.input_file_name())
    )


def run_spark(
    spark: SparkSession, path: str, contract: DatasetContract, rows: int, repeats: int
) -> dict[str, Any]:
    """Time Spark's CSV reader on one file, after a warm-up that checks every value converted."""
    from pyspark.sql import functions as F

    names = contract.column_names
    try:
        counts = (
            spark_frame(spark, path, contract).agg(*[F.count(name).alias(name) for name in names]).first()
        )
        if counts is None or set(counts.asDict().values()) != {rows}:
            return {"error": f"expected {rows} non-null values per column, got {counts}"}
        partitions = spark_frame(spark, path, contract).rdd.getNumPartitions()
        walls = []
        for _ in range(repeats):
            started = time.perf_counter()
            spark_frame(spark, path, contract).write.format("noop").mode("overwrite").save()
            walls.append(time.perf_counter() - started)
    except Exception as exc:  # a Py4JJavaError: record it and go on
        return {"error": f"{type(exc).__name__}: {str(exc)[:500]}"}
    best = min(walls)
    return {
        "partitions": partitions,
        "wall_s": [round(w, 3) for w in walls],
        "best_s": round(best, 3),
        "median_s": round(statistics.median(walls), 3),
        "mb_per_s": round(Path(path).stat().st_size / MB / best, 2),
        "rows_per_s": round(rows / best),
    }


def summary(label: str, row: dict[str, Any]) -> str:
    """One printed line per size."""
    reader, spark = row["objectreader"], row.get("spark") or {}
    if "error" in reader:
        text = (
            f"ObjectReader FAILED ({reader['error']}), peak RSS {reader.get('peak_rss_bytes', 0) / MB:.0f} MB"
        )
    else:
        text = (
            f"ObjectReader {reader['best_s']:>8.4f}s (first {reader['first_read_s']:>8.4f}s) "
            f"{reader['mb_per_s']:>7.1f} MB/s "
            f"{reader['rows_per_s']:>10,} rows/s  RSS +{reader['peak_rss_growth_bytes'] / MB:,.1f} MB"
        )
    if "best_s" in spark:
        text += (
            f" | Spark {spark['best_s']:>7.3f}s {spark['mb_per_s']:>6.1f} MB/s ({spark['partitions']} splits)"
        )
    elif spark:
        text += f" | Spark FAILED ({spark['error'][:200]})"
    return f"{label:>6} {row['rows']:>10,} rows: {text}"


def measure_size(
    lake: Path, size: int, args: argparse.Namespace, child_args: dict[str, Any], spark: SparkSession | None
) -> dict[str, Any]:
    """Write the file of one size, measure both readers on it, delete it."""
    key = f"t1/raw/orders/sizes/{size_label(size)}.csv"
    path = lake / BUCKET / key
    started = time.perf_counter()
    rows = write_orders_file(path, size)
    row: dict[str, Any] = {
        "bytes": path.stat().st_size,
        "rows": rows,
        "generate_s": round(time.perf_counter() - started, 2),
    }
    spark_repeats = args.repeats if size <= args.repeat_up_to_mb * MB else 1
    row["objectreader"] = run_reader(
        lake, key, row["bytes"], "t1/raw/orders/warm-up.csv", {**child_args, "repeats": args.repeats}
    )
    if spark is not None:
        contract = load_contracts(args.datasets_file)["orders"]
        row["spark"] = run_spark(spark, str(path), contract, rows, spark_repeats)
    path.unlink()
    return row


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
    parser.add_argument("--max-mb", type=float, default=500, help="largest file size, in MB (10^6 bytes)")
    parser.add_argument(
        "--repeats",
        type=int,
        default=3,
        help="timed reads per size; ObjectReader's first read is also reported alone (cold memory)",
    )
    parser.add_argument(
        "--repeat-up-to-mb", type=float, default=50, help="Spark reads larger files once (after its check)"
    )
    parser.add_argument("--max-rss-mb", type=int, default=8000, help="kill the reader process above this RSS")
    parser.add_argument("--no-spark", action="store_true", help="measure ObjectReader only")
    parser.add_argument(
        "--blocks", action="store_true", help="read as the stream's tasks do: a block at a time, rows dropped"
    )
    parser.add_argument("--config", default=str(PROJECT / "conf" / "local.yaml"), help="silverline config")
    parser.add_argument("--spark-defaults", default=str(PROJECT / "conf" / "spark" / "local.conf"))
    parser.add_argument("--master", default="local[2]")
    parser.add_argument("--datasets-file", default=str(PROJECT / "conf" / "datasets.yaml"))
    parser.add_argument("--label", default="", help="free text kept in the results, e.g. a commit")
    parser.add_argument("--out", default=str(PROJECT / "bench" / "results" / "file_sizes.json"))
    args = parser.parse_args(argv)
    load_at_start = [round(x, 1) for x in os.getloadavg()]
    logging.disable(logging.WARNING)
    sizes = [size for size in SIZES if size <= args.max_mb * MB]
    results: dict[str, dict[str, Any]] = {}
    with tempfile.TemporaryDirectory(prefix="file-sizes-") as tmp:
        lake = Path(tmp) / "lake"
        write_orders_file(lake / BUCKET / "t1/raw/orders/warm-up.csv", 5_000)
        spark, config = (
            kit.spark_session(args.config, args.master, args.spark_defaults, lake)
            if not args.no_spark
            else (None, load_config(args.config))
        )
        child_args = {
            "datasets_file": args.datasets_file,
            "threads": config.stream.read_threads,
            "block_bytes": config.stream.read_block_bytes,
            "blocks": args.blocks,
            "max_rss_bytes": args.max_rss_mb * MB,
        }
        try:
            for size in sizes:
                row = measure_size(lake, size, args, child_args, spark)
                results[size_label(size)] = row
                print(summary(size_label(size), row), flush=True)
        finally:
            if spark is not None:
                spark.stop()
    report = {
        "command": "python bench/file_sizes.py " + " ".join(sys.argv[1:] if argv is None else argv),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "units": "MB = 10^6 bytes; memory in bytes",
        "spark_master": None if args.no_spark else args.master,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_start": load_at_start,
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        "label": args.label,
        "read": "read_pieces, a block at a time" if args.blocks else "read, whole",
        "read_block_bytes": config.stream.read_block_bytes,
        "results": results,
    }
    kit.write_results(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

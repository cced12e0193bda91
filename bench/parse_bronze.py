"""Benchmark: parsing one micro-batch of bronze, Spark built-in expressions against the parser in tasks.

Builds N bronze lines (S3 notifications: direct, SNS-wrapped, two records per
message, duplicates) as a JSON-lines file, then, in one Spark session, times the
stream's source side of a micro-batch: read bronze, parse, dedupe key, drop
duplicates, every column computed (``noop`` sink). Each parser runs the same
number of times, alternating, and the first (warm-up) run of each is reported apart.

    .venv/bin/python bench/parse_bronze.py --messages 20000 --masters "local[1]" "local[2]"

``spark_expressions`` is the parser the stream used before, written in Spark's
built-in functions only; it is loaded from git history (``--baseline-rev``, the
last commit that had it), so the run needs the project's git history.
``python_in_tasks`` is :func:`jobs.events.spark.parse_events`, the plain-Python
parser run by ``mapInArrow`` in the tasks. Writes bench/results/parse_bronze.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import importlib
import json
import statistics
import subprocess
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path
from typing import Any

import benchkit as kit

PROJECT = Path(__file__).resolve().parents[1]
# The last commit with the parser written in Spark's built-in functions.
BASELINE_REV = "90d5c46"


def baseline_parser(rev: str, into: Path) -> Callable[[Any], Any]:
    """The former Spark-expression parser, from git history, as an importable module."""
    for name in ("spark", "spark_schema"):
        text = subprocess.run(
            ["git", "show", f"{rev}:jobs/events/{name}.py"],
            cwd=PROJECT,
            capture_output=True,
            text=True,
            check=True,
        ).stdout
        text = text.replace(
            "from jobs.events import spark_schema as js", "import baseline_spark_schema as js"
        )
        text = text.replace("from jobs.events.spark_schema import", "from baseline_spark_schema import")
        (into / f"baseline_{name}.py").write_text(text, encoding="utf-8")
    sys.path.insert(0, str(into))
    return importlib.import_module("baseline_spark").parse_events  # type: ignore[no-any-return]


def bronze_file(path: Path, messages: int) -> int:
    """Write ``messages`` bronze lines; returns the number of S3 records they hold."""
    when = dt.datetime(2026, 11, 1, 12, 0, tzinfo=dt.UTC)
    records = 0
    with path.open("w", encoding="utf-8") as out:
        for n in range(messages):
            key = kit.object_key(n, 10)
            body = kit.notification(key, b"x" * (n % 97), 0x5500000000000000 + n, when)
            if n % 5 == 1:  # SNS-wrapped
                body = json.dumps({"Type": "Notification", "MessageId": f"sns-{n}", "Message": body})
            elif n % 5 == 2:  # two records in one message
                doc = json.loads(body)
                doc["Records"].append(json.loads(kit.notification(key + ".2", b"y", n, when))["Records"][0])
                body = json.dumps(doc)
                records += 1
            records += 1
            out.write(kit.bronze_line(n, body, when) + "\n")
            if n % 10 == 3:  # a duplicate delivery
                out.write(kit.bronze_line(n, body, when) + "\n")
    return records


def source_frame(spark: Any, path: Path, parse: Callable[[Any], Any]) -> Any:
    """The batch side of ``jobs.stream.query.deduplicated_events`` with the given parser."""
    from pyspark.sql import functions as F

    from jobs.events.spark import with_foreign_buckets_rejected  # a plain column rewrite
    from jobs.stream.query import BRONZE_SCHEMA, with_dedupe_key

    bronze = (
        spark.read.schema(BRONZE_SCHEMA)
        .json(str(path))
        .withColumn("bronze_file", F.input_file_name())
        .withColumn("received_at", F.to_timestamp("received_at"))
    )
    return (
        bronze.withColumn("body_sha256", F.sha2(F.coalesce(F.col("body"), F.lit("")), 256))
        .transform(parse)
        .transform(lambda df: with_foreign_buckets_rejected(df, kit.BUCKET))
        .transform(with_dedupe_key)
        .dropDuplicates(["dedupe_key"])
    )


def timed_run(spark: Any, path: Path, parse: Callable[[Any], Any]) -> tuple[float, int]:
    """Seconds to plan and run the source side once (every column computed), and its rows."""
    started = time.perf_counter()
    frame = source_frame(spark, path, parse)
    frame.write.format("noop").mode("overwrite").save()
    seconds = time.perf_counter() - started
    return seconds, frame.count()


def run_master(
    master: str, path: Path, repeats: int, lake: Path, baseline: Callable[[Any], Any]
) -> dict[str, Any]:
    from jobs.events.spark import parse_events

    spark, _ = kit.spark_session(
        str(PROJECT / "conf" / "local.yaml"), master, str(PROJECT / "conf" / "spark" / "local.conf"), lake
    )
    spark.conf.set("spark.sql.json.enablePartialResults", "true")  # the former parser needs it
    parsers: dict[str, Callable[[Any], Any]] = {
        "spark_expressions": baseline,
        "python_in_tasks": parse_events,
    }
    seconds: dict[str, list[float]] = {name: [] for name in parsers}
    rows: dict[str, int] = {}
    try:
        for _ in range(repeats + 1):
            for name, parse in parsers.items():
                took, rows[name] = timed_run(spark, path, parse)
                seconds[name].append(took)
                print(f"{master} {name}: {took:.2f} s, {rows[name]} records", file=sys.stderr)
    finally:
        spark.stop()
    if len(set(rows.values())) != 1:
        raise SystemExit(f"the parsers disagree on the record count: {rows}")
    out: dict[str, Any] = {"records": next(iter(rows.values()))}
    for name, runs in seconds.items():
        out[name] = {
            "first_s": round(runs[0], 3),
            "median_s": round(statistics.median(runs[1:]), 3),
            "best_s": round(min(runs[1:]), 3),
        }
    out["speedup_median"] = round(
        out["spark_expressions"]["median_s"] / out["python_in_tasks"]["median_s"], 2
    )
    return out


def main(argv: list[str] | None = None) -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--messages", type=int, default=20_000, help="bronze lines before duplicates")
    parser.add_argument("--repeats", type=int, default=3, help="timed runs per parser after one warm-up")
    parser.add_argument("--masters", nargs="+", default=["local[1]", "local[2]"], help="spark.master values")
    parser.add_argument("--out", default=None, help="results file (default bench/results/parse_bronze.json)")
    parser.add_argument("--baseline-rev", default=BASELINE_REV, help="git revision of the former parser")
    args = parser.parse_args(argv)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "bronze.jsonl"
        records = bronze_file(path, args.messages)
        baseline = baseline_parser(args.baseline_rev, Path(tmp))
        result: dict[str, Any] = {
            "command": kit.command_line(),
            "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
            "machine": kit.machine(),
            "messages": args.messages,
            "records_before_dedupe": records,
            "baseline_rev": args.baseline_rev,
            "by_master": {
                m: run_master(m, path, args.repeats, Path(tmp) / "lake", baseline) for m in args.masters
            },
        }
    kit.save("parse_bronze", result, args.out)
    return 0


if __name__ == "__main__":
    sys.exit(main())

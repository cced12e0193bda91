"""Benchmark: ObjectReader.read on many small orders CSV files, clean and with a few bad values.

Writes N small orders CSV files (50 rows each) into a temporary local lake and
times ``ObjectReader.read`` on all of them, once per scenario:

- ``all_good``: every value converts (the fast path);
- ``bad_2pct``: 2% of the files have one value that does not convert;
- ``zoneless``: every timestamp lacks a zone (read as UTC);
- ``extra_column``: every file has a column the contract does not declare.

    .venv/bin/python bench/reader_files.py --files 3000

Prints files/s per scenario and worker count (best and median of the repeats,
and files per CPU-second, steadier when other work shares the machine) and
writes them to bench/results/reader_files.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import logging
import os
import platform
import statistics
import sys
import tempfile
import time
from collections.abc import Callable
from pathlib import Path

import benchkit as kit

from jobs.contracts import load_contracts
from jobs.objects.reader import ObjectReader, ObjectRef

PROJECT = Path(__file__).resolve().parents[1]
BUCKET = "bench-lake"
HEADER = "order_id,customer_id,amount,currency,order_ts"


def orders_csv(file_no: int, rows: int, *, bad: bool, zoneless: bool, extra: bool) -> str:
    lines = [HEADER + (",note" if extra else "")]
    for i in range(rows):
        ts = dt.datetime(2024, 3, 1 + i % 5, i % 24, i % 60, tzinfo=dt.UTC)
        stamp = ts.strftime("%Y-%m-%d %H:%M:%S" if zoneless else "%Y-%m-%dT%H:%M:%SZ")
        order_id = "not-a-number" if bad and i == rows // 2 else str(file_no * 1000 + i)
        line = f"{order_id},c{i % 500},{(i * 37) % 9999 / 100:.2f},EUR,{stamp}"
        lines.append(line + (f",n{i}" if extra else ""))
    return "\n".join(lines) + "\n"


def write_files(lake: Path, scenario: str, files: int, rows: int) -> list[ObjectRef]:
    refs = []
    for n in range(files):
        key = f"t1/raw/orders/{scenario}/{n:05d}.csv"
        body = orders_csv(
            n,
            rows,
            bad=scenario == "bad_2pct" and n % 50 == 25,
            zoneless=scenario == "zoneless",
            extra=scenario == "extra_column",
        )
        path = lake / BUCKET / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_text(body)
        refs.append(ObjectRef(BUCKET, key, "t1", "orders", None, None, f"{n:018X}", None, None))
    return refs


def timed(run: Callable[[], object], repeats: int) -> list[tuple[float, float]]:
    """(wall seconds, CPU seconds of this process) per repeat, after one warm-up run."""
    run()  # warm-up: page cache, imports
    seconds = []
    for _ in range(repeats):
        wall, cpu = time.perf_counter(), time.process_time()
        run()
        seconds.append((time.perf_counter() - wall, time.process_time() - cpu))
    return seconds


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.split("\n")[0])
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--workers", type=int, nargs="+", default=[1, 8])
    parser.add_argument("--repeats", type=int, default=5)
    parser.add_argument(
        "--scenarios", nargs="+", default=["all_good", "bad_2pct", "zoneless", "extra_column"]
    )
    parser.add_argument("--datasets-file", default=str(PROJECT / "conf" / "datasets.yaml"))
    parser.add_argument("--label", default="", help="free text kept in the results, e.g. a commit")
    parser.add_argument("--out", default=str(PROJECT / "bench" / "results" / "reader_files.json"))
    args = parser.parse_args()
    logging.disable(logging.WARNING)  # the bad files' quarantine warnings (readers before row errors)
    orders = load_contracts(args.datasets_file)["orders"]
    results: dict[str, dict[str, object]] = {}
    with tempfile.TemporaryDirectory(prefix="reader-bench-") as tmp:
        lake = Path(tmp)
        for scenario in args.scenarios:
            refs = write_files(lake, scenario, args.files, args.rows)
            for workers in args.workers:
                reader = ObjectReader(lake.as_uri() + "/", max_workers=workers)
                table, outcomes = reader.read(refs, orders)
                seconds = timed(lambda r=reader, f=refs: r.read(f, orders), args.repeats)
                rates = sorted(len(refs) / wall for wall, _ in seconds)
                row = {
                    "workers": workers,
                    "files_per_s_best": round(rates[-1]),
                    "files_per_s_median": round(statistics.median(rates)),
                    # CPU time is steadier than wall time on a shared machine
                    "files_per_cpu_s_best": round(max(len(refs) / cpu for _, cpu in seconds)),
                    "rows": table.num_rows,
                    # getattr: also runs against readers older than ReadOutcome.rows_with_errors
                    "rows_with_errors": sum(getattr(o, "rows_with_errors", 0) for o in outcomes),
                    "quarantined_files": sum(o.status == "quarantined" for o in outcomes),
                }
                results[f"{scenario}/workers={workers}"] = row
                print(f"{scenario:>13} workers={workers}: {row}", flush=True)
    report = {
        "command": "python bench/reader_files.py " + " ".join(sys.argv[1:]),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "files": args.files,
        "rows_per_file": args.rows,
        "repeats": args.repeats,
        "python": platform.python_version(),
        "cpus": os.cpu_count(),
        "load_average_at_end": [round(x, 1) for x in os.getloadavg()],
        "label": args.label,
        "results": results,
    }
    kit.write_results(report, args.out)
    return 0


if __name__ == "__main__":
    raise SystemExit(main())

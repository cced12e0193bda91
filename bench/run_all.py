"""Run the whole benchmark suite, one benchmark after another, and render the report.

    python bench/run_all.py                 # every benchmark (about 25 minutes on 2 cores)
    python bench/run_all.py --report-only   # re-render bench/results/README.md from the JSON files
    python bench/run_all.py --only stream_e2e many_tables

Each benchmark writes ``bench/results/<name>.json`` with the command that produced
it; the report (``bench/results/README.md`` and its plots) is rendered from those
files only, so every figure in it names its command. Benchmarks run one at a time:
on a 2-core machine anything running beside them shows in the figures.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import time
from pathlib import Path

import benchkit as kit
import report

BENCH = Path(__file__).resolve().parent

# name -> arguments; the suite's default sizes (each benchmark's --help explains them)
SUITE: dict[str, list[str]] = {
    "stream_e2e": ["--files", "15000", "--tenants", "10", "--max-files-per-trigger", "30"],
    "stream_e2e_big_batches": [
        *("--files", "15000", "--tenants", "10", "--max-files-per-trigger", "150"),
        *("--out", "bench/results/stream_e2e_big_batches.json"),
    ],
    "stream_e2e_cores": [
        *("--files", "6000", "--tenants", "10", "--max-files-per-trigger", "30"),
        *("--masters", "local[1]", "local[2]"),
    ],
    "stream_e2e_rate": ["--rate", "150", "--duration", "90", "--tenants", "10", "--interval", "5"],
    "many_tables": ["--tables", "100", "300", "1000"],
    "many_tables_8_threads": [
        *("--tables", "100", "--commit-threads", "8"),
        *("--out", "bench/results/many_tables_8_threads.json"),
    ],
    "bridge_capacity": [
        *("--messages", "50000", "--receivers", "1", "4", "8", "--transports", "direct", "boto3"),
        *("--moto-messages", "1000", "--moto-receivers", "1"),
    ],
    "bridge_latency": [
        *("--messages", "5000", "--receivers", "4", "8", "16", "--transports", "direct"),
        *("--moto-messages", "0", "--latency-ms", "10", "--out", "bench/results/bridge_latency.json"),
    ],
    "reader_baseline": ["--files", "3000"],
    "file_sizes": ["--max-mb", "500"],
    "file_sizes_blocks": [
        *("--blocks", "--no-spark", "--max-mb", "2000", "--repeats", "1"),
        *("--out", "bench/results/file_sizes_blocks.json"),
    ],
    "parse_bronze": ["--messages", "20000", "--masters", "local[1]", "local[2]"],
    "judge_ledger": ["--sizes", "0", "1000000", "10000000", "--events", "2000", "--runs", "3"],
    "append_paths": ["--tables", "50", "--rows", "150", "--rounds", "3"],
    "replace_cost": ["--files", "10", "100", "400"],
    "vs_naive": ["--files", "20000", "--tenants", "10", "--masters", "local[1]", "local[2]"],
    "vs_naive_tenants": [
        *("--files", "1200", "--tenants", "400"),
        *("--out", "bench/results/vs_naive_tenants.json"),
    ],
}
# runs of a script under another name
SCRIPTS = {
    "stream_e2e_big_batches": "stream_e2e",
    "stream_e2e_rate": "stream_e2e",
    "stream_e2e_cores": "stream_e2e",
    "bridge_latency": "bridge_capacity",
    "many_tables_8_threads": "many_tables",
    "file_sizes_blocks": "file_sizes",
    "vs_naive_tenants": "vs_naive",
}


def main() -> int:
    """Run the selected benchmarks, then render the report."""
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--only", nargs="+", choices=sorted(SUITE), help="run just these benchmarks")
    parser.add_argument("--report-only", action="store_true", help="only render the report")
    args = parser.parse_args()
    failed = []
    if not args.report_only:
        for name in args.only or list(SUITE):
            script = BENCH / f"{SCRIPTS.get(name, name)}.py"
            cmd = [sys.executable, str(script), *SUITE[name]]
            print(f"== {name}: bench/{script.name} {' '.join(SUITE[name])}", file=sys.stderr, flush=True)
            started = time.perf_counter()
            done = subprocess.run(cmd, cwd=kit.PROJECT, stdout=subprocess.DEVNULL, check=False)
            took = time.perf_counter() - started
            print(f"   {'ok' if done.returncode == 0 else 'FAILED'} in {took:.0f}s", file=sys.stderr)
            if done.returncode:
                failed.append(name)
    path = report.render(kit.RESULTS)
    print(f"report: {path}", file=sys.stderr)
    if failed:
        print(f"failed: {', '.join(failed)}", file=sys.stderr)
    return 1 if failed else 0


if __name__ == "__main__":
    sys.exit(main())

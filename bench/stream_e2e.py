"""Benchmark: bronze -> committed silver, end to end, small CSV files across tenants.

Writes N small orders CSV files (about 50 rows each) for T tenants into a fresh
local lake, lands one S3 notification per file in the bronze log (as the SQS
bridge would), then runs `silverline stream --no-bridge --trigger available-now`
in its own process and reads the batch metrics it wrote.

    .venv/bin/python bench/stream_e2e.py --files 3000 --tenants 10

Prints the figures and writes them to bench/results/stream_e2e.json.
"""

from __future__ import annotations

import argparse
import datetime as dt
import hashlib
import json
import os
import random
import subprocess
import sys
import tempfile
import time
from pathlib import Path
from typing import Any

import yaml

PROJECT = Path(__file__).resolve().parents[1]
BUCKET = "bench-lake"
GROUP = "bench"


def orders_csv(rng: random.Random, n_rows: int, file_no: int) -> bytes:
    lines = ["order_id,customer_id,amount,currency,order_ts"]
    for i in range(n_rows):
        ts = dt.datetime(2024, 3, 1 + i % 5, rng.randint(0, 23), rng.randint(0, 59), tzinfo=dt.UTC)
        lines.append(f"{file_no * 1000 + i},c{rng.randint(1, 500)},{rng.randint(100, 99999) / 100:.2f},EUR,"
                     f"{ts.strftime('%Y-%m-%dT%H:%M:%SZ')}")  # fmt: skip
    return ("\n".join(lines) + "\n").encode()


def notification(key: str, data: bytes, sequencer: int, when: dt.datetime) -> str:
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": when.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": BUCKET},
            "object": {
                "key": key,
                "size": len(data),
                "eTag": hashlib.md5(data).hexdigest(),
                "sequencer": f"{sequencer:018X}",
            },
        },
    }
    return json.dumps({"Records": [record]})


def build(lake: Path, files: int, tenants: int, rows: int, per_bronze_file: int) -> None:
    rng = random.Random(42)
    now = dt.datetime.now(dt.UTC)
    lines = []
    for n in range(files):
        key = f"tenant{n % tenants:03d}/raw/orders/2024/03/{n:06d}.csv"
        data = orders_csv(rng, rows, n)
        path = lake / BUCKET / key
        path.parent.mkdir(parents=True, exist_ok=True)
        path.write_bytes(data)
        body = notification(key, data, 0x5500000000000000 + n, now)
        stamp = now.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"
        line = {"message_id": f"m-{n}", "queue_url": "bench", "body": body, "received_at": stamp}
        line.update({"receive_count": 1, "sent_at": stamp, "bridge_id": "bench"})
        lines.append(json.dumps(line))
    bronze = lake / "_ops" / GROUP / "bronze" / f"dt={now:%Y-%m-%d}"
    bronze.mkdir(parents=True, exist_ok=True)
    for start in range(0, len(lines), per_bronze_file):
        (bronze / f"{start:09d}-bench.jsonl").write_text(
            "\n".join(lines[start : start + per_bronze_file]) + "\n"
        )


def write_config(tmp: Path, lake: Path, max_files: int) -> Path:
    config = {
        "group": {"name": GROUP, "bucket": BUCKET},
        "lake": {"root": str(lake)},
        "stream": {
            "datasets_file": str(PROJECT / "conf" / "datasets.yaml"),
            "max_files_per_trigger": max_files,
        },
        "spark": {"master": "local[2]", "defaults_file": str(PROJECT / "conf" / "spark" / "local.conf")},
    }
    path = tmp / "bench.yaml"
    path.write_text(yaml.safe_dump(config))
    return path


def read_metrics(lake: Path) -> list[dict[str, Any]]:
    from pyiceberg.table import StaticTable

    table_dir = lake / "_ops" / GROUP / "tables" / "ops" / "batch_metrics" / "metadata"
    latest = max(table_dir.glob("v*.metadata.json"), key=lambda p: int(p.name.split(".")[0][1:]))
    return StaticTable.from_metadata(str(latest)).scan().to_arrow().to_pylist()


def main() -> int:
    parser = argparse.ArgumentParser(
        description=__doc__, formatter_class=argparse.RawDescriptionHelpFormatter
    )
    parser.add_argument("--files", type=int, default=3000)
    parser.add_argument("--tenants", type=int, default=10)
    parser.add_argument("--rows", type=int, default=50)
    parser.add_argument("--per-bronze-file", type=int, default=100, help="messages per bronze file")
    parser.add_argument("--max-files-per-trigger", type=int, default=10, help="bronze files per micro-batch")
    parser.add_argument("--out", default=str(PROJECT / "bench" / "results" / "stream_e2e.json"))
    args = parser.parse_args()
    with tempfile.TemporaryDirectory(prefix="silverline-bench-") as tmp_name:
        tmp = Path(tmp_name)
        lake = tmp / "lake"
        build(lake, args.files, args.tenants, args.rows, args.per_bronze_file)
        config = write_config(tmp, lake, args.max_files_per_trigger)
        cmd = [sys.executable, "-m", "jobs", "--log-level", "WARNING", "stream", "--config", str(config),
               "--no-bridge", "--trigger", "available-now"]  # fmt: skip
        started = time.perf_counter()
        done = subprocess.run(cmd, env={**os.environ}, capture_output=True, text=True, check=False)
        wall = time.perf_counter() - started
        if done.returncode != 0:
            print(done.stderr[-3000:], file=sys.stderr)
            return 1
        rows = read_metrics(lake)
    batch_seconds = sum((r["finished_at"] - r["started_at"]).total_seconds() for r in rows)
    applied = sum(r["applied"] for r in rows)
    result = {
        "command": "python bench/stream_e2e.py " + " ".join(sys.argv[1:]),
        "when": dt.datetime.now(dt.UTC).isoformat(timespec="seconds"),
        "files": args.files,
        "tenants": args.tenants,
        "rows_per_file": args.rows,
        "batches": len(rows),
        "applied_events": applied,
        "rows_written": sum(r["rows_written"] for r in rows),
        "wall_seconds_incl_jvm_start": round(wall, 1),
        "batch_seconds": round(batch_seconds, 1),
        "events_per_s_in_batches": round(applied / batch_seconds, 1) if batch_seconds else None,
        "events_per_s_wall": round(applied / wall, 1),
        "freshness_p95_s_max_over_batches": max((r["freshness_p95_s"] or 0) for r in rows),
        "all_batches_balanced": all(json.loads(r["details"])["balanced"] for r in rows),
        "phase_seconds": {
            k: round(sum(json.loads(r["details"])["phase_seconds"].get(k, 0) for r in rows), 1)
            for k in ("parse", "judge", "read", "validate", "commit", "ledger")
        },
    }
    result["validation_share_of_batch_time"] = (
        round(result["phase_seconds"]["validate"] / batch_seconds, 3) if batch_seconds else None
    )
    print(json.dumps(result, indent=2))
    Path(args.out).parent.mkdir(parents=True, exist_ok=True)
    Path(args.out).write_text(json.dumps(result, indent=2) + "\n")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Objects larger than a block: read a block at a time, with the rows and outcomes of a whole read (R11)."""

from __future__ import annotations

import gzip
import hashlib
import io
import json
import subprocess
import sys
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.objects.reader import ObjectReader
from tests.objects.test_reader import CLICKS, INVENTORY, ORDERS, put, ref, root_of

pytestmark = pytest.mark.unit

BLOCK = 4096


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    path = tmp_path / "lake"
    path.mkdir()
    return path


def orders_csv(rows: int, *, bad_every: int = 97) -> bytes:
    """Orders with an undeclared column, empty values and a value that does not convert now and then."""
    lines = ["order_id,customer_id,currency,amount,order_ts,note"]
    for i in range(1, rows + 1):
        amount = "twelve" if i % bad_every == 0 else f"{i}.50"
        customer = "" if i % 11 == 0 else f'"c,{i}"'
        lines.append(f"{i},{customer},EUR,{amount},2024-03-01T10:{i % 60:02d}:00Z,n{i}")
    return ("\n".join(lines) + "\n").encode()


def clicks_jsonl(rows: int) -> bytes:
    lines = []
    for i in range(1, rows + 1):
        row: dict[str, object] = {"event_id": f"e{i}", "page": f"/p{i}", "duration_ms": i, "x": i}
        if i % 50 == 0:
            row["duration_ms"] = "slow"  # a value of the wrong JSON type: its row is marked
        lines.append(json.dumps(row))
        if i % 40 == 0:
            lines.append("")  # blank lines are skipped and not counted
    return ("\n".join(lines) + "\n").encode()


def inventory_parquet(rows: int) -> bytes:
    table = pa.table(
        {
            "sku": [f"s{i}" for i in range(rows)],
            "warehouse": ["w"] * rows,
            "qty": pa.array(range(rows), pa.int64()),
            "snapshot_date": pa.array([None] * rows, pa.date32()),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink, row_group_size=rows // 3)
    return sink.getvalue()


CASES = {
    "csv": (ORDERS, "t1/raw/orders/big.csv", orders_csv(1500)),
    "csv.gz": (ORDERS, "t1/raw/orders/big.csv.gz", gzip.compress(orders_csv(1500))),
    "jsonl": (CLICKS, "t1/raw/clicks/big.jsonl", clicks_jsonl(1200)),
    "jsonl.gz": (CLICKS, "t1/raw/clicks/big.jsonl.gz", gzip.compress(clicks_jsonl(1200))),
    "parquet": (INVENTORY, "t1/raw/inventory/big.parquet", inventory_parquet(3000)),
}


@pytest.mark.parametrize("case", list(CASES))
def test_an_object_over_a_block_reads_the_rows_of_a_whole_read(lake: Path, case: str) -> None:
    contract, key, body = CASES[case]
    put(lake, key, body)
    whole_table, whole_outcomes = ObjectReader(root_of(lake)).read([ref(key)], contract)

    reader = ObjectReader(root_of(lake), block_bytes=BLOCK)
    pieces = list(reader.read_pieces([ref(key)], contract))
    table, outcomes = reader.read([ref(key)], contract)

    first, *blocks, last = pieces
    assert (first.table.num_rows, first.outcomes, first.streamed) == (0, [], None)
    assert len(blocks) >= 3 and all(p.streamed == 0 and not p.outcomes for p in blocks)
    assert (last.table.num_rows, last.streamed, [i for i, _ in last.outcomes]) == (0, 0, [0])
    assert [(o.status, o.rows, o.rows_with_errors) for o in outcomes] == [
        (o.status, o.rows, o.rows_with_errors) for o in whole_outcomes
    ]
    assert whole_outcomes[0].status == "ok" and whole_outcomes[0].rows > 1000
    assert table.equals(whole_table)  # row numbers, rescued values, conversion errors included
    if case != "parquet":
        assert whole_outcomes[0].rows_with_errors > 10


def test_a_limit_in_a_later_block_quarantines_the_object_and_drops_its_earlier_rows(lake: Path) -> None:
    lines = orders_csv(800).split(b"\n")
    lines[700] = lines[700] + b"x" * 3000  # line 701 counting the header
    put(lake, "t1/raw/orders/long.csv", b"\n".join(lines))
    put(lake, "t1/raw/orders/fine.csv", orders_csv(5))
    reader = ObjectReader(root_of(lake), block_bytes=BLOCK, max_row_bytes=2048)
    refs = [ref("t1/raw/orders/long.csv"), ref("t1/raw/orders/fine.csv")]

    pieces = list(reader.read_pieces(refs, ORDERS))
    table, outcomes = reader.read(refs, ORDERS)

    assert sum(p.table.num_rows for p in pieces if p.streamed == 0) > 500  # blocks came before the end
    assert [(o.status, o.reason, o.rows) for o in outcomes] == [
        ("quarantined", "row_bytes_limit", 0),
        ("ok", None, 5),
    ]
    assert "line 701 " in (outcomes[0].detail or "") and "stream.max_row_bytes" in (outcomes[0].detail or "")
    assert set(table["_source_key"].to_pylist()) == {"t1/raw/orders/fine.csv"}


def test_a_line_with_no_end_past_the_row_limit_is_refused_without_reading_on(lake: Path) -> None:
    put(lake, "t1/raw/orders/one-line.csv", orders_csv(0) + b"1" + b"9" * 50_000)
    reader = ObjectReader(root_of(lake), block_bytes=BLOCK, max_row_bytes=10_000)

    _, (outcome,) = reader.read([ref("t1/raw/orders/one-line.csv")], ORDERS)

    assert (outcome.status, outcome.reason) == ("quarantined", "row_bytes_limit")
    assert "line 2 is over " in (outcome.detail or "")


def test_a_gzip_expanding_past_a_block_is_streamed_and_past_the_limit_quarantined(lake: Path) -> None:
    body = orders_csv(3000)
    put(lake, "t1/raw/orders/big.csv.gz", gzip.compress(body))
    block = len(body) // 4
    assert len(gzip.compress(body)) < block  # the stored object fits in a block, its expansion does not
    reader = ObjectReader(root_of(lake), block_bytes=block, max_decompressed_bytes=len(body) + 1)
    tight = ObjectReader(root_of(lake), block_bytes=BLOCK, max_decompressed_bytes=len(body) - 1)

    pieces = list(reader.read_pieces([ref("t1/raw/orders/big.csv.gz")], ORDERS))
    _, (refused,) = tight.read([ref("t1/raw/orders/big.csv.gz")], ORDERS)

    assert len(pieces) >= 3 and pieces[-1].outcomes[0][1].rows == 3000
    assert (refused.status, refused.reason) == ("quarantined", "decompressed_bytes_limit")
    assert f"{len(body) - 1:,}" in (refused.detail or "")


def test_a_streamed_file_whose_content_changed_is_superseded_at_its_end(lake: Path) -> None:
    body = orders_csv(600)
    put(lake, "t1/raw/orders/a.csv", body)
    named = '"' + hashlib.md5(body + b"other", usedforsecurity=False).hexdigest() + '"'
    reader = ObjectReader(root_of(lake), block_bytes=BLOCK)

    table, (outcome,) = reader.read([ref("t1/raw/orders/a.csv", etag=named)], ORDERS)
    _, (same,) = reader.read(
        [ref("t1/raw/orders/a.csv", etag=hashlib.md5(body, usedforsecurity=False).hexdigest())], ORDERS
    )

    assert (outcome.status, outcome.reason, table.num_rows) == ("superseded", "etag_changed", 0)
    assert (same.status, same.rows) == ("ok", 600)


def test_reading_a_large_csv_in_blocks_keeps_memory_flat(tmp_path: Path) -> None:
    """A 150 MB CSV read through 4 MiB blocks: the process grows by far less than the object.

    Measured in a child process (peak RSS), as the whole read would have shown: about
    4x the object's size.
    """
    rows = 150 * (1 << 20) // 60
    line = b"%d,c-1,EUR,12.50,2024-03-01T10:00:00Z,a note of some length\n"
    path = tmp_path / "lake" / "b" / "t1" / "raw" / "orders" / "huge.csv"
    path.parent.mkdir(parents=True)
    with path.open("wb") as out:
        out.write(b"order_id,customer_id,currency,amount,order_ts,note\n")
        chunk = 100_000
        for start in range(0, rows, chunk):
            out.write(b"".join(line % i for i in range(start, min(rows, start + chunk))))
    size = path.stat().st_size
    script = f"""
import resource, json
from pathlib import Path
from jobs.contracts import load_contracts
from jobs.objects.reader import ObjectReader, ObjectRef
orders = load_contracts(Path("conf/datasets.yaml"))["orders"]
reader = ObjectReader({(tmp_path / "lake").as_uri() + "/"!r}, block_bytes=4 << 20)
ref = ObjectRef("b", "t1/raw/orders/huge.csv", "t1", "orders", None, None, None, None, None)
before = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
rows, outcome = 0, None
for piece in reader.read_pieces([ref], orders):
    rows += piece.table.num_rows
    outcome = piece.outcomes[0][1] if piece.outcomes else outcome
after = resource.getrusage(resource.RUSAGE_SELF).ru_maxrss
print(json.dumps({{"rows": rows, "status": outcome.status, "growth_kb": after - before}}))
"""
    project = Path(__file__).resolve().parents[2]
    done = subprocess.run(
        [sys.executable, "-c", script], cwd=project, capture_output=True, text=True, timeout=300, check=True
    )
    result = json.loads(done.stdout.strip().splitlines()[-1])
    assert (result["rows"], result["status"]) == (rows, "ok")
    growth = result["growth_kb"] * 1024
    print(f"object {size / 1e6:.0f} MB, peak RSS growth {growth / 1e6:.0f} MB")
    assert growth < size / 3, f"peak RSS grew by {growth:,} bytes reading a {size:,}-byte object"

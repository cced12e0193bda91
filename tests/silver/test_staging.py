"""Staging: rows a task stages reach the driver's Spark through Parquet files, values and types intact."""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pytest

from jobs.bridge.landing import LocalBronzeStore
from jobs.silver.fastappend import put_local
from jobs.silver.staging import RowStaging, stage, staged_frame

UTC = dt.UTC
COLUMNS = [
    ("order_id", "bigint"),
    ("amount", "decimal(10,2)"),
    ("order_ts", "timestamp"),
    ("_failed", "array<string>"),
    ("note", "string"),
]


def _staging(tmp_path: Path) -> RowStaging:
    return RowStaging(LocalBronzeStore(tmp_path / "staging"), tmp_path / "staging")


def _table() -> pa.Table:
    import decimal

    return pa.table(
        {
            "order_id": pa.array([1, None, 3], pa.int64()),
            "amount": pa.array(
                [decimal.Decimal("1.50"), None, decimal.Decimal("-2.25")], pa.decimal128(10, 2)
            ),
            "order_ts": pa.array(
                [
                    dt.datetime(2024, 3, 1, 12, 0, tzinfo=UTC),
                    None,
                    dt.datetime(2024, 3, 2, 0, 30, tzinfo=UTC),
                ],
                pa.timestamp("us", tz="UTC"),
            ),
            "_failed": pa.array([[], None, ["not_null(order_id)", "range(amount)"]], pa.list_(pa.string())),
            "note": pa.array(["a", None, 'ü,\n"quoted"'], pa.string()),
            "not_staged": pa.array(["x", "y", "z"], pa.string()),
        }
    )


def _stage(tmp_path: Path, table: pa.Table, label: str) -> str:
    """Stage the declared columns as a task does."""
    return stage(
        table.select([n for n, _ in COLUMNS]), (tmp_path / "staging").as_uri() + "/", label, put_local
    )


@pytest.mark.spark
def test_staged_rows_come_back_with_their_values_and_declared_types(spark: Any, tmp_path: Path) -> None:
    # Two staged files (two tasks' shares) read as one frame, in declared order and types.
    uris = [_stage(tmp_path, _table().slice(0, 2), "batch7"), _stage(tmp_path, _table().slice(2), "batch7")]
    frame = staged_frame(spark, uris, COLUMNS)

    assert [(f.name, f.dataType.simpleString()) for f in frame.schema.fields] == COLUMNS
    rows = sorted((r.asDict() for r in frame.collect()), key=lambda r: r["order_id"] or 0)
    import decimal

    assert rows == [
        {"order_id": None, "amount": None, "order_ts": None, "_failed": None, "note": None},
        {"order_id": 1, "amount": decimal.Decimal("1.50"), "order_ts": dt.datetime(2024, 3, 1, 12, 0),
         "_failed": [], "note": "a"},
        {"order_id": 3, "amount": decimal.Decimal("-2.25"), "order_ts": dt.datetime(2024, 3, 2, 0, 30),
         "_failed": ["not_null(order_id)", "range(amount)"], "note": "ü,\n\"quoted\""},
    ]  # fmt: skip


@pytest.mark.spark
def test_no_staged_file_reads_as_an_empty_frame_of_the_columns(spark: Any, tmp_path: Path) -> None:
    frame = staged_frame(spark, [], COLUMNS)

    assert frame.count() == 0
    assert [(f.name, f.dataType.simpleString()) for f in frame.schema.fields] == COLUMNS
    empty = staged_frame(spark, [_stage(tmp_path, _table().slice(0, 0), "batch1")], COLUMNS)
    assert empty.count() == 0


@pytest.mark.spark
def test_clear_removes_every_staged_file_and_nothing_else(spark: Any, tmp_path: Path) -> None:
    staging = _staging(tmp_path)
    _stage(tmp_path, _table(), "batch1")
    _stage(tmp_path, _table(), "batch2")
    neighbour = tmp_path / "bronze.jsonl"
    neighbour.write_text("{}\n")

    assert sorted(p.name.split("-")[0] for p in (tmp_path / "staging").glob("*.parquet")) == [
        "batch1",
        "batch2",
    ]
    assert staging.clear() == 2
    assert list((tmp_path / "staging").glob("*.parquet")) == []
    assert staging.clear() == 0
    assert neighbour.read_text() == "{}\n"

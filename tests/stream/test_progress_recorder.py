"""The stream_progress recorder: one row per batch with input, none (and no Spark work) for empty triggers."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.stream.ops import ops_table
from jobs.stream.query import ProgressRecorder


class FakeQuery:
    id = "q-1"

    def __init__(self, progress: list[dict[str, Any]]) -> None:
        self.recentProgress = progress


class NoSpark:
    """Fails the test if the recorder asks Spark for anything."""

    def __getattr__(self, name: str) -> Any:
        raise AssertionError(f"the recorder used Spark ({name}) for a trigger without input")


def progress(batch: int, rows: int, dropped: int = 0) -> dict[str, Any]:
    operators = [{"customMetrics": {"numDroppedDuplicateRows": dropped}, "numRowsDroppedByWatermark": 0}]
    return {"batchId": batch, "numInputRows": rows, "stateOperators": operators}


@pytest.mark.unit
def test_a_trigger_without_input_writes_nothing_and_costs_no_spark_job() -> None:
    recorder = ProgressRecorder(NoSpark(), "t")  # type: ignore[arg-type]
    # An available-now run with nothing new, and a restarted query reporting its last batch again.
    assert recorder.record(FakeQuery([progress(0, 0), progress(7, 0)])) == 0  # type: ignore[arg-type]
    assert recorder.recorded == set()
    assert recorder.record(FakeQuery([progress(0, 0), progress(7, 0)])) == 0  # type: ignore[arg-type]


@pytest.mark.unit
def test_a_batch_with_input_or_drops_is_written() -> None:
    written: list[str] = []

    class Recorder(ProgressRecorder):
        def _upsert(self, rows: Any) -> None:
            written.extend(str(r[:5]) for r in rows)

    recorder = Recorder(NoSpark(), "t")  # type: ignore[arg-type]
    query = FakeQuery([progress(1, 5), progress(2, 0), progress(3, 0, dropped=2)])
    assert recorder.record(query) == 2  # type: ignore[arg-type]
    assert written == ["(1, 'q-1', 5, 0, 0)", "(3, 'q-1', 0, 2, 0)"]
    assert recorder.recorded == {1, 3}
    # A restarted query (an available-now round over the same checkpoint) runs batch 2 with
    # input after a trigger reported batch 2 empty: its drops are recorded, not skipped.
    assert recorder.record(FakeQuery([progress(2, 4, dropped=1)])) == 1  # type: ignore[arg-type]
    assert written[-1] == "(2, 'q-1', 4, 1, 0)"
    assert recorder.record(FakeQuery([progress(2, 4, dropped=1)])) == 0  # type: ignore[arg-type]


@pytest.mark.spark
def test_new_batches_are_appended_without_a_spark_job_and_a_reported_again_batch_is_replaced(
    harness: Any,
) -> None:
    table = ops_table(harness.config, "stream_progress")
    recorder = ProgressRecorder(harness.spark, table)
    assert recorder.record(FakeQuery([progress(0, 5), progress(1, 3, dropped=1)])) == 2  # type: ignore[arg-type]
    assert snapshot_operations(harness.spark, table)[-1] == "append"

    # Another process's recorder (a restarted query) reports batch 1 again, now with more input.
    again = ProgressRecorder(harness.spark, table)
    assert again.record(FakeQuery([progress(1, 4, dropped=2)])) == 1  # type: ignore[arg-type]
    assert snapshot_operations(harness.spark, table)[-1] == "overwrite"
    rows = sorted(tuple(r)[:5] for r in harness.spark.table(table).collect())
    assert rows == [(0, "q-1", 5, 0, 0), (1, "q-1", 4, 2, 0)]


def snapshot_operations(spark: Any, table: str) -> list[str]:
    spark.catalog.refreshTable(table)
    found = spark.sql(f"SELECT operation FROM {table}.snapshots ORDER BY committed_at").collect()
    return [r["operation"] for r in found]

"""The stream_progress recorder: one row per batch with input, none (and no Spark work) for empty triggers."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.stream.query import ProgressRecorder

pytestmark = pytest.mark.unit


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


def test_a_trigger_without_input_writes_nothing_and_costs_no_spark_job() -> None:
    recorder = ProgressRecorder(NoSpark(), "t")  # type: ignore[arg-type]
    # An available-now run with nothing new, and a restarted query reporting its last batch again.
    assert recorder.record(FakeQuery([progress(0, 0), progress(7, 0)])) == 0  # type: ignore[arg-type]
    assert recorder.recorded == set()
    assert recorder.record(FakeQuery([progress(0, 0), progress(7, 0)])) == 0  # type: ignore[arg-type]


def test_a_batch_with_input_or_drops_is_written() -> None:
    written: list[str] = []

    class Spark:
        def table(self, name: str) -> Any:
            return type("T", (), {"schema": None})()

        def createDataFrame(self, rows: list[tuple[Any, ...]], schema: Any) -> Any:  # noqa: N802
            written.extend(str(r[:5]) for r in rows)
            return type("F", (), {"createOrReplaceTempView": lambda self, name: None})()

        def sql(self, statement: str) -> None:
            assert statement.lstrip().startswith("MERGE INTO t")

    recorder = ProgressRecorder(Spark(), "t")  # type: ignore[arg-type]
    query = FakeQuery([progress(1, 5), progress(2, 0), progress(3, 0, dropped=2)])
    assert recorder.record(query) == 2  # type: ignore[arg-type]
    assert written == ["(1, 'q-1', 5, 0, 0)", "(3, 'q-1', 0, 2, 0)"]
    assert recorder.recorded == {1, 3}
    # A restarted query (an available-now round over the same checkpoint) runs batch 2 with
    # input after a trigger reported batch 2 empty: its drops are recorded, not skipped.
    assert recorder.record(FakeQuery([progress(2, 4, dropped=1)])) == 1  # type: ignore[arg-type]
    assert written[-1] == "(2, 'q-1', 4, 1, 0)"
    assert recorder.record(FakeQuery([progress(2, 4, dropped=1)])) == 0  # type: ignore[arg-type]

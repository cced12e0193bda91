"""Snapshot properties of silverline's commits, through Iceberg's Java API (py4j).

Every snapshot a micro-batch commits carries ``silverline.query-id`` and
``silverline.batch-id`` in its summary. They are set with Iceberg's
``CommitMetadata.withCommitProperties``, a *thread-local* on the JVM side
(Iceberg 1.10 has no session conf for snapshot properties, and SQL ``MERGE``
takes no write options). PySpark pins each Python thread to its own JVM thread
and py4j runs the callback on that same pair, so concurrent commits of
different tables never see each other's properties. A replayed micro-batch
finds its own snapshot and is skipped.
"""

from __future__ import annotations

from collections.abc import Callable, Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, TypeVar

from py4j.java_gateway import JavaClass, JavaMember
from py4j.protocol import STATIC_PREFIX

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

T = TypeVar("T")

SNAPSHOT_QUERY_ID = "silverline.query-id"
SNAPSHOT_BATCH_ID = "silverline.batch-id"
SNAPSHOT_SEARCH_DEPTH = 50


def jvm_of(spark: SparkSession) -> Any:
    """The session's py4j JVM view (Iceberg's Java API is reached through it)."""
    jvm = spark._jvm
    if jvm is None:
        raise RuntimeError("silver commits need a classic SparkSession with a JVM (not Spark Connect)")
    return jvm


def java(spark: SparkSession, name: str) -> Any:
    """A Java class by its full name, e.g. ``java(spark, "java.util.ArrayList")()`` (py4j).

    ``spark._jvm.org.apache.iceberg.DataFiles`` asks the JVM about each dotted prefix in
    turn, and every prefix that is not a class is searched for in every jar on the class
    path: 1.5 ms per name here, against 0.1 ms for a class named in full. A commit names
    about ten.
    """
    return JavaClass(name, jvm_of(spark)._gateway_client)


def static(spark: SparkSession, method: str) -> Any:
    """A static Java method by its full name, e.g. ``static(spark, "java.util.Objects.hash")(1)``.

    Nothing is asked of the JVM until it is called: ``java(spark, cls).method`` first asks
    whether ``method`` is a field, a method or a class (a round trip).
    """
    cls, _, name = method.rpartition(".")
    return JavaMember(name, None, STATIC_PREFIX + cls, jvm_of(spark)._gateway_client)


def load_table(spark: SparkSession, table: str) -> Any:
    """The Iceberg ``Table`` behind a Spark table name, refreshed to its newest metadata (py4j)."""
    load = static(spark, "org.apache.iceberg.spark.Spark3Util.loadIcebergTable")
    iceberg = load(spark._jsparkSession, table)
    iceberg.refresh()
    return iceberg


@dataclass(frozen=True)
class BatchSnapshot:
    """A snapshot committed by one micro-batch."""

    snapshot_id: int
    added_records: int


def find_batch_snapshot(
    spark: SparkSession, table: str, *, batch_id: int, query_id: str, depth: int = SNAPSHOT_SEARCH_DEPTH
) -> BatchSnapshot | None:
    """The snapshot this batch committed, searched among the newest ``depth`` current ancestors.

    Reads the table's metadata through Iceberg's Java API (no Spark job). Later
    commits by maintenance or backfills may sit on top; ``depth`` bounds the walk.

    Args:
        spark: The session.
        table: The table identifier.
        batch_id: The micro-batch id.
        query_id: The streaming query id.
        depth: How many snapshots to look at, newest first.

    Returns:
        The snapshot, or None.
    """
    return batch_snapshot_in(load_table(spark, table), batch_id=batch_id, query_id=query_id, depth=depth)


def batch_snapshot_in(
    iceberg: Any, *, batch_id: int | str, query_id: str, depth: int = SNAPSHOT_SEARCH_DEPTH
) -> BatchSnapshot | None:
    """:func:`find_batch_snapshot` in an Iceberg ``Table`` already loaded (Java API).

    The walk stops early at a snapshot of an earlier micro-batch of the same query: a
    query's batches run one after the other, each replayed only before the next starts,
    so nothing of a later batch lies below an earlier one. Usually the table's current
    snapshot is the query's previous batch, and one snapshot is read instead of ``depth``
    (each costs a few py4j round trips). Retry passes (negative ids) are not ordered:
    their search, and a search past their snapshots, goes on to ``depth``.
    """
    ours = int(batch_id)
    snapshot = iceberg.currentSnapshot()
    for _ in range(depth):
        if snapshot is None:
            return None
        summary = snapshot.summary()
        if summary.get(SNAPSHOT_QUERY_ID) == query_id:
            theirs = _batch_id_of(summary.get(SNAPSHOT_BATCH_ID))
            if theirs == ours:
                return BatchSnapshot(int(snapshot.snapshotId()), int(summary.get("added-records") or 0))
            if theirs is not None and 0 <= theirs < ours:
                return None
        parent = snapshot.parentId()
        snapshot = iceberg.snapshot(parent) if parent is not None else None
    return None


def _batch_id_of(value: str | None) -> int | None:
    """A snapshot's ``silverline.batch-id`` as a number (None when absent or not a number)."""
    try:
        return None if value is None else int(value)
    except ValueError:
        return None


class _JavaCallable:
    """A ``java.util.concurrent.Callable`` implemented in Python (py4j callback).

    Exceptions are kept on the Python side and re-raised by the caller, so the
    original (Python) error type survives the round trip through the JVM.
    """

    def __init__(self, action: Callable[[], Any]) -> None:
        self.action = action
        self.result: Any = None
        self.error: BaseException | None = None

    def call(self) -> None:
        """Run the action (called from the JVM)."""
        try:
            self.result = self.action()
        except BaseException as exc:  # re-raised in with_commit_properties
            self.error = exc

    class Java:
        implements = ("java.util.concurrent.Callable",)


def with_commit_properties(spark: SparkSession, properties: Mapping[str, str], action: Callable[[], T]) -> T:
    """Run ``action`` so that Iceberg commits it makes on this thread carry ``properties``.

    Args:
        spark: The session (its py4j gateway reaches Iceberg's ``CommitMetadata``).
        properties: Snapshot summary properties.
        action: What to run, e.g. a ``spark.sql("MERGE ...")``.

    Returns:
        What ``action`` returned.
    """
    java_map = java(spark, "java.util.HashMap")()
    for key, value in properties.items():
        java_map.put(key, value)
    callable_ = _JavaCallable(action)
    java(spark, "org.apache.iceberg.spark.CommitMetadata").withCommitProperties(
        java_map, callable_, java(spark, "java.lang.Class").forName("java.lang.RuntimeException")
    )
    if callable_.error is not None:
        raise callable_.error
    result: T = callable_.result
    return result


def current_snapshot_id(spark: SparkSession, table: str) -> int | None:
    """The id of a table's current snapshot, read through Iceberg's Java API (no Spark job).

    Args:
        spark: The session.
        table: The table identifier.

    Returns:
        The snapshot id, or None for a table without snapshots.
    """
    iceberg = load_table(spark, table)
    snapshot = iceberg.currentSnapshot()
    return None if snapshot is None else int(snapshot.snapshotId())


def holds_no_rows(spark: SparkSession, table: str) -> bool:
    """Whether a table certainly has no rows, from its current snapshot's summary (no Spark job).

    ``total-records`` counts the rows of the live data files, before any delete file is
    applied: 0 means empty, anything else means "count to know".

    Args:
        spark: The session.
        table: The table identifier.

    Returns:
        True when the table has no snapshot or its current one holds no data rows.
    """
    iceberg = load_table(spark, table)
    snapshot = iceberg.currentSnapshot()
    return snapshot is None or snapshot.summary().get("total-records") == "0"

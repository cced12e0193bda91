"""Silver tables: one atomic Iceberg commit per tenant table per micro-batch (R5, R6, R8, R10).

A :class:`TableChange` says which objects' rows must disappear (``replace_keys``)
and which rows replace them (``rows``). :func:`commit_change` applies both in ONE
``MERGE INTO`` (one Iceberg snapshot)::

    source = delete markers (one per replace key, _merge_key = key)
             UNION ALL data rows (_merge_key = NULL)
    MERGE INTO t USING source s ON t._source_key = s._merge_key
      WHEN MATCHED THEN DELETE                                  -- old rows of replaced/removed objects
      WHEN NOT MATCHED AND s._merge_key IS NULL THEN INSERT ... -- the new rows

The ON clause also says ``t._source_key IN (<the keys>)`` (bound parameters, never quoted
into the SQL): Iceberg then plans the scan of the table from each data file's exact
``_source_key`` bounds (:data:`KEY_METRICS`), so a MERGE reads the files that can hold the
replaced objects, not the whole table.

Every snapshot carries ``silverline.query-id`` and ``silverline.batch-id`` in its
summary. They are set with Iceberg's ``CommitMetadata.withCommitProperties``,
a *thread-local* on the JVM side (Iceberg 1.10 has no session conf for snapshot
properties, and SQL ``MERGE`` takes no write options). PySpark pins each Python
thread to its own JVM thread and py4j runs the callback on that same pair, so
concurrent commits of different tables never see each other's properties.
A replayed micro-batch finds its own snapshot and is skipped ("skipped_replay").

A plain append whose rows Spark tasks already wrote as data files (``TableChange.files``,
:mod:`jobs.stream.tasks`) runs no Spark job: :func:`jobs.silver.fastappend.commit_files`
commits them with Iceberg's ``FastAppend`` (metadata only), the same properties in its summary.
"""

from __future__ import annotations

import json
import logging
import re
import time
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, replace
from types import MappingProxyType
from typing import TYPE_CHECKING, Any, Literal

from jobs.contracts import DatasetContract
from jobs.silver.conflicts import first_line, retry_on_conflict
from jobs.silver.fastappend import FileTarget, WrittenFile, commit_files, replace_files
from jobs.silver.snapshots import (
    SNAPSHOT_BATCH_ID,
    SNAPSHOT_QUERY_ID,
    BatchSnapshot,
    batch_snapshot_in,
    find_batch_snapshot,
    load_table,
    with_commit_properties,
)
from jobs.silver.staging import staged_frame
from jobs.storage import QUARANTINE, SILVER

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, DataFrameWriterV2, SparkSession

log = logging.getLogger(__name__)

CommitStatus = Literal["committed", "skipped_replay", "noop", "failed"]

LINEAGE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_source_bucket", "string"),
    ("_source_key", "string"),
    ("_source_version_id", "string"),
    ("_source_etag", "string"),
    ("_source_sequencer", "string"),
    ("_event_time", "timestamp"),
    ("_ingest_time", "timestamp"),
    ("_batch_id", "bigint"),
)
MERGE_KEY = "_merge_key"
KEY_METRICS = "write.metadata.metrics.column._source_key"
# Rows per write task of a plain append (see :func:`append_writer`).
APPEND_ROWS_PER_TASK = 1_000_000

# Distribution: MERGE reads only write.merge.distribution-mode (default hash), so it is
# set explicitly. Measured on small partitioned tenant MERGEs (3 day partitions, source
# in 4 Spark partitions): "hash" adds one small shuffle but writes 1 data + 1 delete file
# per touched partition; "none" wrote 4x the files and was not faster. Small files are
# the cost that grows here (merge-on-read), so hash. Compaction of delete files and
# snapshot expiry belong to a maintenance job; commit retries cover its concurrent commits.
TABLE_PROPERTIES: Mapping[str, str] = MappingProxyType(
    {
        "format-version": "2",
        "write.delete.mode": "merge-on-read",
        "write.update.mode": "merge-on-read",
        "write.merge.mode": "merge-on-read",
        "write.distribution-mode": "hash",
        "write.merge.distribution-mode": "hash",
        "commit.retry.num-retries": "10",
        "write.metadata.delete-after-commit.enabled": "true",
        "write.metadata.previous-versions-max": "100",
        "write.parquet.compression-codec": "zstd",
        # Exact bounds of the object key in every data file (the default keeps 16 characters, and
        # keys share far more): a replacement's scan skips files that cannot hold its objects.
        KEY_METRICS: "full",
    }
)


@dataclass(frozen=True)
class TableChange:
    """What one micro-batch does to one tenant table.

    Attributes:
        table: The table identifier (``jobs.storage.silver_table_name``).
        location: The table's explicit location (used by catalogs that take one, e.g. Glue).
        contract: The dataset contract (columns and partition spec).
        rows: New rows (silver schema incl. lineage) of objects being (re)placed; may be empty.
            None when ``files`` hold them.
        replace_keys: Source keys whose existing rows must disappear: every key in ``rows``
            or removed that may have rows in the table (the ledger knows which). Rows of a key
            not listed are appended next to any old rows of that key. With no keys the commit
            is a plain append (no scan); no keys and no rows: no-op.
        row_count: Number of ``rows`` when the caller knows it (saves a Spark job).
        zone: ``silver``, or ``quarantine`` for a tenant's table of rejected rows, which
            is a log: a row is inserted unless the same row of the same object version
            is already there (so a retried or replayed batch adds nothing twice).
        quarantine: The rejected rows of the same objects, committed first; if that
            commit fails the silver commit is not attempted (both are retried together).
        files: The new rows as data files already written for ``target`` instead of ``rows``
            (silver only). A plain append commits them without a Spark job
            (:func:`jobs.silver.fastappend.commit_files`); so does a replacement whose old
            rows are in files of their own (:func:`jobs.silver.fastappend.replace_files`),
            else a MERGE reads them as its new rows.
        target: The table's files target ``files`` were written for.
    """

    table: str
    location: str
    contract: DatasetContract
    rows: DataFrame | None
    replace_keys: Sequence[str]
    row_count: int | None = None
    zone: str = SILVER
    quarantine: TableChange | None = None
    files: Sequence[WrittenFile] | None = None
    target: FileTarget | None = None

    def __post_init__(self) -> None:
        if (self.rows is None) == (self.files is None):
            raise ValueError(f"{self.table}: a change has its rows as a DataFrame or as data files, not both")
        if self.files is not None and self.zone != SILVER:
            raise ValueError(f"{self.table}: data files are only for silver tables")


@dataclass(frozen=True)
class CommitResult:
    """The outcome of one table's commit."""

    table: str
    status: CommitStatus
    snapshot_id: int | None
    rows_written: int
    keys_replaced: int
    seconds: float
    error: str | None


# Columns the files had but the contract does not declare, as one JSON object per row.
RESCUED_COLUMNS: tuple[tuple[str, str], ...] = (("_rescued", "string"),)
# What a quarantined row carries besides its data: where in the file, its original text when
# a value did not convert, and why it was rejected.
QUARANTINE_COLUMNS: tuple[tuple[str, str], ...] = (
    ("_row_number", "int"),
    ("_raw", "string"),
    ("_failed_expectations", "array<string>"),
    ("_quarantine_reason", "string"),
)


def silver_columns(contract: DatasetContract, zone: str = SILVER) -> tuple[tuple[str, str], ...]:
    """(name, Spark SQL type) of every column of a tenant table, in table order.

    Args:
        contract: The dataset contract.
        zone: ``silver`` (declared columns, ``_rescued``, lineage) or ``quarantine``
            (the same plus :data:`QUARANTINE_COLUMNS` before the lineage).

    Returns:
        The columns.
    """
    declared = tuple((c.name, c.type) for c in contract.columns) + RESCUED_COLUMNS
    if zone == QUARANTINE:
        return declared + QUARANTINE_COLUMNS + LINEAGE_COLUMNS
    return declared + LINEAGE_COLUMNS


def silver_ddl(contract: DatasetContract, zone: str = SILVER) -> str:
    """Table columns as Spark SQL DDL, all nullable (NOT NULL is a data-quality check)."""
    return ", ".join(f"`{name}` {kind}" for name, kind in silver_columns(contract, zone))


def catalog_of(table: str) -> str:
    """The catalog part of a multi-part identifier (backquoted or not)."""
    match = re.match(r"\s*(?:`([^`]+)`|([^.`\s]+))", table)
    if not match:
        raise ValueError(f"not a table identifier: {table!r}")
    return match.group(1) or match.group(2)


def catalog_takes_location(spark: SparkSession, table: str) -> bool:
    """Whether CREATE TABLE may name a LOCATION (a hadoop catalog derives it from its warehouse)."""
    kind = spark.conf.get(f"spark.sql.catalog.{catalog_of(table)}.type", None)
    return str(kind).lower() != "hadoop"


def create_table_sql(change: TableChange, *, with_location: bool) -> str:
    """The ``CREATE TABLE IF NOT EXISTS`` statement for a change's table."""
    partitions = ", ".join(change.contract.partition_by)
    properties = ", ".join(f"'{key}'='{value}'" for key, value in TABLE_PROPERTIES.items())
    return (
        f"CREATE TABLE IF NOT EXISTS {change.table} ({silver_ddl(change.contract, change.zone)})"
        + " USING iceberg"
        + (f" PARTITIONED BY ({partitions})" if partitions else "")
        + (f" LOCATION '{change.location}'" if with_location else "")
        + f" TBLPROPERTIES ({properties})"
    )


def ensure_table(spark: SparkSession, change: TableChange, *, with_location: bool | None = None) -> None:
    """Create the table on first sight (format v2, the contract's partition spec, merge-on-read).

    Args:
        spark: The session.
        change: The change whose table must exist.
        with_location: Pass LOCATION; default: unless the catalog is ``type hadoop``.
    """
    if with_location is None:
        with_location = catalog_takes_location(spark, change.table)
    spark.sql(create_table_sql(change, with_location=with_location))


def frame_of(change: TableChange) -> DataFrame:
    """The change's rows as a DataFrame (a change without one holds data files for a fast append)."""
    if change.rows is None:
        raise ValueError(f"{change.table}: this change's rows are data files for a fast append")
    return change.rows


def merge_source(spark: SparkSession, change: TableChange) -> DataFrame:
    """Delete markers (``_merge_key`` = key, other columns NULL) UNION ALL data rows (``_merge_key`` NULL).

    The keys travel as one JSON literal: no Python RDD, no quoting of tenant-controlled keys.
    """
    from pyspark.sql import functions as F

    rows = frame_of(change)
    keys_json = json.dumps(sorted(set(change.replace_keys)))
    markers_df = spark.range(1, numPartitions=1).select(
        *[F.lit(None).cast(field.dataType).alias(field.name) for field in rows.schema.fields],
        F.explode(F.from_json(F.lit(keys_json), "array<string>")).alias(MERGE_KEY),
    )
    data_df = rows.withColumn(MERGE_KEY, F.lit(None).cast("string"))
    return markers_df.unionByName(data_df)


def quarantine_merge_sql(change: TableChange) -> str:
    """Insert rejected rows unless that row of that object version is already logged."""
    names = [name for name, _ in silver_columns(change.contract, QUARANTINE)]
    columns = ", ".join(f"`{name}`" for name in names)
    values = ", ".join(f"s.`{name}`" for name in names)
    same_row = " AND ".join(
        f"t.{c} <=> s.{c}" for c in ("_source_key", "_source_version_id", "_source_etag", "_source_sequencer")
    )
    return (
        f"MERGE INTO {change.table} t USING {{source}} s ON {same_row} AND t._row_number <=> s._row_number "
        f"WHEN NOT MATCHED THEN INSERT ({columns}) VALUES ({values})"
    )


def merge_sql(change: TableChange, *, prune: bool = True) -> tuple[str, dict[str, str]]:
    """The MERGE statement and its parameters (the replaced keys, ``:k0``, ``:k1``, ...).

    The source is the ``{source}`` placeholder of ``spark.sql(..., args=..., source=df)``.
    ``prune=False`` leaves the keys out of the ON clause: the MERGE then reads every data
    file (``bench/replace_cost.py`` compares the two).
    """
    names = [name for name, _ in silver_columns(change.contract)]
    columns = ", ".join(f"`{name}`" for name in names)
    values = ", ".join(f"s.`{name}`" for name in names)
    keys = {f"k{i}": key for i, key in enumerate(sorted(set(change.replace_keys)))} if prune else {}
    within = f" AND t._source_key IN ({', '.join(f':{name}' for name in keys)})" if keys else ""
    return (
        f"MERGE INTO {change.table} t USING {{source}} s ON t._source_key = s.{MERGE_KEY}{within} "
        f"WHEN MATCHED THEN DELETE "
        f"WHEN NOT MATCHED AND s.{MERGE_KEY} IS NULL THEN INSERT ({columns}) VALUES ({values})"
    ), keys


def ensure_key_metrics(spark: SparkSession, table: str) -> None:
    """Give a table made before :data:`KEY_METRICS` was a table property that property (new files only).

    Checked once per table and process (the lookup costs about 20 ms a table, every batch).
    """
    if table in _KEY_METRICS_SET:
        return
    found = spark.sql(f"SHOW TBLPROPERTIES {table} ('{KEY_METRICS}')").collect()
    if not found or found[0]["value"] != "full":
        spark.sql(f"ALTER TABLE {table} SET TBLPROPERTIES ('{KEY_METRICS}'='full')")
    _KEY_METRICS_SET.add(table)


# Tables known to have KEY_METRICS, by identifier (threads of one process add to it).
_KEY_METRICS_SET: set[str] = set()


def append_writer(change: TableChange) -> DataFrameWriterV2:
    """The writer of a plain append: without a shuffle when the row count is known.

    A micro-batch's rows of one table are small and already in the driver's hands, so a
    hash distribution (the table default, kept for MERGE) would only add a shuffle stage.
    Instead the rows go to ``ceil(rows / APPEND_ROWS_PER_TASK)`` tasks with Iceberg's
    fanout writer (one open file per partition value, no sort needed): the same one file
    per touched partition for a small batch, without the extra stage.
    """
    names = [name for name, _ in silver_columns(change.contract)]
    frame = frame_of(change)
    rows = frame if frame.columns == names else frame.select(*[f"`{n}`" for n in names])
    if change.row_count is None:
        return rows.writeTo(change.table)
    tasks = max(1, -(-change.row_count // APPEND_ROWS_PER_TASK))
    return (
        rows.coalesce(tasks)
        .writeTo(change.table)
        .option("distribution-mode", "none")
        .option("fanout-enabled", "true")
    )


class QuarantineCommitError(RuntimeError):
    """The rejected rows could not be logged, so the silver commit was not attempted."""


def one_line(exc: BaseException, limit: int = 300) -> str:
    """``Type: first informative line of the message``, at most ``limit`` characters."""
    return f"{type(exc).__name__}: {first_line(exc)}"[:limit]


def commit_change(spark: SparkSession, change: TableChange, *, batch_id: int, query_id: str) -> CommitResult:
    """Apply one table's change in one Iceberg snapshot (skipped when this batch already committed).

    Args:
        spark: The session.
        change: The table's change.
        batch_id: The micro-batch id (recorded as ``silverline.batch-id``).
        query_id: The streaming query's ``id`` (recorded as ``silverline.query-id``). It must
            survive restarts from the checkpoint (``StreamingQuery.id``, not ``runId``).

    Returns:
        The outcome: "committed", "skipped_replay" or "noop".

    Raises:
        Exception: Whatever Spark or Iceberg raise (:func:`commit_changes` turns them into "failed").
    """
    started = time.monotonic()
    keys = len(set(change.replace_keys))

    def result(status: CommitStatus, snapshot: BatchSnapshot | None) -> CommitResult:
        return CommitResult(
            table=change.table,
            status=status,
            snapshot_id=snapshot.snapshot_id if snapshot else None,
            rows_written=snapshot.added_records if snapshot else 0,
            keys_replaced=keys,
            seconds=round(time.monotonic() - started, 3),
            error=None,
        )

    if change.quarantine is not None:
        try:
            commit_change(spark, change.quarantine, batch_id=batch_id, query_id=query_id)
        except Exception as exc:
            table = change.quarantine.table
            raise QuarantineCommitError(f"quarantine table {table}: {one_line(exc)}") from exc
    if change.files is not None:
        has_rows = any(f.rows for f in change.files)
    elif change.row_count is not None:
        has_rows = change.row_count > 0
    else:
        has_rows = not frame_of(change).isEmpty()
    if not keys and not has_rows:
        return result("noop", None)
    loaded = _loaded_or_created(spark, change)
    found = None if loaded is None else batch_snapshot_in(loaded, batch_id=batch_id, query_id=query_id)
    if found:
        return result("skipped_replay", found)
    properties = {SNAPSHOT_QUERY_ID: query_id, SNAPSHOT_BATCH_ID: str(batch_id)}
    if change.zone == QUARANTINE:
        source = frame_of(change)
        with_commit_properties(
            spark, properties, lambda: spark.sql(quarantine_merge_sql(change), source=source)
        )
    elif change.files is not None:  # data files the tasks wrote: metadata-only commit
        target = change.target
        if target is None:
            raise ValueError(f"{change.table}: data files without the target they were written for")
        files = [f for f in change.files if f.rows]
        if not keys:
            return result("committed", commit_files(spark, target, files, properties, loaded=loaded))
        ensure_key_metrics(spark, change.table)
        replaced = retry_on_conflict(
            lambda: replace_files(spark, target, files, change.replace_keys, properties), change.table
        )
        if replaced is not None:
            return result("committed", replaced)
        _merge_files(spark, change, files, properties)  # some old rows share files with others
    elif keys:
        ensure_key_metrics(spark, change.table)
        _merge(spark, change, properties)
    else:  # only objects with no rows in the table yet: a plain append, no scan of the table
        with_commit_properties(spark, properties, lambda: append_writer(change).append())
    return result("committed", find_batch_snapshot(spark, change.table, batch_id=batch_id, query_id=query_id))


def _merge(spark: SparkSession, change: TableChange, properties: Mapping[str, str]) -> None:
    """Run the change's MERGE (:func:`merge_sql`) with the batch's snapshot properties."""
    source = merge_source(spark, change)
    sql, args = merge_sql(change)
    with_commit_properties(spark, properties, lambda: spark.sql(sql, args=args, source=source))


def _merge_files(
    spark: SparkSession, change: TableChange, files: Sequence[WrittenFile], properties: Mapping[str, str]
) -> None:
    """Replace with a MERGE whose new rows are the written data files, then delete those files.

    The files were written for a metadata-only replacement; the MERGE writes their rows again
    (and deletes the old ones), so they are never committed themselves.
    """
    rows = staged_frame(spark, [f.path for f in files], silver_columns(change.contract))
    _merge(spark, replace(change, rows=rows, files=None), properties)
    io = load_table(spark, change.table).io()
    for written in files:
        try:
            io.deleteFile(written.path)
        except Exception as exc:  # an orphan: maintenance removes it
            log.warning("could not delete %s, left for orphan removal: %s", written.path, one_line(exc))


def _loaded_or_created(spark: SparkSession, change: TableChange) -> Any | None:
    """The change's table through Iceberg's Java API; a missing one is created (then None).

    One catalog load serves the replay check and the commit: a table that must be created
    cannot hold a snapshot of this batch, and an existing one needs no ``CREATE TABLE``.
    """
    try:
        return load_table(spark, change.table)
    except Exception as exc:
        if not any(sign in str(exc) for sign in ("TABLE_OR_VIEW_NOT_FOUND", "NoSuchTableException")):
            raise
    ensure_table(spark, change)
    return None


def _commit_isolated(spark: SparkSession, change: TableChange, batch_id: int, query_id: str) -> CommitResult:
    """:func:`commit_change` under a per-table job group; a failure becomes a "failed" result."""
    description = f"silverline batch {batch_id}: commit {change.table}"
    spark.sparkContext.setJobGroup(f"silverline-{batch_id}-{change.table}", description)
    started = time.monotonic()
    try:
        outcome = retry_on_conflict(
            lambda: commit_change(spark, change, batch_id=batch_id, query_id=query_id), change.table
        )
    except Exception as exc:  # R10: one table's failure must not fail the others
        outcome = CommitResult(
            table=change.table,
            status="failed",
            snapshot_id=None,
            rows_written=0,
            keys_replaced=len(set(change.replace_keys)),
            seconds=round(time.monotonic() - started, 3),
            error=one_line(exc),
        )
    level = logging.WARNING if outcome.status == "failed" else logging.INFO
    suffix = f" error={outcome.error}" if outcome.error else ""
    log.log(
        level,
        "silver %s: %s rows=%d keys=%d %.3fs%s",
        outcome.table,
        outcome.status,
        outcome.rows_written,
        outcome.keys_replaced,
        outcome.seconds,
        suffix,
    )
    return outcome


def commit_changes(
    spark: SparkSession, changes: Sequence[TableChange], *, batch_id: int, query_id: str, max_workers: int = 4
) -> list[CommitResult]:
    """Commit every table's change concurrently; never raises for a table's error.

    Args:
        spark: The session.
        changes: At most one change per table.
        batch_id: The micro-batch id.
        query_id: The streaming query's ``id`` (stable across restarts).
        max_workers: Tables committed at the same time.

    Returns:
        One result per change, in the order of ``changes``.

    Raises:
        ValueError: Two changes name the same table (they would race each other).
    """
    tables = [change.table for change in changes]
    if len(set(tables)) != len(tables):
        raise ValueError(
            f"more than one change per table: {sorted({t for t in tables if tables.count(t) > 1})}"
        )
    if not changes:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(max_workers, len(changes)))) as pool:
        return list(pool.map(lambda change: _commit_isolated(spark, change, batch_id, query_id), changes))

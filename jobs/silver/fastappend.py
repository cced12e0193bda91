"""Metadata-only appends: Iceberg data files written from Arrow, committed with ``FastAppend``.

Most of a micro-batch's tenant-table changes are plain appends: objects the table
has no rows of yet. For those the rows are already an Arrow table in the job's
hands, so no Spark job is needed to write them. :func:`append_arrow` writes them
as Parquet data files straight into the table's data location — Iceberg field
ids from the table's current schema, one file per partition of the table's spec,
compressed with the table's codec — has Iceberg compute each file's column
metrics from the footer the writer hands over (the file is not read again), and
commits them all with one ``FastAppend`` through Iceberg's Java API (py4j), the
snapshot summary carrying the batch's properties. That is
the model of Iceberg's Kafka Connect sink and Flink's dynamic sink: writers make
data files, a coordinator commits metadata.

Supported partition transforms: ``identity`` on ``date``, ``string``, ``int`` and
``bigint`` columns, ``days`` and ``hours`` on ``timestamp`` columns
(:func:`supports`). Other contracts go through Spark's writer. Changes that replace
rows are metadata-only too where the replaced objects' rows are in files of their own
(:func:`replace_files`), else a MERGE. A data file whose commit fails or never happens
is an orphan that ``silverline maintain`` removes (``remove_orphan_files``), as after
any failed Iceberg write.
"""

from __future__ import annotations

import json
import logging
import os
import re
import struct
import uuid
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any
from urllib.parse import quote

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from jobs.contracts import DatasetContract
from jobs.objects import formats
from jobs.silver.conflicts import retry_on_conflict
from jobs.silver.snapshots import (
    SNAPSHOT_BATCH_ID,
    SNAPSHOT_QUERY_ID,
    BatchSnapshot,
    batch_snapshot_in,
    java,
    load_table,
    static,
)

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# Iceberg's transform names (PartitionField.transform().toString()) this module computes.
_TRANSFORM = re.compile(r"^\s*(?:(days|hours)\(\s*`?([^`)]+?)`?\s*\)|`?([^`()]+?)`?)\s*$")
_IDENTITY_TYPES = {"date", "string", "int", "bigint"}
_MICROS_PER = {"day": 86_400_000_000, "hour": 3_600_000_000}
_MAGIC = b"PAR1"  # a Parquet file's first and last four bytes
_EXPRESSIONS = "org.apache.iceberg.expressions.Expressions"
# Parquet's footer reader, as shaded in Iceberg's runtime jar.
_FOOTER_CONVERTER = "org.apache.iceberg.shaded.org.apache.parquet.format.converter.ParquetMetadataConverter"
# Bytes handed to the JVM per call when the table's FileIO writes the file (not a local path).
_CHUNK = 8 << 20


def supports(contract: DatasetContract) -> bool:
    """Whether :func:`append_arrow` can write this contract's tables.

    Args:
        contract: The dataset contract (its columns and ``partition_by``).

    Returns:
        True when every declared column has a primitive type and every partition
        transform is ``identity`` on date/string/int/bigint or ``days``/``hours`` on a timestamp.
    """
    types = {c.name: c.type.strip().lower() for c in contract.columns}
    if any(not re.fullmatch(r"[a-z_]+(\(\s*\d+\s*,\s*\d+\s*\))?", kind) for kind in types.values()):
        return False
    for spec in contract.partition_by:
        match = _TRANSFORM.match(spec)
        if match is None:
            return False
        if match.group(1):
            if types.get(match.group(2)) != "timestamp":
                return False
        elif types.get(match.group(3)) not in _IDENTITY_TYPES:
            return False
    return True


@dataclass(frozen=True)
class FileTarget:
    """Where and how a table's new data files are written: what a writer task needs, no JVM.

    Attributes:
        table: The table identifier.
        data_location: The directory new data files go to (``write.data.path``, else ``<location>/data``).
        spec_id: The partition spec the files are written for.
        fields: ``(column, Iceberg field id, Iceberg type name)`` of the table's schema.
        partition: ``(partition field name, source column, transform)`` of the spec.
        compression: The pyarrow name of the table's Parquet codec.
    """

    table: str
    data_location: str
    spec_id: int
    fields: tuple[tuple[str, int, str], ...]
    partition: tuple[tuple[str, str, str], ...]
    compression: str


@dataclass(frozen=True)
class WrittenFile:
    """One data file a writer wrote, waiting for its commit.

    Attributes:
        path: Its location (``file:`` or ``s3://``).
        size: Bytes.
        rows: Records.
        partition: Its partition values as Iceberg's strings (None: unpartitioned).
        footer: Its Parquet footer (the serialized ``FileMetaData``), from which the commit
            takes the column metrics without reading the file (None: the commit reads it).
    """

    path: str
    size: int
    rows: int
    partition: tuple[str | None, ...] | None
    footer: bytes | None = None


def target_of(spark: SparkSession, table: str) -> FileTarget:
    """The :class:`FileTarget` of an existing table (loaded through Iceberg's Java API).

    The schema and the partition spec come over as Iceberg's own JSON, one py4j call each:
    asking for every column's name, id and type took about 40 ms a table, as much as its
    commit.
    """
    return _target(spark, load_table(spark, table), table)


def _target(spark: SparkSession, iceberg: Any, table: str) -> FileTarget:
    schema = json.loads(str(static(spark, "org.apache.iceberg.SchemaParser.toJson")(iceberg.schema())))
    spec = json.loads(str(static(spark, "org.apache.iceberg.PartitionSpecParser.toJson")(iceberg.spec())))
    properties = iceberg.properties()
    location = str(properties.get("write.data.path") or f"{str(iceberg.location()).rstrip('/')}/data")
    columns = {int(f["id"]): str(f["name"]) for f in schema["fields"]}
    return FileTarget(
        table=table,
        data_location=location.rstrip("/"),
        spec_id=int(spec["spec-id"]),
        fields=tuple((columns[int(f["id"])], int(f["id"]), _type_name(f["type"])) for f in schema["fields"]),
        partition=tuple(
            (str(f["name"]), _source(iceberg, columns, f), str(f["transform"])) for f in spec["fields"]
        ),
        compression=parquet_compression(
            {"write.parquet.compression-codec": properties.get("write.parquet.compression-codec")}
        ),
    )


def _type_name(json_type: Any) -> str:
    """A column's Iceberg type as ``Type.toString()`` names it (primitives: their JSON name)."""
    return json_type if isinstance(json_type, str) else str(json_type.get("type"))


def _source(iceberg: Any, columns: Mapping[int, str], field: Mapping[str, Any]) -> str:
    """A partition field's source column (a nested one by its dotted name, asked of the JVM)."""
    source = int(field["source-id"])
    return columns.get(source) or str(iceberg.schema().findColumnName(source))


Put = Callable[[str, bytes], None]


def write_data_files(rows: pa.Table, target: FileTarget, put: Put) -> list[WrittenFile]:
    """Write ``rows`` as Parquet data files of ``target``'s table (no commit): one per partition value.

    Runs where the rows are (a Spark task); :func:`commit_files` or :func:`replace_files`
    commits the result.

    Args:
        rows: The rows, named like the table's columns (a subset of them; the others read as null).
        target: The table's :class:`FileTarget`.
        put: Writes bytes at a location (``file:`` or ``s3://``).

    Returns:
        The files written (none for no rows).

    Raises:
        ValueError: ``rows`` has a column the table does not have, or the spec has a
            transform this module does not compute.
    """
    if not rows.num_rows:
        return []
    typed = _with_field_ids(rows, target)
    written = []
    for values, part in _partitions(typed, target):
        directory = "/".join(
            f"{name}={quote('null' if value is None else value, safe='')}"
            for (name, _, _), value in zip(target.partition, values or (), strict=False)
        )
        name = f"{uuid.uuid4()}.parquet"
        path = "/".join(p for p in (target.data_location, directory, name) if p)
        partition = None if values is None else tuple(values)
        written.append(_write_parquet(part, path, target.compression, put, partition))
    return written


def _write_parquet(
    rows: pa.Table, path: str, compression: str, put: Put, partition: tuple[str | None, ...] | None = None
) -> WrittenFile:
    """Write ``rows`` as one Parquet file at ``path``, its footer kept for the commit's metrics."""
    sink = pa.BufferOutputStream()
    pq.write_table(rows, sink, compression=compression)
    data = sink.getvalue().to_pybytes()
    put(path, data)
    return WrittenFile(path, len(data), rows.num_rows, partition, parquet_footer(data))


# Iceberg's metrics evaluators stop pruning an IN predicate with more values than this.
_MAX_KEYS = 200


def replace_files(
    spark: SparkSession,
    target: FileTarget,
    files: Sequence[WrittenFile],
    keys: Sequence[str],
    properties: Mapping[str, str],
) -> BatchSnapshot | None:
    """Replace objects' rows metadata-only when the table keeps them in files of their own.

    Iceberg plans a scan for ``_source_key IN (keys)`` from the files' exact key bounds
    (``write.metadata.metrics.column._source_key=full``). When every file it returns holds
    one of these keys and nothing else (lower bound = upper bound, no null key), one
    ``OverwriteFiles`` drops those files and adds ``files``: no data is read or rewritten,
    no Spark job runs. That is the case for objects that came to the table alone (a table
    fed one object per batch, e.g. a snapshot overwritten every day); a file of several
    objects whose key range covers a replaced key makes the caller's MERGE do the work.

    Args:
        spark: The session.
        target: What ``files`` were written for.
        files: The objects' new data files (none for removals).
        keys: The keys whose rows must go.
        properties: Snapshot summary properties (the batch id).

    Returns:
        The snapshot committed; None when some file may hold rows of other objects (or
        there are too many keys to plan by bounds): nothing was committed.

    Raises:
        Exception: Iceberg's ``ValidationException`` when a concurrent commit changed the
            files (:func:`jobs.silver.conflicts.retry_on_conflict` plans again).
    """
    wanted = set(keys)
    if not wanted or len(wanted) > _MAX_KEYS:
        return None
    iceberg = load_table(spark, target.table)
    field = iceberg.schema().findField("_source_key")
    if field is None:
        return None
    field_id = field.fieldId()
    values = java(spark, "java.util.ArrayList")()
    for key in sorted(wanted):
        values.add(key)
    condition = getattr(java(spark, _EXPRESSIONS), "in")("_source_key", values)
    snapshot = iceberg.currentSnapshot()
    old = []
    tasks = iceberg.newScan().filter(condition).includeColumnStats().planFiles()
    try:
        found = tasks.iterator()
        while found.hasNext():
            data_file = found.next().file()
            if _owner(spark, data_file, field, field_id) not in wanted:
                return None
            old.append(data_file)
    finally:
        tasks.close()
    spec = iceberg.specs().get(target.spec_id)
    metrics = _Metrics(spark, iceberg)
    overwrite = iceberg.newOverwrite()
    for data_file in old:
        overwrite.deleteFile(data_file)
    for written in files:
        overwrite.addFile(_data_file(spark, spec, written, metrics))
    if snapshot is not None:
        overwrite.validateFromSnapshot(snapshot.snapshotId())
    overwrite.conflictDetectionFilter(condition).validateNoConflictingData().validateNoConflictingDeletes()
    for key, value in properties.items():
        overwrite.set(key, value)
    overwrite.commit()
    log.debug("replaced %d objects of %s: %d files out, %d in", len(wanted), target.table, len(old),
              len(files))  # fmt: skip
    return _committed(iceberg, properties)


def _owner(spark: SparkSession, data_file: Any, field: Any, field_id: int) -> str | None:
    """The one ``_source_key`` a data file holds, from its exact bounds; None when it may hold more."""
    lower, upper, nulls = data_file.lowerBounds(), data_file.upperBounds(), data_file.nullValueCounts()
    if lower is None or upper is None:
        return None
    low, high = lower.get(field_id), upper.get(field_id)
    if low is None or high is None or not low.equals(high):
        return None
    if nulls is None or nulls.get(field_id) is None or int(nulls.get(field_id)) != 0:
        return None
    return str(java(spark, "org.apache.iceberg.types.Conversions").fromByteBuffer(field.type(), low))


def parquet_footer(data: bytes) -> bytes:
    """The footer of a whole Parquet file: its ``FileMetaData``, before the length and ``PAR1``.

    Raises:
        ValueError: ``data`` is not a Parquet file.
    """
    if len(data) < 12 or data[:4] != _MAGIC or data[-4:] != _MAGIC:
        raise ValueError("not a Parquet file (no PAR1 at its start and end)")
    (length,) = struct.unpack("<I", data[-8:-4])
    if length > len(data) - 12:
        raise ValueError(f"Parquet footer length {length} exceeds the file ({len(data)} bytes)")
    return data[-8 - length : -8]


def commit_files(
    spark: SparkSession,
    target: FileTarget,
    files: Sequence[WrittenFile],
    properties: Mapping[str, str],
    *,
    loaded: Any | None = None,
) -> BatchSnapshot:
    """Commit written data files to ``target``'s table in one ``FastAppend`` (metadata only).

    Iceberg computes each file's column metrics, under the table's metrics settings, from
    the footer its writer sent along (no read of the file: on S3, one GET per file less);
    a file sent without one has its footer read.

    Args:
        spark: The session (its catalogs resolve the table).
        target: What the files were written for.
        files: The files.
        properties: Snapshot summary properties (e.g. the batch id).
        loaded: The table, just loaded through Iceberg's Java API by the caller (saves a
            catalog load; the commit refreshes it should another commit come in between).

    Returns:
        The snapshot committed (read from the committed metadata: no second load).
    """
    iceberg = load_table(spark, target.table) if loaded is None else loaded
    spec = iceberg.specs().get(target.spec_id)
    metrics = _Metrics(spark, iceberg)
    append = iceberg.newFastAppend()
    for written in files:
        append.appendFile(_data_file(spark, spec, written, metrics))
    for key, value in properties.items():
        append.set(key, value)
    append.commit()
    log.debug("fast append %s: %d files, %d rows", target.table, len(files), sum(f.rows for f in files))
    return _committed(iceberg, properties)


def _data_file(spark: SparkSession, spec: Any, written: WrittenFile, metrics: _Metrics) -> Any:
    """Iceberg's ``DataFile`` of one written file (its metrics from the footer)."""
    builder = static(spark, "org.apache.iceberg.DataFiles.builder")(spec).withFormat("PARQUET")
    if written.partition is not None:
        builder = builder.withPartitionValues(list(written.partition))
    of_file = metrics.of(written)
    return builder.withPath(written.path).withFileSizeInBytes(written.size).withMetrics(of_file).build()


def _committed(iceberg: Any, properties: Mapping[str, str]) -> BatchSnapshot:
    """The snapshot a commit just made, with these properties."""
    # The table object now holds the metadata as this commit left it (or newer: find ours).
    if SNAPSHOT_BATCH_ID in properties and SNAPSHOT_QUERY_ID in properties:
        found = batch_snapshot_in(
            iceberg, batch_id=properties[SNAPSHOT_BATCH_ID], query_id=properties[SNAPSHOT_QUERY_ID]
        )
        if found is not None:
            return found
    snapshot = iceberg.currentSnapshot()
    return BatchSnapshot(int(snapshot.snapshotId()), int(snapshot.summary().get("added-records") or 0))


class _Metrics:
    """Iceberg's ``Metrics`` of written files, under one table's ``MetricsConfig`` (one commit's).

    From each file's footer bytes, else from the file. The footer reader is made once and
    the static methods are called by name: each file costs the JVM round trips of its own
    data and no lookups (a commit's files are its per-file cost).
    """

    def __init__(self, spark: SparkSession, iceberg: Any, *, config: str = "forTable") -> None:
        self._spark, self._iceberg = spark, iceberg
        self._config = static(spark, f"org.apache.iceberg.MetricsConfig.{config}")(iceberg)
        self._reader: tuple[Any, Any] | None = None  # the footer converter and its NO_FILTER

    def of(self, written: WrittenFile) -> Any:
        """The metrics of one written file."""
        spark = self._spark
        if written.footer is None:
            read = static(spark, "org.apache.iceberg.parquet.ParquetUtil.fileMetrics")
            return read(self._iceberg.io().newInputFile(written.path), self._config)
        if self._reader is None:
            converter = java(spark, _FOOTER_CONVERTER)
            self._reader = (converter(), converter.NO_FILTER)
        reader, no_filter = self._reader
        stream = java(spark, "java.io.ByteArrayInputStream")(written.footer)
        footer = reader.readParquetMetadata(stream, no_filter)
        no_column_metrics = static(spark, "java.util.stream.Stream.empty")()
        return static(spark, "org.apache.iceberg.parquet.ParquetUtil.footerMetrics")(
            footer, no_column_metrics, self._config
        )


def append_arrow(
    spark: SparkSession, table: str, rows: pa.Table, properties: Mapping[str, str]
) -> BatchSnapshot:
    """Write ``rows`` as data files of ``table`` from here and commit them in one ``FastAppend``.

    For rows already in the driver's hands (the job's own ledger); tenant rows are written
    by Spark tasks (:func:`write_data_files`) and committed with :func:`commit_files`.

    Args:
        spark: The session (its catalogs resolve ``table``).
        table: The table identifier; the table must exist.
        rows: The rows, named like the table's columns (a subset of them; the others read as null).
        properties: Snapshot summary properties (e.g. the batch id).

    Returns:
        The snapshot committed.

    Raises:
        ValueError: ``rows`` has a column the table does not have, or the spec has a
            transform this module does not compute.
    """
    iceberg = load_table(spark, table)
    target = _target(spark, iceberg, table)
    files = write_data_files(rows, target, _putter(iceberg))
    return commit_files(spark, target, files, properties, loaded=iceberg)


def _putter(iceberg: Any) -> Put:
    """Writes files of this table from the driver: local paths directly, others through its FileIO."""

    def put(path: str, data: bytes) -> None:
        if path.startswith("file:"):
            put_local(path, data)
        else:
            write_via_file_io(iceberg, path, data)

    return put


# Iceberg's reserved field ids of a position delete file's columns (the table spec's).
_DELETE_FILE_PATH_ID, _DELETE_POS_ID = 2147483546, 2147483545
_FIELD_ID = "PARQUET:field_id"  # where Parquet keeps a column's Iceberg field id


class NothingCommitted(Exception):  # noqa: N818 - it says what happened, not that it went wrong
    """A write failed before its commit: the table did not change."""


def row_delta_arrow(
    spark: SparkSession,
    table: str,
    rows: pa.Table,
    deletes: Sequence[tuple[str, int]],
    *,
    from_snapshot: int | None,
) -> None:
    """Add ``rows`` and delete rows by position in one ``RowDelta``: a row-level update, metadata-only.

    For an unpartitioned format-2 table whose rows to replace were located by a read of
    snapshot ``from_snapshot`` (their data file and position, Iceberg's ``_file`` and
    ``_pos``): the new rows are written as a data file and the old ones as one position
    delete file from here, with no Spark job and no scan. The commit is refused (Iceberg's
    ``ValidationException``) when a data file it deletes from was removed since, e.g.
    compacted; the caller then updates another way.

    Args:
        spark: The session.
        table: The table identifier; the table must exist.
        rows: The new rows, named like the table's columns.
        deletes: (data file path, position) of each row to delete.
        from_snapshot: The snapshot the positions were read from (None: the table was empty).

    Raises:
        NothingCommitted: The update could not be made ready: the table is partitioned or
            not of format 2 (version 3 takes deletion vectors), or writing a file failed.
        Exception: What Iceberg's commit raised.
    """
    try:
        iceberg = load_table(spark, table)
        target = _target(spark, iceberg, table)
        version = int(iceberg.operations().current().formatVersion())
        if target.partition or version != 2:
            raise ValueError(f"position delete files from here need an unpartitioned v2 table (v{version})")
        put = _putter(iceberg)
        spec = iceberg.specs().get(target.spec_id)
        delta = iceberg.newRowDelta()
        metrics = _Metrics(spark, iceberg)
        for written in write_data_files(rows, target, put):
            delta.addRows(_data_file(spark, spec, written, metrics))
        if deletes:
            delta.addDeletes(_position_delete_file(spark, iceberg, spec, target, sorted(set(deletes)), put))
            referenced = java(spark, "java.util.ArrayList")()
            for path in sorted({path for path, _ in deletes}):
                referenced.add(path)
            delta.validateDataFilesExist(referenced).validateDeletedFiles()
        if from_snapshot is not None:
            delta.validateFromSnapshot(from_snapshot)
    except Exception as exc:
        raise NothingCommitted(f"{table}: {exc}") from exc
    delta.commit()


def _position_delete_file(
    spark: SparkSession,
    iceberg: Any,
    spec: Any,
    target: FileTarget,
    deletes: Sequence[tuple[str, int]],
    put: Put,
) -> Any:
    """Write one position delete file (sorted by path and position) and return its ``DeleteFile``."""
    path_id, pos_id = {_FIELD_ID: str(_DELETE_FILE_PATH_ID)}, {_FIELD_ID: str(_DELETE_POS_ID)}
    schema = pa.schema(
        [
            pa.field("file_path", pa.string(), nullable=False, metadata=path_id),
            pa.field("pos", pa.int64(), nullable=False, metadata=pos_id),
        ]
    )
    rows = pa.table([[path for path, _ in deletes], [pos for _, pos in deletes]], schema=schema)
    path = f"{target.data_location}/{uuid.uuid4()}-deletes.parquet"
    written = _write_parquet(rows, path, target.compression, put)
    builder = static(spark, "org.apache.iceberg.FileMetadata.deleteFileBuilder")(spec).ofPositionDeletes()
    builder = builder.withFormat("PARQUET").withPath(path).withFileSizeInBytes(written.size)
    builder = builder.withMetrics(_Metrics(spark, iceberg, config="forPositionDelete").of(written))
    referenced = {p for p, _ in deletes}
    if len(referenced) == 1:  # readers apply it to that data file only
        builder = builder.withReferencedDataFile(next(iter(referenced)))
    return builder.withRecordCount(written.rows).build()


def append_tuples(
    spark: SparkSession, table: str, rows: Sequence[tuple[Any, ...]], properties: Mapping[str, str]
) -> BatchSnapshot:
    """Append rows given as tuples in the table's column order, metadata-only (:func:`append_arrow`).

    Raises:
        ValueError: A row's length is not the table's, or a column has a type no contract declares.
    """
    target = target_of(spark, table)
    if any(len(row) != len(target.fields) for row in rows):
        raise ValueError(f"{table}: rows must have the table's {len(target.fields)} columns")
    columns = list(zip(*rows, strict=True)) if rows else [() for _ in target.fields]
    arrow = pa.table(
        {
            name: pa.array(list(values), arrow_type(kind))
            for (name, _, kind), values in zip(target.fields, columns, strict=True)
        }
    )
    return append_arrow(spark, table, arrow, properties)


def holds_rows_matching(spark: SparkSession, table: str, equal: Mapping[str, Any]) -> bool:
    """Whether ``table`` may hold a row with these column values, from its file metrics alone.

    Iceberg plans the scan with the filter: a data file whose column bounds exclude the values
    is never read. True when some file may hold such a row (a conservative answer), False
    when none can.
    """
    expressions = java(spark, _EXPRESSIONS)
    condition = expressions.alwaysTrue()
    for column, value in equal.items():
        condition = getattr(expressions, "and")(condition, expressions.equal(column, value))
    files = load_table(spark, table).newScan().filter(condition).planFiles()
    try:
        return bool(files.iterator().hasNext())
    finally:
        files.close()


def append_when_new(
    spark: SparkSession,
    table: str,
    rows: Sequence[tuple[Any, ...]],
    keys: Sequence[Mapping[str, Any]],
    properties: Mapping[str, str],
) -> bool:
    """Append ``rows`` metadata-only when ``table`` can hold no row matching any of ``keys``.

    The check reads file metrics only (:func:`holds_rows_matching`); the append is
    :func:`append_tuples`, planned again on a commit conflict.

    Returns:
        True when appended; False, with nothing written, when some row may match (the
        caller replaces instead).
    """
    if any(holds_rows_matching(spark, table, key) for key in keys):
        return False
    retry_on_conflict(lambda: append_tuples(spark, table, rows, properties), table)
    return True


def _with_field_ids(rows: pa.Table, target: FileTarget) -> pa.Table:
    """``rows`` cast to the table's types, each field tagged with its Iceberg field id."""
    by_name = {name: (field_id, kind) for name, field_id, kind in target.fields}
    fields = []
    for name in rows.column_names:
        if name not in by_name:
            raise ValueError(f"table {target.table} has no column {name!r}")
        field_id, kind = by_name[name]
        fields.append(pa.field(name, arrow_type(kind), nullable=True, metadata={_FIELD_ID: str(field_id)}))
    schema = pa.schema(fields)
    return pa.Table.from_arrays(
        [rows[name].cast(field.type) for name, field in zip(rows.column_names, schema, strict=True)],
        schema=schema,
    )


# Iceberg's type names (``Type.toString()``) where the contracts' Spark SQL names differ. A
# timestamp without zone maps to Spark's ``timestamp_ntz``, which no contract declares (refused).
_SPARK_NAMES = {"long": "bigint", "timestamptz": "timestamp", "timestamp": "timestamp_ntz"}


def arrow_type(iceberg_type: str) -> pa.DataType:
    """The Arrow type of a column of a silver table (an Iceberg primitive type, ``Type.toString()``).

    The same types the reader produces (:func:`jobs.objects.formats.arrow_type`).

    Raises:
        ValueError: A type no contract declares.
    """
    return formats.arrow_type(_SPARK_NAMES.get(iceberg_type, iceberg_type))


def _partitions(rows: pa.Table, target: FileTarget) -> list[tuple[list[str | None] | None, pa.Table]]:
    """The rows split by partition: (the partition values as Iceberg's strings, the rows)."""
    if not target.partition:
        return [(None, rows)]
    columns = [_partition_strings(rows[source], transform) for _, source, transform in target.partition]
    keys = pc.binary_join_element_wise(
        *[pc.fill_null(c, "\x00null") for c in columns], "\x1f", null_handling="replace"
    )
    # One sort by partition, then each partition is a contiguous slice (no mask per partition).
    encoded = pc.dictionary_encode(keys.combine_chunks() if isinstance(keys, pa.ChunkedArray) else keys)
    order = pc.sort_indices(encoded.indices)
    ordered = rows.take(order)
    sorted_codes = encoded.indices.take(order).to_numpy(zero_copy_only=False)
    starts = [0, *(np.flatnonzero(np.diff(sorted_codes)) + 1).tolist()]
    ends = [*starts[1:], len(sorted_codes)]
    first_rows = order.to_numpy(zero_copy_only=False)[starts]
    parts: list[tuple[list[str | None] | None, pa.Table]] = []
    for start, end, first in zip(starts, ends, first_rows.tolist(), strict=True):
        values = [c[first].as_py() for c in columns]
        parts.append((values, ordered.slice(start, end - start)))
    return parts


def _partition_strings(column: pa.ChunkedArray, transform: str) -> pa.Array:
    """A column's partition values in the form ``DataFiles.Builder.withPartitionValues`` parses."""
    array = column.combine_chunks()
    if transform in _MICROS_PER:
        micros = pc.cast(pc.cast(array, pa.timestamp("us", tz="UTC")), pa.int64())
        # Floor division (times before 1970 too): Iceberg's day/hour ordinal.
        whole = pc.fill_null(micros, 0).to_numpy(zero_copy_only=False) // _MICROS_PER[transform]
        ordinal = pa.array(whole, pa.int64(), mask=micros.is_null().to_numpy(zero_copy_only=False))
        if transform == "day":
            return pc.cast(pc.cast(pc.cast(ordinal, pa.int32()), pa.date32()), pa.string())
        return pc.cast(ordinal, pa.string())
    if transform == "identity":
        return pc.cast(array, pa.string())
    raise ValueError(f"unsupported partition transform for a fast append: {transform}")


def parquet_compression(properties: Mapping[str, str]) -> str:
    """The pyarrow name of the table's ``write.parquet.compression-codec`` (Iceberg's default: zstd).

    Raises:
        ValueError: A codec pyarrow cannot write (the table's own writers would fail too).
    """
    codec = str(properties.get("write.parquet.compression-codec") or "zstd").lower()
    names = {"uncompressed": "none", "none": "none", "zstd": "zstd", "gzip": "gzip", "snappy": "snappy",
             "lz4": "lz4", "brotli": "brotli"}  # fmt: skip
    if codec not in names:
        raise ValueError(f"unsupported write.parquet.compression-codec {codec!r}")
    return names[codec]


def put_local(uri: str, data: bytes) -> None:
    """Write ``data`` to the file a ``file:`` location names (its directories created)."""
    local = _local_path(uri)
    os.makedirs(os.path.dirname(local), exist_ok=True)
    with open(local, "wb") as out:
        out.write(data)


def delete_local(uri: str) -> None:
    """Delete the file a ``file:`` location names (as :func:`put_local` wrote it)."""
    os.remove(_local_path(uri))


def _local_path(uri: str) -> str:
    """The file a ``file:`` location names, as Hadoop's FileIO reads it (no percent-decoding)."""
    rest = uri.removeprefix("file:")
    return rest[2:] if rest.startswith("//") else rest


def write_via_file_io(iceberg: Any, path: str, data: pa.Buffer | bytes) -> None:
    """Write ``data`` at ``path`` with the table's own FileIO (S3FileIO on EMR)."""
    view = memoryview(data)
    stream = iceberg.io().newOutputFile(path).create()
    try:
        for start in range(0, len(view), _CHUNK):
            stream.write(bytearray(view[start : start + _CHUNK]))
    finally:
        stream.close()

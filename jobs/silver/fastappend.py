"""Metadata-only appends: Iceberg data files written from Arrow, committed with ``FastAppend``.

Most of a micro-batch's tenant-table changes are plain appends: objects the table
has no rows of yet. For those the rows are already an Arrow table in the job's
hands, so no Spark job is needed to write them. :func:`append_arrow` writes them
as Parquet data files straight into the table's data location — Iceberg field
ids from the table's current schema, one file per partition of the table's spec,
compressed with the table's codec — lets Iceberg read each file's footer for its
column metrics, and commits them all with one ``FastAppend`` through Iceberg's
Java API (py4j), the snapshot summary carrying the batch's properties. That is
the model of Iceberg's Kafka Connect sink and Flink's dynamic sink: writers make
data files, a coordinator commits metadata.

Supported partition transforms: ``identity`` on ``date``, ``string``, ``int`` and
``bigint`` columns, ``days`` and ``hours`` on ``timestamp`` columns
(:func:`supports`). Other contracts go through Spark's writer, as do changes that
replace rows. A data file whose commit fails or never happens is an orphan that
``silverline maintain`` removes (``remove_orphan_files``), as after any failed
Iceberg write.
"""

from __future__ import annotations

import logging
import os
import re
import uuid
from collections.abc import Mapping
from typing import TYPE_CHECKING, Any

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from jobs.contracts import DatasetContract
from jobs.objects import formats
from jobs.silver.snapshots import jvm_of, load_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# Iceberg's transform names (PartitionField.transform().toString()) this module computes.
_TRANSFORM = re.compile(r"^\s*(?:(days|hours)\(\s*`?([^`)]+?)`?\s*\)|`?([^`()]+?)`?)\s*$")
_IDENTITY_TYPES = {"date", "string", "int", "bigint"}
_MICROS_PER = {"day": 86_400_000_000, "hour": 3_600_000_000}
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


def append_arrow(spark: SparkSession, table: str, rows: pa.Table, properties: Mapping[str, str]) -> int:
    """Write ``rows`` as data files of ``table`` and commit them in one ``FastAppend``.

    Args:
        spark: The session (its catalogs resolve ``table``).
        table: The table identifier; the table must exist.
        rows: The rows, named like the table's columns (a subset of them; the others read as null).
        properties: Snapshot summary properties (e.g. the batch id).

    Returns:
        The number of data files committed.

    Raises:
        ValueError: ``rows`` has a column the table does not have, or the spec has a
            transform this module does not compute.
    """
    jvm = jvm_of(spark)
    iceberg = load_table(spark, table)
    schema, spec = iceberg.schema(), iceberg.spec()
    typed = _with_field_ids(rows, schema, table)
    compression = parquet_compression(iceberg.properties())
    metrics_config = jvm.org.apache.iceberg.MetricsConfig.forTable(iceberg)
    append = iceberg.newFastAppend()
    files = 0
    for values, part in _partitions(typed, schema, spec):
        builder = jvm.org.apache.iceberg.DataFiles.builder(spec).withFormat("PARQUET")
        if values is not None:
            builder = builder.withPartitionValues(values)
        probe = builder.withPath("probe").withFileSizeInBytes(0).withRecordCount(0).build()
        name = f"{uuid.uuid4()}.parquet"
        path = str(iceberg.locationProvider().newDataLocation(spec, probe.partition(), name))
        size = _write(iceberg, path, part, compression)
        metrics = jvm.org.apache.iceberg.parquet.ParquetUtil.fileMetrics(
            iceberg.io().newInputFile(path), metrics_config
        )
        data_file = builder.withPath(path).withFileSizeInBytes(size).withMetrics(metrics).build()
        append.appendFile(data_file)
        files += 1
    for key, value in properties.items():
        append.set(key, value)
    append.commit()
    log.debug("fast append %s: %d files, %d rows", table, files, rows.num_rows)
    return files


def _with_field_ids(rows: pa.Table, schema: Any, table: str) -> pa.Table:
    """``rows`` cast to the table's types, each field tagged with its Iceberg field id."""
    fields = []
    for name in rows.column_names:
        column = schema.findField(name)
        if column is None:
            raise ValueError(f"table {table} has no column {name!r}")
        field_id = {"PARQUET:field_id": str(column.fieldId())}
        fields.append(pa.field(name, arrow_type(str(column.type())), nullable=True, metadata=field_id))
    target = pa.schema(fields)
    return pa.Table.from_arrays(
        [rows[name].cast(field.type) for name, field in zip(rows.column_names, target, strict=True)],
        schema=target,
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


def _partitions(rows: pa.Table, schema: Any, spec: Any) -> list[tuple[list[str | None] | None, pa.Table]]:
    """The rows split by partition: (the partition values as Iceberg's strings, the rows)."""
    if not spec.isPartitioned():
        return [(None, rows)]
    columns = []
    for field in spec.fields():
        source = str(schema.findColumnName(field.sourceId()))
        columns.append(_partition_strings(rows[source], str(field.transform())))
    keys = pc.binary_join_element_wise(
        *[pc.fill_null(c, "\x00null") for c in columns], "\x1f", null_handling="replace"
    )
    parts: list[tuple[list[str | None] | None, pa.Table]] = []
    for key in pc.unique(keys).to_pylist():
        mask = pc.equal(keys, pa.scalar(key, pa.string()))
        first = pc.index(keys, key).as_py()
        values = [c[first].as_py() for c in columns]
        parts.append((values, rows.filter(mask)))
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


def _write(iceberg: Any, path: str, rows: pa.Table, compression: str) -> int:
    """Write one Parquet data file at ``path``; returns its size in bytes."""
    sink = pa.BufferOutputStream()
    pq.write_table(rows, sink, compression=compression)
    data = sink.getvalue()
    if path.startswith("file:"):  # local: no round trip through the JVM
        local = _local_path(path)
        os.makedirs(os.path.dirname(local), exist_ok=True)
        with open(local, "wb") as out:
            out.write(data)
    else:
        write_via_file_io(iceberg, path, data)
    return int(data.size)


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

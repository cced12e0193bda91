"""Decode raw object bytes into Arrow tables with a dataset's declared schema.

No I/O and no Spark: :class:`ContractDecoder` maps (bytes, key) to a table.
pyarrow does the parsing because small files are the norm (ARCHITECTURE.md:
about 6,700 CSV files/s per thread against Spark's 500-1,550 files/s) and it
releases the GIL, so callers can decode many objects on a thread pool.

Anything wrong with the bytes raises :class:`DecodeError` with a stable reason
code; the caller quarantines the object. Conversion is all or nothing per
object: one bad value quarantines the whole file.

Value rules: CSV fields that are empty become null in non-string columns and
stay ``""`` in string columns (CSV has no null marker); timestamps are ISO-8601,
with a zone offset or ``Z``, or without one and then taken as UTC; dates are
``YYYY-MM-DD``; decimals must fit the declared scale without rounding.
"""

from __future__ import annotations

import functools
import gzip
import logging
import re
import zlib
from collections.abc import Callable

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]
import pyarrow.csv as pa_csv  # type: ignore[import-untyped, unused-ignore]
import pyarrow.json as pa_json  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from jobs.contracts import DatasetContract

log = logging.getLogger(__name__)

UTC_MICROS = pa.timestamp("us", tz="UTC")
_SIMPLE_TYPES = {
    "string": pa.string(),
    "bigint": pa.int64(),
    "int": pa.int32(),
    "smallint": pa.int16(),
    "double": pa.float64(),
    "float": pa.float32(),
    "boolean": pa.bool_(),
    "date": pa.date32(),
    "timestamp": UTC_MICROS,
}
_DECIMAL_RE = re.compile(r"decimal\((\d+),(\d+)\)")
#: Suffixes of compressions we do not read; such objects are quarantined, not misparsed.
_UNSUPPORTED_COMPRESSION = (
    ".bz2",
    ".zst",
    ".zstd",
    ".xz",
    ".lz4",
    ".snappy",
    ".zip",
    ".deflate",
    ".br",
    ".7z",
)
#: CSV options understood, with their Spark spelling.
_CSV_OPTIONS = frozenset({"header", "sep", "delimiter", "quote", "escape", "encoding", "charset"})
_MIN_BLOCK = 1 << 14
_MAX_BLOCK = 1 << 26


class DecodeError(Exception):
    """The bytes of an object cannot become rows; quarantine it.

    Attributes:
        reason: Stable code (``unparseable``, ``wrong_header``, ``schema_mismatch``,
            ``empty_file``, ``corrupt_compression``, ``unsupported_format``).
        detail: Human-readable explanation.
    """

    def __init__(self, reason: str, detail: str) -> None:
        super().__init__(f"{reason}: {detail}")
        self.reason = reason
        self.detail = detail


def arrow_type(spark_type: str) -> pa.DataType:
    """Arrow type of a contract column type (a Spark SQL type string).

    Args:
        spark_type: e.g. ``bigint``, ``timestamp``, ``decimal(12,2)``.

    Returns:
        The Arrow type; timestamps are ``timestamp('us', tz='UTC')``.

    Raises:
        ValueError: The type is not one contracts allow.
    """
    normalised = spark_type.strip().lower().replace(" ", "")
    if normalised in _SIMPLE_TYPES:
        return _SIMPLE_TYPES[normalised]
    match = _DECIMAL_RE.fullmatch(normalised)
    if match:
        return pa.decimal128(int(match.group(1)), int(match.group(2)))
    raise ValueError(f"unsupported column type {spark_type!r}")


def contract_schema(contract: DatasetContract) -> pa.Schema:
    """The declared columns as an Arrow schema, in order, all nullable."""
    return pa.schema([pa.field(c.name, arrow_type(c.type)) for c in contract.columns])


class ContractDecoder:
    """Turns one object's bytes into a table of exactly the contract's columns.

    Build one per contract and share it across threads (it holds only options).
    """

    def __init__(self, contract: DatasetContract) -> None:
        self.contract = contract
        self.schema = contract_schema(contract)
        decoders: dict[str, Callable[[bytes], pa.Table]] = {
            "csv": self._decode_csv,
            "jsonl": self._decode_jsonl,
            "parquet": self._decode_parquet,
        }
        self._decode_format = decoders.get(contract.format)
        if contract.format == "csv":
            self._csv = _CsvOptions(contract, self.schema)
        # pyarrow.json reads dates only as numbers: read them as text, parse in _conform.
        self._json_schema = _with_text(self.schema, pa.types.is_date)

    def decode(self, data: bytes, key: str) -> pa.Table:
        """Decode an object.

        Args:
            data: The object's bytes as stored (maybe gzip-compressed).
            key: The object key; its suffix says the compression.

        Returns:
            A table with exactly :attr:`schema`.

        Raises:
            DecodeError: The object cannot be read; ``reason`` says why.
        """
        if self._decode_format is None:
            raise DecodeError("unsupported_format", f"no reader for format {self.contract.format!r}")
        if not data:
            raise DecodeError("empty_file", "the object has 0 bytes")
        data = _decompress(data, key)
        if not data:
            raise DecodeError("empty_file", "the object decompresses to 0 bytes")
        try:
            return self._conform(self._decode_format(data))
        except (pa.ArrowException, OSError) as exc:  # bytes are in memory: OSError means bad data
            raise DecodeError("unparseable", str(exc)) from exc

    def _decode_csv(self, data: bytes) -> pa.Table:
        read = self._csv.read_options(len(data))
        try:
            return self._read_csv(data, read, self._csv.typed)
        except pa.ArrowInvalid:
            if self._csv.zoneless is None:
                raise
            # Slow path, only for files the fast one rejects: timestamps without a zone are UTC.
            return self._read_csv(data, read, self._csv.zoneless)

    def _read_csv(self, data: bytes, read: pa_csv.ReadOptions, convert: pa_csv.ConvertOptions) -> pa.Table:
        try:
            return pa_csv.read_csv(pa.py_buffer(data), read, self._csv.parse, convert)
        except pa.ArrowKeyError as exc:  # a declared column is not in the header
            raise DecodeError("wrong_header", self._missing_header_detail(data, read, exc)) from exc

    def _missing_header_detail(self, data: bytes, read: pa_csv.ReadOptions, exc: Exception) -> str:
        try:
            found = pa_csv.open_csv(pa.py_buffer(data), read, self._csv.parse).schema.names
        except pa.ArrowException:
            return str(exc)
        missing = [name for name in self.schema.names if name not in found]
        return f"missing columns {missing}; header has {found}"

    def _decode_jsonl(self, data: bytes) -> pa.Table:
        read = pa_json.ReadOptions(use_threads=False, block_size=_block_size(len(data)))
        parse = pa_json.ParseOptions(explicit_schema=self._json_schema, unexpected_field_behavior="ignore")
        return pa_json.read_json(pa.py_buffer(data), read, parse)

    def _decode_parquet(self, data: bytes) -> pa.Table:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        found = parquet.schema_arrow.names
        missing = [name for name in self.schema.names if name not in found]
        if missing:
            raise DecodeError("schema_mismatch", f"missing columns {missing}; file has {found}")
        return parquet.read(columns=list(self.schema.names), use_threads=False)

    def _conform(self, table: pa.Table) -> pa.Table:
        if table.schema.equals(self.schema):
            return table
        columns = [_convert_column(table[f.name], f) for f in self.schema]
        return pa.Table.from_arrays(columns, schema=self.schema)


class _CsvOptions:
    """pyarrow CSV options from the contract's (Spark-spelled) options."""

    def __init__(self, contract: DatasetContract, schema: pa.Schema) -> None:
        options = {k.lower(): v for k, v in contract.options.items()}
        for name in sorted(set(options) - _CSV_OPTIONS):
            _warn_ignored_option(contract.name, name)
        header = options.get("header", "true").strip().lower()
        if header not in ("true", "false"):
            raise ValueError(
                f"dataset {contract.name!r}: option header must be true or false, not {header!r}"
            )
        self.column_names = None if header == "true" else list(schema.names)
        self.encoding = options.get("encoding", options.get("charset", "utf8"))
        self.parse = pa_csv.ParseOptions(
            delimiter=options.get("sep", options.get("delimiter", ",")),
            quote_char=options.get("quote", '"') or False,
            escape_char=options.get("escape") or False,
        )
        self.typed = _csv_convert_options(schema)
        has_timestamps = any(pa.types.is_timestamp(t) for t in schema.types)
        self.zoneless = (
            _csv_convert_options(_with_text(schema, pa.types.is_timestamp)) if has_timestamps else None
        )

    def read_options(self, size: int) -> pa_csv.ReadOptions:
        """Read options for a ``size``-byte object (one block: small blocks parse small files faster)."""
        return pa_csv.ReadOptions(
            use_threads=False,
            block_size=_block_size(size),
            column_names=self.column_names,
            encoding=self.encoding,
        )


def _csv_convert_options(schema: pa.Schema) -> pa_csv.ConvertOptions:
    """Exactly the schema's columns; an empty field is null, a quoted "" stays "" (as in Spark)."""
    return pa_csv.ConvertOptions(
        column_types=dict(zip(schema.names, schema.types, strict=True)),
        include_columns=list(schema.names),
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )


def _with_text(schema: pa.Schema, predicate: Callable[[pa.DataType], bool]) -> pa.Schema:
    """The schema with the columns whose type matches ``predicate`` read as strings."""
    return pa.schema([pa.field(f.name, pa.string() if predicate(f.type) else f.type) for f in schema])


def _convert_column(column: pa.ChunkedArray, field: pa.Field) -> pa.ChunkedArray:
    """Bring one decoded column to its declared type, naming the column in errors."""
    if column.type == field.type:
        return column
    try:
        if pa.types.is_string(column.type) and _is_temporal(field.type):
            return _parse_temporal(column, field.type)
        # Sub-microsecond precision is truncated, as Spark does; every other cast is checked.
        lossy_ok = pa.types.is_timestamp(column.type) and pa.types.is_timestamp(field.type)
        return pc.cast(column, field.type, safe=not lossy_ok)
    except pa.ArrowNotImplementedError as exc:
        raise DecodeError(
            "schema_mismatch", f"column {field.name}: {column.type} is not {field.type}"
        ) from exc
    except pa.ArrowInvalid as exc:
        raise DecodeError("unparseable", f"column {field.name}: {exc}") from exc


def _parse_temporal(column: pa.ChunkedArray, target: pa.DataType) -> pa.ChunkedArray:
    """Parse ISO-8601 text: empty is null; timestamps without a zone are UTC."""
    column = pc.if_else(pc.equal(column, ""), pa.scalar(None, pa.string()), column)
    if not pa.types.is_timestamp(target):
        return pc.cast(column, target)
    try:
        return pc.cast(column, target)
    except pa.ArrowInvalid as with_zone:
        try:
            return pc.cast(pc.cast(column, pa.timestamp("us")), target)
        except pa.ArrowInvalid:
            raise with_zone from None


def _is_temporal(arrow: pa.DataType) -> bool:
    return bool(pa.types.is_timestamp(arrow) or pa.types.is_date(arrow))


def _decompress(data: bytes, key: str) -> bytes:
    """Undo the compression the key's suffix names (only gzip is read)."""
    lowered = key.lower()
    if lowered.endswith((".gz", ".gzip")):
        try:
            return gzip.decompress(data)
        except (OSError, EOFError, zlib.error) as exc:
            raise DecodeError("corrupt_compression", f"gzip: {exc}") from exc
    if lowered.endswith(_UNSUPPORTED_COMPRESSION):
        raise DecodeError(
            "unsupported_format", f"compression of {key.rsplit('.', 1)[-1]!r} files is not read"
        )
    return data


@functools.cache
def _warn_ignored_option(dataset: str, option: str) -> None:
    log.warning("dataset %s: option %r is not used by the CSV reader and is ignored", dataset, option)


def _block_size(size: int) -> int:
    """One block for the whole object (up to a cap), so no record straddles blocks."""
    return min(max(size + 1, _MIN_BLOCK), _MAX_BLOCK)

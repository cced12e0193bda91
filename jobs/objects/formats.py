"""Decode raw object bytes into Arrow tables with a dataset's declared schema.

No I/O and no Spark: :class:`ContractDecoder` maps (bytes, key) to rows.
pyarrow does the parsing because small files are the norm (ARCHITECTURE.md:
about 6,700 CSV files/s per thread against Spark's 500-1,550 files/s) and it
releases the GIL, so callers can decode many objects on a thread pool.

Bytes that cannot become rows at all raise :class:`DecodeError` with a stable
reason code; the caller quarantines the object. A single value that does not
convert to its declared type does not: it becomes null and its row is marked
(``_conversion_errors``, ``_raw``; see :mod:`jobs.objects.rows`). Values in
columns the contract does not declare are kept in ``_rescued``. The CSV and
JSON-lines rules are in :mod:`jobs.objects.csv` and :mod:`jobs.objects.jsonl`;
Parquet columns are cast to the declared types (sub-microsecond precision of
timestamps is truncated; every other cast is checked).
"""

from __future__ import annotations

import dataclasses
import gzip
import io
import re
import shutil
import tempfile
import zlib
from collections.abc import Callable, Iterator
from typing import Any, Protocol

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from jobs.contracts import DatasetContract
from jobs.objects.convert import convert_column
from jobs.objects.csv import CsvDecoder
from jobs.objects.jsonl import JsonLinesDecoder
from jobs.objects.rows import (
    READ_FIELDS,
    UTC_MICROS,
    DecodedObject,
    DecodeError,
    arrow_json_value,
    conversion_errors,
    failed_rows,
    json_objects,
)

# The default limit of a compressed object's expansion (stream.max_decompressed_bytes): 1 GiB.
DEFAULT_LIMIT = 1 << 30
# The default limit of an object as stored (stream.max_object_bytes): 16 GiB (read in blocks).
DEFAULT_OBJECT_LIMIT = 1 << 34
# The default limit of one CSV / JSON line (stream.max_row_bytes): 16 MiB.
DEFAULT_ROW_LIMIT = 1 << 24
# Bytes scanned at a time for line lengths (bounds the scan's own memory).
_SCAN_BLOCK = 1 << 26
# The default block of a large object decoded at a time (stream.read_block_bytes): 64 MiB.
DEFAULT_BLOCK = 1 << 26


class OverOneBlock(Exception):  # noqa: N818 - a signal, not an error
    """The object expands past one block: :meth:`ContractDecoder.decode_blocks` reads it."""


class Readable(Protocol):
    """A byte stream: ``read(n)`` gives up to ``n`` bytes, ``b""`` at its end."""

    def read(self, size: int = -1, /) -> bytes: ...


__all__ = [
    "READ_FIELDS",
    "UTC_MICROS",
    "ContractDecoder",
    "DecodeError",
    "DecodedObject",
    "arrow_type",
    "contract_schema",
]

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
    """Turns one object's bytes into rows of the contract's columns.

    Build one per contract and share it across threads (it holds only options).
    """

    def __init__(
        self,
        contract: DatasetContract,
        max_decompressed_bytes: int = DEFAULT_LIMIT,
        max_row_bytes: int = DEFAULT_ROW_LIMIT,
    ) -> None:
        """Prepare the format's reader options.

        Args:
            contract: The dataset contract.
            max_decompressed_bytes: A compressed object expanding past this is refused
                (``decompressed_bytes_limit``).
            max_row_bytes: A CSV or JSON-lines object with a line longer than this (in
                bytes, without its line break) is refused (``row_bytes_limit``).

        Raises:
            ValueError: Invalid reader options.
        """
        self.contract = contract
        self.max_decompressed_bytes = max_decompressed_bytes
        self.max_row_bytes = max_row_bytes
        self.schema = contract_schema(contract)
        self._decode_format: Callable[[bytes | memoryview], DecodedObject] | None = None
        self._csv: CsvDecoder | None = None
        if contract.format == "csv":
            self._csv = CsvDecoder(contract, self.schema)
            self._decode_format = self._csv.decode
        elif contract.format == "jsonl":
            self._decode_format = JsonLinesDecoder(self.schema).decode
        elif contract.format == "parquet":
            self._decode_format = self._decode_parquet

    def decode(self, data: bytes, key: str) -> pa.Table:
        """Decode an object into one table.

        Args:
            data: The object's bytes as stored (maybe gzip-compressed).
            key: The object key; its suffix says the compression.

        Returns:
            The declared columns (:attr:`schema`), then ``_rescued``, ``_row_number``,
            ``_conversion_errors`` and ``_raw`` (:data:`READ_FIELDS`).

        Raises:
            DecodeError: The object cannot be read; ``reason`` says why.
        """
        return self.decode_object(data, key).to_table()

    def decode_object(self, data: bytes, key: str, block_bytes: int | None = None) -> DecodedObject:
        """Decode an object, leaving out the row-level columns that are all null.

        Args:
            data: The object's bytes as stored (maybe gzip-compressed).
            key: The object key; its suffix says the compression.
            block_bytes: Refuse to expand a compressed object past this (None: no block limit).

        Returns:
            The declared columns and, when there are any, the rescued values and
            the rows with values that did not convert.

        Raises:
            DecodeError: The object cannot be read; ``reason`` says why.
            OverOneBlock: It expands past ``block_bytes`` (and that is within the limit).
        """
        self._check_format()
        if not data:
            raise DecodeError("empty_file", "the object has 0 bytes")
        data = _decompress(data, key, self.max_decompressed_bytes, block_bytes)
        if not data:
            raise DecodeError("empty_file", "the object decompresses to 0 bytes")
        if self.contract.format != "parquet" and len(data) > self.max_row_bytes:
            length, line = longest_line(data)
            if length > self.max_row_bytes:
                raise self._row_limit(length, line, "")
        return self._decode_chunk(data)

    def decode_blocks(
        self, body: Readable, key: str, block_bytes: int = DEFAULT_BLOCK
    ) -> Iterator[DecodedObject]:
        """Decode an object of any size a block at a time, never holding it whole (R11).

        CSV and JSON lines: about ``block_bytes`` of the (decompressed) stream at a time, cut
        after its last line feed (a line never straddles blocks; CSV blocks after the first
        get the header line). Parquet: the object is spooled to a local temporary file, then
        read in batches of about ``block_bytes`` (uncompressed). Each block's ``_row_number``
        continues the previous one's. The limits hold as in :meth:`decode_object`; a limit or
        bad bytes found in a later block raise there, after earlier blocks were yielded, so
        the caller must be able to drop what it made of them.

        Args:
            body: The object's bytes as stored (maybe gzip-compressed), as a stream.
            key: The object key; its suffix says the compression.
            block_bytes: Bytes decoded at a time.

        Yields:
            The rows of each block, as :meth:`decode_object` returns them.

        Raises:
            DecodeError: The object cannot be read (possibly after some blocks).
        """
        self._check_format()
        stream = _Expanding(body, key, self.max_decompressed_bytes)
        if self.contract.format == "parquet":
            blocks = self._parquet_blocks(stream, block_bytes)
        else:
            blocks = self._line_blocks(stream, block_bytes)
        first_row = 1
        for decoded in blocks:
            count = decoded.rows.num_rows
            yield dataclasses.replace(decoded, first_row=first_row)
            del decoded  # one block alive at a time: not held while the next is decoded
            first_row += count

    def _line_blocks(self, stream: Readable, block_bytes: int) -> Iterator[DecodedObject]:
        """CSV / JSON-lines blocks cut after a line feed; see :meth:`decode_blocks`."""
        encoding = "utf8" if self._csv is None else self._csv.encoding  # JSON lines are UTF-8
        if "\n".encode(_python_codec(encoding)) != b"\n":
            raise DecodeError(
                "unsupported_format",
                f"encoding {encoding!r} has no one-byte line feed: objects over stream.read_block_bytes "
                "in it cannot be read in blocks",
            )
        with_header = self._csv is not None and self._csv.has_header
        # One buffer, reused: the block is decoded in place (no copies), then dropped, keeping
        # the unfinished last line and, for CSV after the first block, the header line.
        buffer = bytearray()
        kept = lines_before = blocks = 0  # kept: the header bytes every later block starts with
        while True:
            data = stream.read(block_bytes)
            ended = not data
            buffer += data
            del data
            if len(buffer) == kept:
                break
            cut = len(buffer) if ended else buffer.rfind(b"\n", kept) + 1  # at the end: the last line too
            if cut == 0:  # no line feed yet: the line goes on
                if len(buffer) - kept > self.max_row_bytes:
                    raise self._row_limit(len(buffer) - kept, lines_before + 1, "over ")
                continue
            if cut - kept > self.max_row_bytes:
                with memoryview(buffer)[kept:cut] as lines:
                    length, line = longest_line(lines)
                if length > self.max_row_bytes:
                    raise self._row_limit(length, lines_before + line, "")
            lines_before += buffer.count(b"\n", kept, cut)
            with memoryview(buffer)[:cut] as chunk:
                decoded = self._decode_chunk(chunk)
            if with_header and not blocks:
                kept = buffer.find(b"\n") + 1
            del buffer[kept:cut]
            blocks += 1
            yield decoded
            del decoded
            if ended:
                break
        if not blocks:
            raise DecodeError("empty_file", "the object has 0 bytes")

    def _parquet_blocks(self, stream: Readable, block_bytes: int) -> Iterator[DecodedObject]:
        """Parquet batches of about ``block_bytes``; see :meth:`decode_blocks`."""
        with tempfile.TemporaryFile(prefix="silverline-") as spool:
            shutil.copyfileobj(stream, spool, 1 << 20)
            if not spool.tell():
                raise DecodeError("empty_file", "the object has 0 bytes")
            spool.seek(0)
            try:
                parquet = pq.ParquetFile(spool)
                self._check_parquet_columns(parquet)
                meta = parquet.metadata
                size = sum(meta.row_group(i).total_byte_size for i in range(meta.num_row_groups))
                rows = max(1, block_bytes * max(1, meta.num_rows) // max(1, size))
                for batch in parquet.iter_batches(batch_size=rows, use_threads=False):
                    decoded = self._parquet_rows(pa.Table.from_batches([batch]))
                    del batch
                    yield decoded
                    del decoded
            except (pa.ArrowException, OSError) as exc:  # the spool is local: OSError means bad data
                raise DecodeError("unparseable", str(exc)) from exc

    def _check_format(self) -> None:
        if self._decode_format is None:
            raise DecodeError("unsupported_format", f"no reader for format {self.contract.format!r}")

    def _decode_chunk(self, chunk: bytes | memoryview) -> DecodedObject:
        assert self._decode_format is not None
        try:
            return self._decode_format(chunk)
        except (pa.ArrowException, OSError) as exc:  # bytes are in memory: OSError means bad data
            raise DecodeError("unparseable", str(exc)) from exc

    def _row_limit(self, length: int, line: int, over: str) -> DecodeError:
        limit = f"stream.max_row_bytes ({self.max_row_bytes:,} bytes)"
        return DecodeError("row_bytes_limit", f"line {line:,} is {over}{length:,} bytes, over {limit}")

    def _check_parquet_columns(self, parquet: pq.ParquetFile) -> None:
        found = parquet.schema_arrow.names
        missing = [name for name in self.schema.names if name not in found]
        if missing:
            raise DecodeError("schema_mismatch", f"missing columns {missing}; file has {found}")

    def _decode_parquet(self, data: bytes | memoryview) -> DecodedObject:
        parquet = pq.ParquetFile(pa.BufferReader(data))
        self._check_parquet_columns(parquet)
        return self._parquet_rows(parquet.read(use_threads=False))

    def _parquet_rows(self, table: pa.Table) -> DecodedObject:
        """The declared columns of Parquet rows, cast; see the module docstring."""
        converted = [convert_column(table[field.name], field) for field in self.schema]
        rows = pa.Table.from_arrays([column for column, _ in converted], schema=self.schema)
        errors = conversion_errors(self.schema.names, [mask for _, mask in converted], rows.num_rows)
        raw = None
        if errors is not None:
            raw = json_objects(table, rows=failed_rows(errors), default=arrow_json_value)
        declared = set(self.schema.names)
        extras = [i for i, name in enumerate(table.column_names) if name not in declared]
        rescued = None
        if extras:
            rescued = json_objects(table.select(extras), drop_nulls=True, default=arrow_json_value)
        return DecodedObject(rows, rescued=rescued, conversion_errors=errors, raw=raw)


def longest_line(data: bytes | memoryview, block: int = _SCAN_BLOCK) -> tuple[int, int]:
    """The longest line's length in bytes (without its line feed) and its 1-based number.

    Scanned ``block`` bytes at a time with numpy (about a second per GB), so the scan
    itself needs a fraction of a block of memory whatever the object's size.

    Returns:
        ``(length, line)``; ``(0, 0)`` for no bytes. The first of equally long lines.
    """
    import numpy as np

    view = np.frombuffer(data, dtype=np.uint8)
    best, best_line, line_start, lines_before = 0, 0, 0, 0
    for start in range(0, len(view), block):
        ends = np.flatnonzero(view[start : start + block] == 0x0A) + start
        if not ends.size:
            continue
        lengths = ends - np.concatenate(([line_start], ends[:-1] + 1))
        longest = int(np.argmax(lengths))
        if lengths[longest] > best:
            best, best_line = int(lengths[longest]), lines_before + longest + 1
        lines_before += int(ends.size)
        line_start = int(ends[-1]) + 1
    if len(view) - line_start > best:
        best, best_line = len(view) - line_start, lines_before + 1
    return best, best_line


def _decompress(data: bytes, key: str, limit: int, block: int | None) -> bytes:
    """Undo the compression the key's suffix names (only gzip is read), at most ``limit`` bytes of it.

    The expansion stops one byte past the limit (or past ``block`` when that is smaller), so
    a gzip bomb (a few MB that expand to gigabytes) costs at most that much memory and the
    time to expand it.
    """
    if _gzipped(key):
        cap = limit if block is None else min(limit, block)
        try:
            with gzip.GzipFile(fileobj=io.BytesIO(data)) as stream:
                expanded = stream.read(cap + 1)
        except (OSError, EOFError, zlib.error) as exc:
            raise DecodeError("corrupt_compression", f"gzip: {exc}") from exc
        if len(expanded) > cap and cap < limit:
            raise OverOneBlock
        if len(expanded) > limit:
            raise DecodeError(
                "decompressed_bytes_limit",
                f"expands past stream.max_decompressed_bytes ({limit:,} bytes) from {len(data):,} bytes",
            )
        return expanded
    return data


def _gzipped(key: str) -> bool:
    """Whether the key's suffix says gzip; raises for a compression that is not read.

    Raises:
        DecodeError: ``unsupported_format``: another compression (bz2, zstd, zip, ...).
    """
    lowered = key.lower()
    if lowered.endswith((".gz", ".gzip")):
        return True
    if lowered.endswith(_UNSUPPORTED_COMPRESSION):
        raise DecodeError(
            "unsupported_format", f"compression of {key.rsplit('.', 1)[-1]!r} files is not read"
        )
    return False


class _Expanding:
    """A stored object's stream, gunzipped when its key says ``.gz``, at most ``limit`` bytes of it."""

    def __init__(self, body: Readable, key: str, limit: int) -> None:
        self._gzip = _gzipped(key)
        source: Any = body
        self._source: Readable = gzip.GzipFile(fileobj=source, mode="rb") if self._gzip else body
        self._limit = limit
        self._expanded = 0

    def read(self, size: int = -1, /) -> bytes:
        try:
            data = self._source.read(size)
        except (gzip.BadGzipFile, EOFError, zlib.error) as exc:
            raise DecodeError("corrupt_compression", f"gzip: {exc}") from exc
        self._expanded += len(data)
        if self._gzip and self._expanded > self._limit:
            raise DecodeError(
                "decompressed_bytes_limit",
                f"expands past stream.max_decompressed_bytes ({self._limit:,} bytes)",
            )
        return data


def _python_codec(encoding: str) -> str:
    """Python's name for a pyarrow/Spark encoding name (``utf8`` -> ``utf-8``); unknown ones: UTF-8."""
    import codecs

    try:
        return codecs.lookup(encoding).name
    except LookupError:
        return "utf-8"

"""The rows of a decoded object: the row-level columns, and JSON text for ``_rescued`` and ``_raw``.

No I/O and no Spark. The format decoders (:mod:`jobs.objects.csv`,
:mod:`jobs.objects.jsonl`, :mod:`jobs.objects.formats`) return a
:class:`DecodedObject`: the declared columns, plus the row-level columns only
when some row needs them, so the common clean file costs nothing extra; the
reader fills in the rest for many objects at once (:func:`read_columns`).

A value that does not convert (:mod:`jobs.objects.convert`) becomes null; its
row lists the column in ``_conversion_errors`` and keeps its original values in
``_raw``. A null or empty value is never a conversion error.
"""

from __future__ import annotations

import datetime as dt
import decimal
import functools
import json
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from json.encoder import encode_basestring
from typing import Any

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

UTC_MICROS = pa.timestamp("us", tz="UTC")
#: Columns every decoded object gets after its declared columns.
READ_FIELDS: tuple[pa.Field, ...] = (
    pa.field("_rescued", pa.string()),
    pa.field("_row_number", pa.int32()),
    pa.field("_conversion_errors", pa.list_(pa.string())),
    pa.field("_raw", pa.string()),
)
#: The ``_conversion_errors`` entry of a JSON line that is not a JSON object (column names
#: are lower-case identifiers, so it never names a column).
NOT_AN_OBJECT = "_line"
_CACHED_ROW_NUMBERS = 1 << 20


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


@dataclass(frozen=True)
class DecodedObject:
    """One object's rows: the declared columns, plus the row-level extras when there are any.

    Attributes:
        rows: Exactly the declared columns, in contract order.
        rescued: ``_rescued`` per row; None when no row has undeclared values.
        conversion_errors: ``_conversion_errors`` per row; None when every value converted.
        raw: ``_raw`` per row; None when every value converted.
        first_row: ``_row_number`` of the first row (a block of a large object starts past 1).
    """

    rows: pa.Table
    rescued: pa.Array | None = None
    conversion_errors: pa.Array | None = None
    raw: pa.Array | None = None
    first_row: int = 1

    @property
    def rows_with_errors(self) -> int:
        """Rows with at least one value that did not convert."""
        errors = self.conversion_errors
        return 0 if errors is None else len(errors) - errors.null_count

    def to_table(self) -> pa.Table:
        """The declared columns followed by :data:`READ_FIELDS`."""
        schema = pa.schema([*self.rows.schema, *READ_FIELDS])
        return pa.Table.from_arrays([*self.rows.columns, *read_columns([self])], schema=schema)


def read_columns(objects: Sequence[DecodedObject]) -> list[pa.Array]:
    """The :data:`READ_FIELDS` columns of the objects' rows, objects in order.

    Args:
        objects: Decoded objects.

    Returns:
        One array per field of :data:`READ_FIELDS`.
    """
    counts = [o.rows.num_rows for o in objects]
    return [
        _concat_or_nulls([o.rescued for o in objects], counts, READ_FIELDS[0].type),
        _row_numbers([(o.first_row, o.rows.num_rows) for o in objects]),
        _concat_or_nulls([o.conversion_errors for o in objects], counts, READ_FIELDS[2].type),
        _concat_or_nulls([o.raw for o in objects], counts, READ_FIELDS[3].type),
    ]


def conversion_errors(
    names: Sequence[str], failed: Sequence[pa.Array | None], num_rows: int
) -> pa.Array | None:
    """``_conversion_errors``: per row, the names of the columns whose value did not convert.

    Args:
        names: Column names.
        failed: Per column, the mask of :func:`convert_column` (None: all converted).
        num_rows: Rows of the object.

    Returns:
        A list<string> array, null for clean rows; None when no row failed.
    """
    per_row: dict[int, list[str]] = {}
    for name, mask in zip(names, failed, strict=True):
        if mask is not None:
            for row in pc.indices_nonzero(mask).to_pylist():
                per_row.setdefault(row, []).append(name)
    if not per_row:
        return None
    return pa.array([per_row.get(row) for row in range(num_rows)], READ_FIELDS[2].type)


def failed_rows(errors: pa.Array) -> list[int]:
    """Indices of the rows a :func:`conversion_errors` array marks."""
    return list(pc.indices_nonzero(pc.is_valid(errors)).to_pylist())


def json_objects(
    table: pa.Table,
    *,
    rows: Sequence[int] | None = None,
    drop_nulls: bool = False,
    default: Callable[[Any], Any] | None = None,
) -> pa.Array | None:
    """One compact JSON object per row of ``table`` (column name -> value), as :func:`dumps` writes.

    Args:
        table: The columns to write.
        rows: Only these rows (others are null); None for every row.
        drop_nulls: Leave null values out; a row with nothing left is null.
        default: Turns values JSON cannot hold into ones it can (see :func:`arrow_json_value`).

    Returns:
        A string array with one entry per row of ``table``; None when every entry is null.
    """
    subset = table if rows is None else table.take(pa.array(rows, pa.int64()))
    columns = []
    for name, column in zip(subset.column_names, subset.columns, strict=True):
        encode = encode_basestring if pa.types.is_string(column.type) else _encoder(default).encode
        key = encode_basestring(name) + ":"
        null = None if drop_nulls else key + "null"
        columns.append([null if value is None else key + encode(value) for value in column.to_pylist()])
    texts: list[str | None]
    if len(columns) == 1:
        texts = [None if pair is None else "{" + pair + "}" for pair in columns[0]]
    else:
        texts = []
        for pairs in zip(*columns, strict=True):
            kept = [pair for pair in pairs if pair is not None]
            texts.append("{" + ",".join(kept) + "}" if kept else None)
    if texts.count(None) == len(texts):
        return None
    if rows is not None:
        placed: list[str | None] = [None] * table.num_rows
        for row, text in zip(rows, texts, strict=True):
            placed[row] = text
        texts = placed
    return pa.array(texts, pa.string())


def dumps(value: Any, default: Callable[[Any], Any] | None = None) -> str:
    """Compact JSON, non-ASCII kept as is."""
    return _encoder(default).encode(value)


def arrow_json_value(value: Any) -> Any:
    """A JSON-friendly form of a Python value from Arrow: text for dates, times, decimals, bytes.

    Raises:
        TypeError: A value of another type JSON cannot hold.
    """
    if isinstance(value, dt.date | dt.time):
        return value.isoformat()
    if isinstance(value, decimal.Decimal | dt.timedelta):
        return str(value)
    if isinstance(value, bytes):
        return value.decode("utf-8", "backslashreplace")
    raise TypeError(f"{type(value).__name__} is not JSON serialisable")


@functools.cache
def _encoder(default: Callable[[Any], Any] | None) -> json.JSONEncoder:
    return json.JSONEncoder(ensure_ascii=False, separators=(",", ":"), default=default)


def _concat_or_nulls(parts: Sequence[pa.Array | None], counts: Sequence[int], kind: pa.DataType) -> pa.Array:
    """The parts end to end, a part that is None standing for ``count`` nulls."""
    if all(part is None for part in parts):
        return pa.nulls(sum(counts), kind)
    filled = [pa.nulls(n, kind) if part is None else part for part, n in zip(parts, counts, strict=True)]
    return pa.concat_arrays(filled)


class _RowNumbers:
    """1, 2, 3, ... as int32, built once and sliced (slices are zero-copy)."""

    def __init__(self) -> None:
        self._numbers = pa.array(range(1, 1025), pa.int32())

    def first(self, count: int) -> pa.Array:
        numbers = self._numbers
        if count > len(numbers):
            numbers = pa.array(np.arange(1, max(count, 2 * len(numbers)) + 1, dtype=np.int32))
            if len(numbers) <= _CACHED_ROW_NUMBERS:
                self._numbers = numbers
        return numbers.slice(0, count)


_ROW_NUMBERS = _RowNumbers()


def _row_numbers(runs: Sequence[tuple[int, int]]) -> pa.Array:
    """``_row_number``: 1-based within each object; ``runs`` are (first row number, rows) per object."""
    parts = [
        _ROW_NUMBERS.first(n) if first == 1 else pa.array(np.arange(first, first + n, dtype=np.int32))
        for first, n in runs
        if n
    ]
    if not parts:
        return pa.array([], pa.int32())
    return parts[0] if len(parts) == 1 else pa.concat_arrays(parts)

"""Decode JSON-lines objects: pyarrow first, line by line in Python when that fails.

The fast path is pyarrow's JSON reader with the declared schema. Keys the
contract does not declare are kept in ``_rescued`` (their values exactly as in
the line, so those lines are also parsed with :mod:`json`). pyarrow refuses a
whole file for one value of the wrong JSON type or one line that is not a JSON
object; such files are parsed line by line with :mod:`json` instead, so a bad
value or line costs its row, not the file. A file in which no line is a JSON
object stays ``unparseable``.

Value rules (the same on both paths): strings only from JSON strings; integers
from integral JSON numbers in range; floats from JSON numbers; booleans from JSON
booleans; decimals from JSON numbers or strings, without rounding; dates
(``YYYY-MM-DD``) and ISO-8601 timestamps (without a zone: UTC) from JSON strings.
Blank lines are skipped and not counted.
"""

from __future__ import annotations

import decimal
import json
from collections.abc import Callable
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.json as pa_json  # type: ignore[import-untyped, unused-ignore]

from jobs.objects.convert import convert_column
from jobs.objects.csv import block_size
from jobs.objects.rows import (
    NOT_AN_OBJECT,
    DecodedObject,
    DecodeError,
    conversion_errors,
    dumps,
)

_BLANK = b" \t\r"


class JsonLinesDecoder:
    """Decodes JSON-lines bytes (already decompressed) for one schema; safe to share across threads."""

    def __init__(self, schema: pa.Schema) -> None:
        """Prepare the pyarrow options.

        Args:
            schema: The declared columns as Arrow fields.
        """
        self._schema = schema
        self._names: list[str] = list(schema.names)
        self._declared = frozenset(schema.names)
        self._accept = [_acceptor(field.type) for field in schema]
        # pyarrow.json reads dates only as numbers: read them as text and parse them here.
        as_read = pa.schema([pa.field(f.name, _read_type(f.type)) for f in schema])
        self._parse = pa_json.ParseOptions(explicit_schema=as_read, unexpected_field_behavior="infer")

    def decode(self, data: bytes | memoryview) -> DecodedObject:
        """Decode one object.

        Args:
            data: The JSON-lines bytes (a memoryview is read in place).

        Returns:
            The rows; values that do not convert are null and their rows marked.

        Raises:
            DecodeError: ``unparseable``: no line is a JSON object.
        """
        read = pa_json.ReadOptions(use_threads=False, block_size=block_size(len(data)))
        try:
            table = pa_json.read_json(pa.py_buffer(data), read, self._parse)
        except pa.ArrowInvalid:
            return self._decode_by_line(data)
        if table.schema.equals(self._schema):  # the common case: nothing to convert or rescue
            return DecodedObject(table)
        columns = []
        for field in self._schema:
            column, failed = convert_column(table[field.name], field)
            if failed is not None:
                return self._decode_by_line(data)
            columns.append(column)
        rows = pa.Table.from_arrays(columns, schema=self._schema)
        if table.num_columns == len(self._names):
            return DecodedObject(rows)
        objects = [_parse_line(line) for line in _lines(data)]
        if len(objects) != rows.num_rows or None in objects:  # pyarrow saw other lines: play safe
            return self._decode_by_line(data)
        return DecodedObject(rows, rescued=self._rescued(objects))

    def _decode_by_line(self, data: bytes | memoryview) -> DecodedObject:
        """The slow path: every line parsed with :mod:`json`, every value checked."""
        lines = _lines(data)
        objects = [_parse_line(line) for line in lines]
        if lines and all(obj is None for obj in objects):
            raise DecodeError("unparseable", "no line is a JSON object")
        columns, masks = [], []
        for field, accept in zip(self._schema, self._accept, strict=True):
            values = [None if obj is None else obj.get(field.name) for obj in objects]
            column, failed = _json_column(values, field, accept)
            columns.append(column)
            masks.append(failed)
        rows = pa.Table.from_arrays(columns, schema=self._schema)
        errors = _with_line_errors(conversion_errors(self._names, masks, len(lines)), objects)
        raw = None
        if errors is not None:  # the line itself, for the rows with errors only
            marked = zip(errors.to_pylist(), lines, strict=True)
            raw = pa.array([None if m is None else line.decode("utf-8", "replace") for m, line in marked])
        return DecodedObject(rows, rescued=self._rescued(objects), conversion_errors=errors, raw=raw)

    def _rescued(self, objects: list[dict[str, Any] | None]) -> pa.Array | None:
        """``_rescued``: the undeclared keys' non-null values (numbers with a fraction as floats)."""
        texts: list[str | None] = []
        for obj in objects:
            if obj is None or obj.keys() <= self._declared:
                texts.append(None)
                continue
            kept = {k: v for k, v in obj.items() if k not in self._declared and v is not None}
            texts.append(dumps(kept, float) if kept else None)
        return None if all(t is None for t in texts) else pa.array(texts, pa.string())


def _lines(data: bytes | memoryview) -> list[bytes]:
    """The non-blank lines, as pyarrow counts them."""
    raw = data if isinstance(data, bytes) else data.tobytes()
    return [stripped for line in raw.split(b"\n") if (stripped := line.strip(_BLANK))]


def _read_type(declared: pa.DataType) -> pa.DataType:
    return pa.string() if pa.types.is_date(declared) else declared


def _parse_line(line: bytes) -> dict[str, Any] | None:
    """The line's JSON object (numbers with a fraction or exponent as Decimal); None when it is not one."""
    try:
        value = json.loads(line, parse_float=decimal.Decimal, parse_constant=_refuse_constant)
    except ValueError:  # json.JSONDecodeError and UnicodeDecodeError are ValueErrors
        return None
    return value if isinstance(value, dict) else None


def _refuse_constant(name: str) -> Any:
    raise ValueError(f"{name} is not JSON")


class _Bad:
    """Marks a value whose JSON type does not fit its column."""


_BAD = _Bad()


def _acceptor(target: pa.DataType) -> Callable[[Any], Any]:
    """For a declared type: value -> the value to convert (text for types parsed from text) or _BAD."""
    if pa.types.is_boolean(target):
        return lambda v: v if type(v) is bool else _BAD
    if pa.types.is_integer(target):
        low, high = -(1 << (target.bit_width - 1)), 1 << (target.bit_width - 1)
        return lambda v: v if type(v) is int and low <= v < high else _BAD
    if pa.types.is_floating(target):
        return lambda v: float(v) if type(v) in (int, decimal.Decimal) else _BAD
    if pa.types.is_decimal(target):
        return lambda v: str(v) if type(v) in (int, decimal.Decimal, str) else _BAD
    return lambda v: v if type(v) is str else _BAD  # strings, dates and timestamps


def _json_column(
    values: list[Any], field: pa.Field, accept: Callable[[Any], Any]
) -> tuple[pa.Array, pa.Array | None]:
    """One declared column from parsed JSON values, with the mask of values that do not convert."""
    accepted = [None if value is None else accept(value) for value in values]
    bad = [value is _BAD for value in accepted]
    if any(bad):
        accepted = [None if value is _BAD else value for value in accepted]
    if _parsed_from_text(field.type):
        column, failed = convert_column(pa.array(accepted, pa.string()), field)
        if failed is not None:
            bad = [b or f for b, f in zip(bad, failed.to_pylist(), strict=True)]
    else:
        column = pa.array(accepted, field.type)
    return column, (pa.array(bad, pa.bool_()) if any(bad) else None)


def _parsed_from_text(target: pa.DataType) -> bool:
    return bool(pa.types.is_decimal(target) or pa.types.is_date(target) or pa.types.is_timestamp(target))


def _with_line_errors(errors: pa.Array | None, objects: list[dict[str, Any] | None]) -> pa.Array | None:
    """``errors`` with :data:`NOT_AN_OBJECT` for the lines that are not JSON objects."""
    if all(obj is not None for obj in objects):
        return errors
    per_row = [None] * len(objects) if errors is None else errors.to_pylist()
    marked = [[NOT_AN_OBJECT] if obj is None else row for obj, row in zip(objects, per_row, strict=True)]
    return pa.array(marked, pa.list_(pa.string()))

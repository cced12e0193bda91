"""Convert a column to its declared type value by value: what does not convert becomes null.

No I/O and no Spark. One cast per column when every value converts (the common
case); when one does not, the column is halved until the failing values are
found (about ``2 * log2(rows)`` casts per bad value), after text that cannot be
a value of the type (no digit in a number, say) has been set aside without a cast.
"""

from __future__ import annotations

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

from jobs.objects.rows import DecodeError

#: Text a value must match to possibly convert; values that do not match fail without a cast.
_PLAUSIBLE = {
    "integer": r"[0-9]",
    "floating": r"[0-9]|(?i:inf|nan)",
    "boolean": r"(?i)^(?:true|false|1|0)$",
    "other": r"[0-9]",
}


def convert_column(column: pa.ChunkedArray | pa.Array, field: pa.Field) -> tuple[pa.Array, pa.Array | None]:
    """Bring one column to its declared type; values that do not convert become null.

    Text is parsed (an empty string is null; timestamps without a zone are UTC);
    other types are cast, checked, except that sub-microsecond precision of
    timestamps is truncated, as Spark does.

    Args:
        column: The column as read.
        field: The declared field.

    Returns:
        The converted column and a mask of the values that did not convert (None
        when all did).

    Raises:
        DecodeError: ``schema_mismatch``: the column's type cannot be cast at all.
    """
    values = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if pa.types.is_dictionary(values.type):
        values = values.dictionary_decode()
    target = field.type
    if values.type == target:
        return values, None
    if pa.types.is_large_string(values.type):
        values = values.cast(pa.string())
    safe = not (pa.types.is_timestamp(values.type) and pa.types.is_timestamp(target))
    try:
        return _cast_value(values, target, safe), None  # the common case: every value converts
    except pa.ArrowNotImplementedError as exc:
        detail = f"column {field.name}: {values.type} is not {target}"
        raise DecodeError("schema_mismatch", detail) from exc
    except pa.ArrowInvalid:
        pass
    candidates = values
    if pa.types.is_string(values.type) and not pa.types.is_string(target):
        values = pc.if_else(pc.equal(values, ""), pa.scalar(None, pa.string()), values)
        plausible = pc.match_substring_regex(values, _PLAUSIBLE[_kind(target)])
        candidates = pc.if_else(plausible, values, pa.scalar(None, pa.string()))
    converted = _cast_each(candidates, target, safe)
    failed = pc.and_(pc.is_valid(values), pc.is_null(converted))
    return converted, (failed if pc.any(failed).as_py() else None)


def _cast_each(values: pa.Array, target: pa.DataType, safe: bool) -> pa.Array:
    """``values`` converted to ``target``, the values that do not convert set to null.

    One cast when all convert; otherwise halves until the failing values are isolated.
    """
    try:
        return _cast_value(values, target, safe)
    except pa.ArrowInvalid:
        if len(values) == 1:
            return pa.nulls(1, target)
        half = len(values) // 2
        return pa.concat_arrays(
            [_cast_each(values.slice(0, half), target, safe), _cast_each(values.slice(half), target, safe)]
        )


def _cast_value(values: pa.Array, target: pa.DataType, safe: bool) -> pa.Array:
    """One cast (checked unless ``safe`` is false); text timestamps without a zone are UTC."""
    if not (pa.types.is_string(values.type) and pa.types.is_timestamp(target)):
        return pc.cast(values, target, safe=safe)
    try:
        return pc.cast(values, target)
    except pa.ArrowInvalid:
        return pc.cast(pc.cast(values, pa.timestamp(target.unit)), target)


def _kind(target: pa.DataType) -> str:
    if pa.types.is_integer(target):
        return "integer"
    if pa.types.is_floating(target):
        return "floating"
    if pa.types.is_boolean(target):
        return "boolean"
    return "other"

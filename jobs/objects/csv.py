"""Decode CSV objects: a typed read first, a text read and per-value conversion when it fails.

The fast path is pyarrow's CSV reader with the declared types (about 6,700
small files/s per thread, ARCHITECTURE.md). When any value does not convert,
the file is read again with every declared column as text and converted column
by column (:func:`jobs.objects.convert.convert_column`), so one bad value costs its
row, not the file. Header columns the contract does not declare are kept as text
in ``_rescued``.

Value rules: an empty field is null (also in string columns); a quoted ``""``
stays ``""`` in string columns and is null in others; timestamps are ISO-8601,
with a zone offset or ``Z``, or without one and then UTC; dates are
``YYYY-MM-DD``; decimals must fit the declared scale without rounding.
"""

from __future__ import annotations

import functools
import logging

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.csv as pa_csv  # type: ignore[import-untyped, unused-ignore]

from jobs.contracts import DatasetContract
from jobs.objects.convert import convert_column
from jobs.objects.rows import (
    DecodedObject,
    DecodeError,
    conversion_errors,
    failed_rows,
    json_objects,
)

log = logging.getLogger(__name__)

#: CSV options understood, with their Spark spelling.
_CSV_OPTIONS = frozenset({"header", "sep", "delimiter", "quote", "escape", "encoding", "charset"})
_MIN_BLOCK = 1 << 14
_MAX_BLOCK = 1 << 26


class CsvDecoder:
    """Decodes CSV bytes (already decompressed) for one contract; safe to share across threads.

    Attributes:
        has_header: The first line names the columns (option ``header``, default true).
        encoding: The bytes' encoding (option ``encoding`` or ``charset``, default UTF-8).
    """

    def __init__(self, contract: DatasetContract, schema: pa.Schema) -> None:
        """Read the contract's (Spark-spelled) CSV options.

        Args:
            contract: The dataset contract.
            schema: The declared columns as Arrow fields.

        Raises:
            ValueError: The ``header`` option is neither true nor false.
        """
        options = {k.lower(): v for k, v in contract.options.items()}
        for name in sorted(set(options) - _CSV_OPTIONS):
            _warn_ignored_option(contract.name, name)
        header = options.get("header", "true").strip().lower()
        if header not in ("true", "false"):
            raise ValueError(
                f"dataset {contract.name!r}: option header must be true or false, not {header!r}"
            )
        self._schema = schema
        self._names: list[str] = list(schema.names)
        self.has_header = header == "true"
        self._column_names = None if self.has_header else list(schema.names)
        self.encoding: str = options.get("encoding", options.get("charset", "utf8"))
        self._parse = pa_csv.ParseOptions(
            delimiter=options.get("sep", options.get("delimiter", ",")),
            quote_char=options.get("quote", '"') or False,
            escape_char=options.get("escape") or False,
        )
        self._typed = _convert_options(dict(zip(schema.names, schema.types, strict=True)))
        self._text = _convert_options(dict.fromkeys(schema.names, pa.string()))
        self._zoneless = None
        if any(pa.types.is_timestamp(t) for t in schema.types):
            as_text = {f.name: pa.string() if pa.types.is_timestamp(f.type) else f.type for f in schema}
            self._zoneless = _convert_options(as_text)

    def decode(self, data: bytes | memoryview) -> DecodedObject:
        """Decode one object.

        Args:
            data: The CSV bytes (a memoryview is read in place).

        Returns:
            The rows; values that do not convert are null and their rows marked.

        Raises:
            DecodeError: ``wrong_header`` (a declared column is not in the header).
            pyarrow.ArrowInvalid: The bytes are not CSV of this layout (ragged rows, bad encoding).
        """
        read = self._read_options(len(data))
        table = self._read_typed(data, read)
        if table is None:
            return self._decode_by_value(data, read)
        if table.schema.equals(self._schema):  # the common case: nothing to convert or rescue
            return DecodedObject(table)
        rows = table.select(self._names)
        if not rows.schema.equals(self._schema):  # timestamps without a zone, read as text
            converted = [convert_column(rows[field.name], field) for field in self._schema]
            if any(failed is not None for _, failed in converted):
                return self._decode_by_value(data, read)
            rows = pa.Table.from_arrays([column for column, _ in converted], schema=self._schema)
        return DecodedObject(rows, rescued=self._rescued(table))

    def _read_typed(self, data: bytes | memoryview, read: pa_csv.ReadOptions) -> pa.Table | None:
        """The fast read with the declared types; None when a value does not convert."""
        try:
            return self._read(data, read, self._typed)
        except pa.ArrowInvalid as exc:
            # pyarrow refuses timestamps without a zone: read them as text (then UTC) and parse them.
            if self._zoneless is None or "zone offset" not in str(exc):
                return None
        try:
            return self._read(data, read, self._zoneless)
        except pa.ArrowInvalid:
            return None

    def _decode_by_value(self, data: bytes | memoryview, read: pa_csv.ReadOptions) -> DecodedObject:
        """The slow path: every column read as text, then converted value by value."""
        text = self._read(data, read, self._text)
        converted = [convert_column(text[field.name], field) for field in self._schema]
        rows = pa.Table.from_arrays([column for column, _ in converted], schema=self._schema)
        errors = conversion_errors(self._names, [mask for _, mask in converted], rows.num_rows)
        # every column's text, for the rows with errors only
        raw = None if errors is None else json_objects(text, rows=failed_rows(errors))
        return DecodedObject(rows, rescued=self._rescued(text), conversion_errors=errors, raw=raw)

    def _read(
        self, data: bytes | memoryview, read: pa_csv.ReadOptions, convert: pa_csv.ConvertOptions
    ) -> pa.Table:
        table = pa_csv.read_csv(pa.py_buffer(data), read, self._parse, convert)
        found = table.schema.names
        if found == self._names:
            return table
        missing = [name for name in self._names if name not in found]
        if missing:
            raise DecodeError("wrong_header", f"missing columns {missing}; header has {found}")
        doubled = sorted({name for name in self._names if found.count(name) > 1})
        if doubled:
            raise DecodeError("wrong_header", f"columns {doubled} appear more than once in the header")
        return table

    def _rescued(self, table: pa.Table) -> pa.Array | None:
        """``_rescued`` from the header columns the contract does not declare (read as text)."""
        declared = set(self._names)
        extras = [i for i, name in enumerate(table.column_names) if name not in declared]
        if not extras:
            return None
        return json_objects(table.select(extras), drop_nulls=True)

    def _read_options(self, size: int) -> pa_csv.ReadOptions:
        """Read options for a ``size``-byte object (one block: small blocks parse small files faster)."""
        return pa_csv.ReadOptions(
            use_threads=False,
            block_size=block_size(size),
            column_names=self._column_names,
            encoding=self.encoding,
        )


def block_size(size: int) -> int:
    """One block for the whole object (up to a cap), so no record straddles blocks."""
    return min(max(size + 1, _MIN_BLOCK), _MAX_BLOCK)


def _convert_options(column_types: dict[str, pa.DataType]) -> pa_csv.ConvertOptions:
    """An empty field is null, a quoted "" stays "" (as in Spark); undeclared columns are text."""
    return pa_csv.ConvertOptions(
        column_types=column_types,
        default_column_type=pa.string(),
        null_values=[""],
        strings_can_be_null=True,
        quoted_strings_can_be_null=False,
    )


@functools.cache
def _warn_ignored_option(dataset: str, option: str) -> None:
    log.warning("dataset %s: option %r is not used by the CSV reader and is ignored", dataset, option)

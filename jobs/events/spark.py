"""S3 event parsing in Spark tasks: SQS message bodies -> one row per S3 record.

:func:`parse_events` runs the plain-Python parser
:func:`jobs.events.parse.parse_message` (the rules of R1-R4; ``tests/event_cases.py``
holds the cases it must get right) in the tasks, with ``mapInArrow``: each task
parses its Arrow batches of messages. The stream's plan holds one Python node
instead of the expression tree of a parser written in Spark's built-in functions,
which cost seconds per micro-batch to analyse and compile (measured side by side:
``bench/parse_bronze.py``), and parsing scales with the executors (R12). Tasks need
the ``jobs`` package: locally the session factory points ``PYSPARK_PYTHON`` at the
driver's interpreter; on EMR the packaged virtualenv is every task's Python.
"""

from __future__ import annotations

from collections.abc import Iterable, Iterator
from typing import Final

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
from pyspark.sql import DataFrame
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, LongType, StringType, StructField, StructType, TimestampType

from jobs.events import model as m
from jobs.events.model import FIELDS
from jobs.events.parse import parse_message

__all__ = ["ARROW_FIELDS", "PARSED_SCHEMA", "parse_events", "with_foreign_buckets_rejected"]

# (Spark type, Arrow type) of the ParsedRecord fields that are not strings.
_TYPES: Final = {
    "record_index": (IntegerType(), pa.int32()),
    "event_time": (TimestampType(), pa.timestamp("us", tz="UTC")),
    "size": (LongType(), pa.int64()),
}
_TEXT: Final = (StringType(), pa.string())
PARSED_SCHEMA: Final = StructType([StructField(n, _TYPES.get(n, _TEXT)[0], True) for n in FIELDS])
"""The ParsedRecord fields, in FIELDS order, as Spark types (event_time is UTC)."""
ARROW_FIELDS: Final = tuple(pa.field(n, _TYPES.get(n, _TEXT)[1]) for n in FIELDS)
"""The same fields as Arrow types: what the parsing tasks return."""


def _parse_batch(batch: pa.RecordBatch, body_col: str, passthrough: list[str]) -> pa.RecordBatch:
    """One Arrow batch of messages -> one batch of records (each message's other columns repeated)."""
    sources: list[int] = []
    columns: dict[str, list[object]] = {name: [] for name in FIELDS}
    for index, body in enumerate(batch.column(body_col).to_pylist()):
        for record in parse_message(body):
            sources.append(index)
            for name in FIELDS:
                columns[name].append(getattr(record, name))
    repeated = batch.select(passthrough).take(pa.array(sources, pa.int64())) if passthrough else None
    arrays = [] if repeated is None else list(repeated.columns)
    arrays += [pa.array(columns[f.name], f.type) for f in ARROW_FIELDS]
    names = [*passthrough, *FIELDS]
    return pa.RecordBatch.from_arrays(arrays, names=names)


def parse_events(df: DataFrame, body_col: str = "body") -> DataFrame:
    """Parse SQS message bodies into one row per S3 record (at least one per message).

    Args:
        df: Messages: a string column ``body_col`` (may be null) and any other columns.
        body_col: The name of the body column.

    Returns:
        The input's other columns, repeated for each record, then the
        ParsedRecord fields in FIELDS order (types: PARSED_SCHEMA).

    Raises:
        ValueError: The body column is missing, or another column has a ParsedRecord
            field name.
    """
    if body_col not in df.columns:
        raise ValueError(f"no column {body_col!r} in {df.columns}")
    passthrough = [c for c in df.columns if c != body_col]
    clash = [c for c in passthrough if c in FIELDS]
    if clash:
        raise ValueError(f"columns {clash} clash with the parsed fields; rename them first")
    schema = StructType([*[df.schema[c] for c in passthrough], *PARSED_SCHEMA.fields])

    def parse(batches: Iterable[pa.RecordBatch]) -> Iterator[pa.RecordBatch]:
        for batch in batches:
            yield _parse_batch(batch, body_col, passthrough)

    return df.mapInArrow(parse, schema)


def with_foreign_buckets_rejected(df: DataFrame, bucket: str) -> DataFrame:
    """Reject the events of any bucket but the tenant group's own (``foreign_bucket``).

    A group's queue carries its bucket's notifications only; an event naming another
    bucket (a misrouted subscription, a hand-made message) can never be applied here,
    and reading it would fail the batch on every restart. It is kept and counted like
    any other rejected record, with the message that carried it.

    Args:
        df: Output of :func:`parse_events`.
        bucket: The tenant group's bucket.

    Returns:
        ``df`` with those events' ``outcome`` and ``reason`` replaced.
    """
    foreign = (F.col("outcome") == m.EVENT) & (F.col("bucket") != F.lit(bucket))
    return df.withColumns(
        {
            "outcome": F.when(foreign, F.lit(m.REJECTED)).otherwise(F.col("outcome")),
            "reason": F.when(foreign, F.lit(m.R_FOREIGN_BUCKET)).otherwise(F.col("reason")),
        }
    )

"""The object ledger: latest sequencer wins per object, across batches (R4, R5).

Pure DataFrame transforms decide; :func:`update_ledger` writes. Events a backfill
or replay made carry a ``directive`` and the ledger event they supersede
(``expect_event_id``, null: "the ledger does not know the object"): they apply
only while the ledger still holds exactly that event, so a batch run can never
put an older version over a newer one the stream applied in the meantime. Ordering per
(bucket, key), one rule within a batch and against the ledger, so the outcome never
depends on where batch boundaries fall: an event with a sequencer outranks one without
(S3's sequencer is the order of record; event times are whole milliseconds or seconds);
between two with sequencers the greatest normalised sequencer wins, between two without
the later event time (R4).
"""

from __future__ import annotations

import logging
from collections.abc import Collection, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
from pyspark.sql import Column, Row, Window
from pyspark.sql import functions as F

from jobs.silver.conflicts import first_line, is_conflict, retry_on_conflict
from jobs.silver.fastappend import NothingCommitted, append_arrow, row_delta_arrow
from jobs.stream.intents import LEDGER_FIELDS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)

APPLY = "apply"
DUPLICATE = "duplicate"
STALE = "stale"
LEDGER_LIVE = "live"
LEDGER_DELETED = "deleted"
LEDGER_QUARANTINED = "quarantined"


def rank_events_per_object(events_df: DataFrame) -> DataFrame:
    """Add ``_rank`` (1 = newest event of its object) and the winner's event id.

    Args:
        events_df: Events with bucket, key, sequencer, event_time, event_id.

    Returns:
        The events with ``_rank`` and ``_winner_event_id``.
    """
    newest_first = Window.partitionBy("bucket", "key").orderBy(
        F.col("sequencer").desc_nulls_last(), F.col("event_time").desc(), F.col("event_id").desc()
    )
    return events_df.withColumn("_rank", F.row_number().over(newest_first)).withColumn(
        "_winner_event_id", F.first("event_id").over(newest_first)
    )


def filter_batch_losers(ranked_df: DataFrame) -> DataFrame:
    """Events beaten by a newer event of the same object in this batch, with their verdict.

    Args:
        ranked_df: Output of :func:`rank_events_per_object`.

    Returns:
        Losers with ``verdict`` = duplicate (same identity as the winner) or stale.
    """
    return ranked_df.filter(F.col("_rank") > 1).withColumn(
        "verdict", F.when(F.col("event_id") == F.col("_winner_event_id"), DUPLICATE).otherwise(STALE)
    )


def _is_newer_than(prefix: str) -> Column:
    """The batch's order, applied against a remembered event (columns ``<prefix>sequencer``, ...).

    (has a sequencer, then sequencer or event time); an event not newer is stale.
    """
    has, other_has = F.col("sequencer").isNotNull(), F.col(f"{prefix}sequencer").isNotNull()
    return F.coalesce(
        F.when(has & other_has, F.col("sequencer") > F.col(f"{prefix}sequencer"))
        .when(has, F.lit(True))  # a sequenced event outranks an entry that had none
        .when(other_has, F.lit(False))
        .otherwise(F.col("event_time") >= F.col(f"{prefix}event_time")),
        F.lit(False),
    )


def _is_newer_than_ledger() -> Column:
    return _is_newer_than("_l_")


def with_ledger_verdict(ranked_df: DataFrame, ledger_df: DataFrame, *, positions: bool = False) -> DataFrame:
    """Judge each batch winner against the ledger: apply, duplicate or stale.

    Args:
        ranked_df: Output of :func:`rank_events_per_object`.
        ledger_df: The ledger table (bucket, key, sequencer, event_time, event_id, ...).
        positions: Also where each ledger row is, as ``_l_file`` and ``_l_pos`` (Iceberg's
            ``_file`` and ``_pos``: ``ledger_df`` must read the Iceberg table), for
            :func:`update_ledger`'s position deletes.

    Returns:
        One row per object (the batch winner) with ``verdict`` and the ledger's ``_l_*`` fields.
    """
    where = [F.col("_file").alias("_l_file"), F.col("_pos").alias("_l_pos")] if positions else []
    ledger = ledger_df.select(
        "bucket",
        "key",
        F.col("sequencer").alias("_l_sequencer"),
        F.col("event_time").alias("_l_event_time"),
        F.col("event_id").alias("_l_event_id"),
        F.col("state").alias("_l_state"),
        *where,
    )
    winners = ranked_df.filter(F.col("_rank") == 1)
    for column in ("directive", "expect_event_id"):  # plain stream events have neither
        if column not in winners.columns:
            winners = winners.withColumn(column, F.lit(None).cast("string"))
    directed = F.col("directive").isNotNull()
    # The ledger holds every object: it is streamed past the batch's broadcast keys once, and
    # only its rows of this batch's objects meet the winners (no shuffle or sort of the ledger).
    keys = F.broadcast(winners.select("bucket", "key"))
    known = ledger.join(keys, ["bucket", "key"], "left_semi")
    return winners.join(known, ["bucket", "key"], "left").withColumn(
        "verdict",
        F.when(directed & F.col("_l_event_id").eqNullSafe(F.col("expect_event_id")), APPLY)
        .when(F.col("_l_event_id") == F.col("event_id"), DUPLICATE)
        .when(directed, STALE)
        .when(F.col("_l_event_id").isNull(), APPLY)
        .when(_is_newer_than_ledger(), APPLY)
        .otherwise(STALE),
    )


def behind_parked(judged_df: DataFrame, parked_df: DataFrame) -> DataFrame:
    """Turn ``apply`` into ``stale`` for a stream event older than a parked event of its object.

    A parked event (its version could not be read or committed, retries exhausted) is
    not in the ledger, but it is still the newest news of its object: an older event
    redriven later (from the DLQ, or a late duplicate notification) must not put an older
    version in silver (R4). Redriving the parked event itself, or a newer event, applies.
    Backfill and replay events (a ``directive``) are guarded by the ledger entry they expect.

    Args:
        judged_df: Output of :func:`with_ledger_verdict`.
        parked_df: The parked table (bucket, key, sequencer, event_time, event_id, ...).

    Returns:
        ``judged_df`` with the verdicts of such events changed, same columns.
    """
    newest_parked = (
        rank_events_per_object(parked_df.select("bucket", "key", "sequencer", "event_time", "event_id"))
        .filter(F.col("_rank") == 1)
        .select(
            "bucket",
            "key",
            *[F.col(c).alias(f"_p_{c}") for c in ("sequencer", "event_time", "event_id")],
        )
    )
    behind = (
        (F.col("verdict") == APPLY)
        & F.col("directive").isNull()
        & F.col("_p_event_id").isNotNull()
        & (F.col("_p_event_id") != F.col("event_id"))
        & ~_is_newer_than("_p_")
    )
    return (
        judged_df.join(newest_parked, ["bucket", "key"], "left")
        .withColumn("verdict", F.when(behind, STALE).otherwise(F.col("verdict")))
        .drop("_p_sequencer", "_p_event_time", "_p_event_id")
    )


def judge_events(
    events_df: DataFrame, ledger_df: DataFrame, parked_df: DataFrame | None = None, *, positions: bool = False
) -> DataFrame:
    """Every event with its verdict: batch losers (stale/duplicate) and judged winners.

    Args:
        events_df: The batch's events (bucket, key, sequencer, event_time, event_id, ...).
        ledger_df: The ledger table.
        parked_df: Parked events, whose objects' older events are stale (:func:`behind_parked`).
        positions: Also where the winners' ledger rows are (:func:`with_ledger_verdict`).

    Returns:
        The events with ``verdict`` and the ledger's ``_l_*`` fields (null for losers).
    """
    ranked = rank_events_per_object(events_df)
    winners = with_ledger_verdict(ranked, ledger_df, positions=positions)
    if parked_df is not None:
        winners = behind_parked(winners, parked_df)
    losers = filter_batch_losers(ranked)
    return winners.unionByName(losers, allowMissingColumns=True)


class KeyedRow(Row):
    """A :class:`~pyspark.sql.Row` that finds a field by name in one dict lookup.

    pyspark's Row searches its list of field names on every ``row["name"]`` and
    ``row.name``: with the judged events' 30-odd fields that was about 1 s of the
    driver's time per 20,000 events, as the batch reads each event's fields a dozen
    times. Everything else (tuple, equality, ``asDict``, pickling) is the Row's.
    """

    def __getitem__(self, item: Any) -> Any:
        if isinstance(item, str):  # a KeyedRow made another way (``type(row)(**fields)``) has no map
            position = self.__dict__.get("_positions", {}).get(item)
            if position is not None:
                return tuple.__getitem__(self, position)
        return super().__getitem__(item)

    def __getattr__(self, item: str) -> Any:
        position = self.__dict__.get("_positions", {}).get(item)
        if position is not None:
            return tuple.__getitem__(self, position)
        return super().__getattr__(item)


def keyed_rows(rows: Sequence[Row]) -> list[Row]:
    """The same rows as :class:`KeyedRow` (for the driver's many reads of their fields).

    Args:
        rows: Collected rows (with field names).

    Returns:
        The rows, in order.
    """
    positions: dict[tuple[str, ...], dict[str, int]] = {}
    keyed: list[Row] = []
    for row in rows:
        fields = row.__fields__
        names = tuple(fields)
        if names not in positions:
            found: dict[str, int] = {}
            for index, name in enumerate(names):
                found.setdefault(name, index)  # a duplicated name: the first, as Row finds it
            positions[names] = found
        new = tuple.__new__(KeyedRow, row)
        new.__dict__["__fields__"] = fields
        new.__dict__["_positions"] = positions[names]
        keyed.append(new)
    return keyed


def update_ledger(
    spark: SparkSession,
    ledger_table: str,
    rows: Sequence[tuple[Any, ...]],
    *,
    known: Collection[tuple[str, str]] | None = None,
    where: Located | None = None,
) -> None:
    """Upsert the applied objects' new state into the ledger.

    Args:
        spark: The session.
        ledger_table: Fully qualified ledger table.
        rows: One row per object, the ledger's columns in table order
            (:data:`jobs.stream.intents.LEDGER_FIELDS`).
        known: The (bucket, key) of the objects the ledger already holds a row for, as the
            judge read them in this batch (the job is the ledger's only writer). None: any
            object may have a row; one MERGE upserts them all (its outer join shuffles the
            whole ledger). That is the intent recovery's way.
        where: Where the judge found those rows (:class:`Located`). With it, one
            ``RowDelta`` deletes them by position and adds every new row: metadata and the
            batch's own rows only, no read of the ledger
            (:func:`jobs.silver.fastappend.row_delta_arrow`). Without it, or when a data
            file was compacted away since the judge read it, the known objects' rows are
            updated by a MERGE that only matches (an inner join, the batch's rows
            broadcast against the ledger) and the others appended metadata-only. Two
            commits: a crash between them is mended by the next batch's intent recovery.
    """
    if known is None:
        _merge_into_ledger(spark, ledger_table, rows, insert=True)
        return
    bucket, key = LEDGER_FIELDS.index("bucket"), LEDGER_FIELDS.index("key")
    updated = [row for row in rows if (row[bucket], row[key]) in known]
    added = [row for row in rows if (row[bucket], row[key]) not in known]
    if updated and where is not None and all((row[bucket], row[key]) in where.rows for row in updated):
        deletes = [where.rows[(row[bucket], row[key])] for row in updated]
        try:
            row_delta_arrow(spark, ledger_table, _arrow(rows), deletes, from_snapshot=where.snapshot_id)
            return
        except NothingCommitted as exc:
            log.warning("ledger update by position not possible (%s): updating by MERGE", first_line(exc))
        except Exception as exc:
            # Refused, so nothing was committed: e.g. a data file compacted away since the
            # judge read it. Any other error at the commit fails the batch (it is replayed).
            if not is_conflict(exc) or "CommitStateUnknown" in str(exc):
                raise
            log.info("ledger update by position refused (%s): updating by MERGE", first_line(exc))
    if updated:
        _merge_into_ledger(spark, ledger_table, updated, insert=False)
    if added:
        table = _arrow(added)
        retry_on_conflict(lambda: append_arrow(spark, ledger_table, table, {}), ledger_table)


@dataclass(frozen=True)
class Located:
    """Where the judge found ledger rows: (bucket, key) -> (data file, position), and the snapshot read."""

    rows: Mapping[tuple[str, str], tuple[str, int]]
    snapshot_id: int | None


def _arrow(rows: Sequence[tuple[Any, ...]]) -> pa.Table:
    return pa.table({name: [row[i] for row in rows] for i, name in enumerate(LEDGER_FIELDS)})


def _merge_into_ledger(
    spark: SparkSession, ledger_table: str, rows: Sequence[tuple[Any, ...]], *, insert: bool
) -> None:
    """One MERGE of ``rows`` by (bucket, key); ``insert``: rows it does not match are added."""
    updates_df = spark.createDataFrame(list(rows), schema=spark.table(ledger_table).schema)
    view = "_silverline_ledger_updates"
    updates_df.createOrReplaceTempView(view)
    statement = f"""MERGE INTO {ledger_table} l USING {view} u
            ON l.bucket = u.bucket AND l.key = u.key
            WHEN MATCHED THEN UPDATE SET *"""
    if insert:
        statement += "\n            WHEN NOT MATCHED THEN INSERT *"
    retry_on_conflict(lambda: spark.sql(statement), ledger_table)

"""The ledger guard: newest event per object wins, across batches (R4, R5)."""

from __future__ import annotations

import datetime as dt
from typing import Any

import pytest
from chispa import assert_df_equality

from jobs.stream.ledger import filter_batch_losers, rank_events_per_object, with_ledger_verdict

pytestmark = pytest.mark.spark

EVENTS = "bucket string, key string, sequencer string, event_time timestamp, event_id string"
LEDGER = "bucket string, key string, sequencer string, event_time timestamp, event_id string, state string"
T = dt.datetime(2024, 3, 1, 12, 0)


def seq(n: int) -> str:
    return f"{n:032X}"


def events(spark: Any, rows: list[tuple[Any, ...]]) -> Any:
    return spark.createDataFrame(rows, EVENTS)


def test_batch_winner_is_greatest_sequencer_and_losers_are_stale_or_duplicate(spark: Any) -> None:
    ranked = rank_events_per_object(
        events(
            spark,
            [
                ("b", "k1", seq(0x10), T, "e10"),
                ("b", "k1", seq(0x0F), T + dt.timedelta(seconds=5), "e0f"),  # later clock, older sequencer
                ("b", "k1", seq(0x10), T, "e10"),  # duplicate of the winner
                ("b", "k2", None, T, "n1"),
                ("b", "k2", None, T + dt.timedelta(seconds=1), "n2"),  # no sequencer: time decides
            ],
        )
    )
    winners = ranked.filter("_rank = 1").select("key", "event_id")
    assert_df_equality(
        winners,
        spark.createDataFrame([("k1", "e10"), ("k2", "n2")], "key string, event_id string"),
        ignore_row_order=True,
        ignore_nullable=True,
    )
    losers = filter_batch_losers(ranked).select("key", "event_id", "verdict")
    assert_df_equality(
        losers,
        spark.createDataFrame(
            [("k1", "e0f", "stale"), ("k1", "e10", "duplicate"), ("k2", "n1", "stale")],
            "key string, event_id string, verdict string",
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_verdict_against_the_ledger(spark: Any) -> None:
    ledger = spark.createDataFrame(
        [
            ("b", "newer", seq(5), T, "l-newer", "live"),
            ("b", "older", seq(9), T, "l-older", "live"),
            ("b", "same", seq(7), T, "same-id", "live"),
            ("b", "deleted", seq(8), T, "l-del", "deleted"),
            ("b", "timed", None, T, "l-timed", "live"),
        ],
        LEDGER,
    )
    batch = events(
        spark,
        [
            ("b", "newer", seq(6), T, "x1"),  # newer than ledger -> apply
            ("b", "older", seq(3), T, "x2"),  # older -> stale
            ("b", "same", seq(7), T, "same-id"),  # the applied event again -> duplicate
            ("b", "deleted", seq(4), T, "x3"),  # a create older than the tombstone -> stale
            ("b", "timed", None, T - dt.timedelta(seconds=1), "x4"),  # no sequencer, earlier -> stale
            ("b", "fresh", seq(1), T, "x5"),  # never seen -> apply
            ("b", "nullseq", None, None, "x6"),  # never seen, nothing to compare -> apply
        ],
    )
    verdicts = with_ledger_verdict(rank_events_per_object(batch), ledger).select("key", "verdict")
    assert_df_equality(
        verdicts,
        spark.createDataFrame(
            [
                ("newer", "apply"),
                ("older", "stale"),
                ("same", "duplicate"),
                ("deleted", "stale"),
                ("timed", "stale"),
                ("fresh", "apply"),
                ("nullseq", "apply"),
            ],
            "key string, verdict string",
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )


def test_directed_events_apply_only_while_the_ledger_holds_what_they_expect(spark: Any) -> None:
    ledger = spark.createDataFrame(
        [
            ("b", "still", seq(5), T, "l-still", "live"),
            ("b", "moved", seq(9), T, "l-moved-on", "live"),
            ("b", "again", seq(7), T, "bf-again", "live"),
            ("b", "replayed", seq(7), T, "l-rep", "live"),
        ],
        LEDGER,
    )
    directed = EVENTS + ", directive string, expect_event_id string"
    later = T + dt.timedelta(days=1)
    batch = spark.createDataFrame(
        [
            (
                "b",
                "still",
                None,
                T - dt.timedelta(days=9),
                "bf-1",
                "backfill",
                "l-still",
            ),  # older time, still current
            (
                "b",
                "moved",
                None,
                later,
                "bf-2",
                "backfill",
                "l-was",
            ),  # the stream applied something else since
            (
                "b",
                "again",
                None,
                later,
                "bf-again",
                "backfill",
                "l-before",
            ),  # this very event already applied
            ("b", "unknown", None, later, "bf-3", "backfill", None),  # expects no ledger row: none
            ("b", "replayed", seq(7), T, "l-rep", "replay", "l-rep"),  # same id as the ledger: re-applied
            ("b", "plain", seq(1), T, "p-1", None, None),  # an ordinary event is judged as before
        ],
        directed,
    )
    judged = with_ledger_verdict(rank_events_per_object(batch), ledger).select("key", "verdict")
    assert_df_equality(
        judged,
        spark.createDataFrame(
            [
                ("still", "apply"),
                ("moved", "stale"),
                ("again", "duplicate"),
                ("unknown", "apply"),
                ("replayed", "apply"),
                ("plain", "apply"),
            ],
            "key string, verdict string",
        ),
        ignore_row_order=True,
        ignore_nullable=True,
    )


def winner_after(spark: Any, batches: list[list[tuple[Any, ...]]]) -> str:
    """The event id the ledger holds for key "k" after applying ``batches`` one after another."""
    ledger_rows: list[tuple[Any, ...]] = []
    for batch in batches:
        ledger = spark.createDataFrame(ledger_rows, LEDGER)
        judged = with_ledger_verdict(rank_events_per_object(events(spark, batch)), ledger)
        for row in judged.filter("verdict = 'apply'").collect():
            ledger_rows = [
                (row["bucket"], row["key"], row["sequencer"], row["event_time"], row["event_id"], "live")
            ]
    (only,) = ledger_rows
    return str(only[4])


def test_one_ordering_rule_whatever_the_batch_boundaries(spark: Any) -> None:
    """An event with a sequencer and one without, of one key: the same winner in one batch or two,
    in either order (R4: S3's sequencer outranks an event that has none, whatever their times)."""
    sequenced = ("b", "k", seq(0x0A), T, "with-seq")
    unsequenced = ("b", "k", None, T + dt.timedelta(seconds=4), "without-seq")  # later by the clock
    outcomes = {
        "one batch": winner_after(spark, [[sequenced, unsequenced]]),
        "sequenced first": winner_after(spark, [[sequenced], [unsequenced]]),
        "unsequenced first": winner_after(spark, [[unsequenced], [sequenced]]),
    }
    assert outcomes == dict.fromkeys(outcomes, "with-seq")
    # without sequencers on either side the later event time still wins, in any order
    earlier = ("b", "k", None, T, "earlier")
    later = ("b", "k", None, T + dt.timedelta(seconds=1), "later")
    assert winner_after(spark, [[earlier], [later]]) == winner_after(spark, [[later], [earlier]]) == "later"
    assert winner_after(spark, [[earlier, later]]) == "later"


def test_the_ledger_update_merges_known_objects_and_appends_new_ones(spark: Any) -> None:
    from jobs.stream.intents import LEDGER_FIELDS
    from jobs.stream.ledger import update_ledger
    from jobs.stream.ops import TABLES

    table = "silverline.ledger_update.ledger"
    spark.sql(
        f"CREATE TABLE {table} ({TABLES['ledger']}) USING iceberg "
        "TBLPROPERTIES ('format-version'='2', 'write.merge.mode'='merge-on-read')"
    )

    def row(key: str, state: str, event_id: str, batch: int) -> tuple[Any, ...]:
        values = {"bucket": "b", "key": key, "tenant": "t", "dataset": "orders", "state": state,
                  "sequencer": seq(batch), "event_time": T, "event_id": event_id, "etag": "e",
                  "version_id": None, "batch_id": batch, "updated_at": T}  # fmt: skip
        return tuple(values[name] for name in LEDGER_FIELDS)

    update_ledger(spark, table, [row("a", "live", "a1", 1), row("b", "live", "b1", 1)], known=())
    update_ledger(spark, table, [row("a", "deleted", "a2", 2), row("c", "live", "c2", 2)], known={("b", "a")})
    operations = [r["operation"] for r in spark.sql(f"SELECT operation FROM {table}.snapshots").collect()]
    # The first update only appended; the second merged a's row, then appended c's.
    assert operations == ["append", "overwrite", "append"]
    # The intent recovery's upsert (nothing said known) leaves each object once.
    update_ledger(spark, table, [row("c", "live", "c2", 2), row("d", "live", "d3", 3)])
    state = {r["key"]: (r["state"], r["event_id"]) for r in spark.table(table).collect()}
    assert spark.table(table).count() == 4
    assert state == {"a": ("deleted", "a2"), "b": ("live", "b1"), "c": ("live", "c2"), "d": ("live", "d3")}

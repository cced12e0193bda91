"""Run a backfill or a replay: read the ledger, plan, hand over, wait, summarise."""

from __future__ import annotations

import collections
import logging
import threading
import time
from collections.abc import Callable, Iterable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobs.batchruns.plan import LedgerEntry
from jobs.config import SilverlineConfig
from jobs.stream.handoff import RequestInbox
from jobs.stream.lease import WriterLease

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

APPLIED = "applied"
ALREADY_CURRENT = "already current"
SUPERSEDED = "superseded by a newer event"
WAITING = "not applied yet (held, retrying or parked: see the ops tables)"


@dataclass(frozen=True)
class Scope:
    """Which objects a run looks at."""

    tenants: tuple[str, ...] = ()
    dataset: str | None = None


def open_session(config: SilverlineConfig) -> SparkSession:
    """The Spark session for this configuration (the same one the writer uses)."""
    from jobs.session import build_spark_session, use_utc_local_time

    use_utc_local_time()
    return build_spark_session(config)


def read_ledger(spark: SparkSession, config: SilverlineConfig, scope: Scope) -> dict[str, LedgerEntry]:
    """The ledger entries of the group's bucket in ``scope``, by key (empty: no ledger yet)."""
    from pyspark.sql import functions as F

    from jobs.stream.ops import ops_table

    table = ops_table(config, "ledger")
    if not spark.catalog.tableExists(table):
        return {}
    frame = spark.table(table).filter(F.col("bucket") == config.group.bucket)
    if scope.tenants:
        frame = frame.filter(F.col("tenant").isin(list(scope.tenants)))
    if scope.dataset:
        frame = frame.filter(F.col("dataset") == scope.dataset)
    rows = frame.select("key", "state", "etag", "event_id", "event_time", "sequencer", "version_id").collect()
    return {
        r["key"]: LedgerEntry(
            key=r["key"],
            state=r["state"],
            etag=r["etag"],
            event_id=r["event_id"],
            event_time=r["event_time"].replace(tzinfo=UTC),
            sequencer=r["sequencer"],
            version_id=r["version_id"],
        )
        for r in rows
    }


def read_landed(
    spark: SparkSession, config: SilverlineConfig, scope: Scope, since: datetime | None
) -> list[dict[str, Any]]:
    """The newest landed event of every raw object in scope, parsed from bronze like the stream does."""
    from pyspark.sql import functions as F

    from jobs.events import model as m
    from jobs.stream import ledger
    from jobs.stream.ops_writer import EVENT_FIELDS
    from jobs.stream.query import BRONZE_SCHEMA, bronze_uri

    inbox_fields = [f for f in EVENT_FIELDS if f not in ("directive", "expect_event_id", "received_at")]
    try:
        bronze = (
            spark.read.schema(BRONZE_SCHEMA)
            .option("pathGlobFilter", "*.jsonl")
            .option("recursiveFileLookup", "true")
            .json(bronze_uri(config))
        )
    except Exception as exc:  # no bronze log yet: nothing landed
        if "PATH_NOT_FOUND" in str(exc) or "Path does not exist" in str(exc):
            return []
        raise
    from jobs.events.spark import parse_events

    # Materialised before filtering, as the stream does: filters pushed into the parser's
    # expressions multiply them until the planner runs out of memory.
    parsed = parse_events(bronze).select(*inbox_fields, "outcome").localCheckpoint(eager=True)
    events = parsed.filter((F.col("outcome") == m.EVENT) & (F.col("bucket") == config.group.bucket))
    if scope.tenants:
        events = events.filter(F.col("tenant").isin(list(scope.tenants)))
    if scope.dataset:
        events = events.filter(F.col("dataset") == scope.dataset)
    if since is not None:
        events = events.filter(F.col("event_time") >= F.lit(since.astimezone(UTC).replace(tzinfo=None)))
    newest = ledger.rank_events_per_object(events).filter(F.col("_rank") == 1).select(*inbox_fields)
    landed = []
    for row in newest.collect():
        event = row.asDict()
        event["event_time"] = event["event_time"].replace(tzinfo=UTC)
        landed.append(event)
    return landed


def available_now(config: SilverlineConfig) -> SilverlineConfig:
    """The configuration with ``stream.trigger: available-now``."""
    return config.model_copy(update={"stream": config.stream.model_copy(update={"trigger": "available-now"})})


def hand_over(
    config: SilverlineConfig,
    request_id: str,
    events: Sequence[Mapping[str, Any]],
    *,
    role: str,
    wait: bool = True,
    timeout: float = 3600.0,
    say: Callable[[str], None] = print,
    stop: threading.Event | None = None,
) -> int:
    """Hand ``events`` to the writer and (by default) wait until they went through a batch.

    When no process holds the writer lease, this process takes it and runs the
    writer itself (an ``available-now`` ingest without the SQS bridge: what
    landed in bronze is processed too).

    Returns:
        0 when the events went through (or were handed over with ``wait=False``), 1 otherwise.
    """
    from jobs.stream.command import run_ingest

    inbox = RequestInbox.for_config(config)
    names = inbox.submit(request_id, events)
    say(f"request {request_id}: {len(events)} events in {len(names)} files under {inbox.uri}")
    lease = WriterLease.for_config(config, role)
    deadline = time.monotonic() + timeout
    ran_here = False
    last_said = 0.0
    while inbox.pending(request_id):
        if ran_here:
            say(f"request {request_id}: still pending after this process's own run; see the log above")
            return 1
        if lease.try_acquire():
            say("no stream holds the writer lease: applying the request in this process")
            code = run_ingest(available_now(config), with_bridge=False, lease=lease, stop=stop)
            if code != 0:
                return code
            ran_here = True
            continue
        holder = lease.holder()
        who = holder.owner if holder else "another process"
        if not wait:
            say(f"handed over to the running writer {who}; it applies the request in its next batch")
            return 0
        if time.monotonic() > deadline:
            say(f"request {request_id}: not taken by {who} within {timeout:.0f} s (its files stay pending)")
            return 1
        if time.monotonic() - last_said > 30:
            left = len(inbox.pending(request_id))
            say(f"waiting for the running writer {who} to take the request ({left} files pending)")
            last_said = time.monotonic()
        if (stop or threading.Event()).wait(2.0):  # an unset event: a plain pause
            return 1
    return 0


def outcomes(
    spark: SparkSession, config: SilverlineConfig, events: Iterable[Mapping[str, Any]], submitted_at: datetime
) -> collections.Counter[str]:
    """What became of handed-over events, read back from the ledger."""
    from pyspark.sql import functions as F

    from jobs.stream.ops import ops_table

    wanted = {(str(e["key"])): str(e["event_id"]) for e in events}
    if not wanted:
        return collections.Counter()
    table = spark.table(ops_table(config, "ledger")).filter(F.col("bucket") == config.group.bucket)
    keys = spark.createDataFrame([(k,) for k in wanted], "key STRING")
    rows = table.join(keys, "key").select("key", "event_id", "updated_at").collect()
    found = {r["key"]: r for r in rows}
    since = submitted_at.astimezone(UTC).replace(tzinfo=None)
    result: collections.Counter[str] = collections.Counter()
    for key, event_id in wanted.items():
        row = found.get(key)
        if row is None:
            result[WAITING] += 1
        elif row["event_id"] == event_id:
            result[APPLIED if row["updated_at"] >= since else ALREADY_CURRENT] += 1
        else:
            result[SUPERSEDED] += 1
    return result

"""The foreachBatch writer: one micro-batch of parsed events -> silver, ledger, ops tables.

Order of effects (so a crash at any point replays safely, R6): tenant tables
first (one commit each, replays skipped by snapshot properties), then the
ledger, then the retry/parked/quarantine/rejected tables and batch metrics
(each idempotent per batch id).
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from jobs import ledger
from jobs.accounting import BatchCounts, freshness_percentiles
from jobs.batch_plan import PlannedTable, Planner
from jobs.config import SilverlineConfig
from jobs.contracts import DatasetContract
from jobs.handoff import RequestInbox
from jobs.notify import TableUpdate, TableUpdateNotifier
from jobs.ops import MetricsSink, ops_table
from jobs.ops_writer import EVENT_FIELDS, OpsWriter
from jobs.quality.suites import expectations_dir
from jobs.reader import ObjectReader
from jobs.silver import CommitResult, commit_changes
from jobs.snapshots import current_snapshot_id
from jobs.tenant_gate import RELEASABLE, TENANT_OFFBOARDED, Admission, TenantGate, admit

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession

log = logging.getLogger(__name__)


class BatchWriter:
    """Callable for ``foreachBatch``: applies one micro-batch of parsed records."""

    def __init__(
        self,
        spark: SparkSession,
        config: SilverlineConfig,
        contracts: Mapping[str, DatasetContract],
        reader: ObjectReader,
        query_id: str = "unknown",
        metrics_sink: MetricsSink | None = None,
        on_batch: Callable[[BatchCounts], None] | None = None,
        gate: TenantGate | None = None,
        notifier: TableUpdateNotifier | None = None,
    ) -> None:
        self.spark = spark
        self.config = config
        self.contracts = dict(contracts)
        self.reader = reader
        self.query_id = query_id
        self.ops = OpsWriter(spark, config, metrics_sink)
        self.on_batch = on_batch  # e.g. a progress display; called after each batch with data
        self._lock = threading.Lock()  # stream batches and retry passes never overlap
        suites = expectations_dir(config.stream.datasets_file)
        self.planner = Planner(spark, config, self.contracts, reader, suites)
        self.gate = gate or TenantGate(None, config.group.name)
        self.notifier = notifier  # downstream "table updated" messages (None: not configured)
        self._nothing_held_at: tuple[int | None, int] | None = None  # (held snapshot, gate version)
        self.inbox = RequestInbox.for_config(config)  # events handed over by backfill / replay runs
        self.planner.staging.clear()  # rows a crashed writer staged: its batch is replayed from bronze

    def __call__(self, batch_df: DataFrame, batch_id: int) -> None:
        """Process one micro-batch (the ``foreachBatch`` contract)."""
        with self._lock:
            started = datetime.now(UTC)
            # Materialise the micro-batch once: every later action reads these blocks, so the
            # stream's stateful dedupe runs exactly once per batch (a persisted plan was seen
            # to run it twice, doubling the dedupe counts in the query progress).
            source_started = time.perf_counter()
            batch_df = batch_df.localCheckpoint(eager=True)
            source_seconds = time.perf_counter() - source_started
            counts = self._process(batch_df, int(batch_id), started, self.inbox.pending(), source_seconds)
        if counts.records_in or counts.retried_in:
            log.info("batch %d: %s", batch_id, counts.summary())
            if self.on_batch is not None:
                self.on_batch(counts)

    def retry_pass(self, query_id: str) -> BatchCounts | None:
        """Retry the events of failed tenant commits without waiting for new input.

        Its batch id is the negated id of the retry table's current snapshot (with
        handed-over requests pending: a hash of that id and their names): a pass
        that crashed after some commits and is run again gets the same id, so those
        commits are recognised as replays (R6), while the next pass gets a new id.

        Args:
            query_id: The streaming query id (recorded in the snapshot properties).

        Returns:
            The pass's counts, or None when nothing waits for a retry.
        """
        with self._lock:
            snapshot_id = current_snapshot_id(self.spark, ops_table(self.config, "retry"))
            if snapshot_id is None and not self.gate.open:  # held events may wait for their tenant
                snapshot_id = current_snapshot_id(self.spark, ops_table(self.config, "held"))
            requests = self.inbox.pending()
            if requests:
                digest = hashlib.sha256(f"{snapshot_id}|{'|'.join(requests)}".encode()).hexdigest()
                snapshot_id = int(digest[:15], 16)
            if snapshot_id is None:
                return None
            started = datetime.now(UTC)
            self.query_id = query_id
            counts = self._process(None, -snapshot_id, started, requests)
        if not counts.retried_in:
            return None
        log.info("retry pass %d: %s", counts.batch_id, counts.summary())
        if self.on_batch is not None:
            self.on_batch(counts)
        return counts

    # ---- phases -------------------------------------------------------------------------------------
    def _process(
        self,
        batch_df: DataFrame | None,
        batch_id: int,
        started: datetime,
        requests: Sequence[str],
        source_seconds: float = 0.0,
    ) -> BatchCounts:
        counts = BatchCounts(batch_id=batch_id, query_id=self.query_id, started_at=started)
        if batch_df is not None:  # reading bronze, parsing, the watermark dedupe (the query's own work)
            counts.phase_seconds["source"] = round(source_seconds, 3)
        with counts.phase("parse"):
            retry = self.spark.table(ops_table(self.config, "retry")).select(*EVENT_FIELDS, "attempts")
            released = self._released_tenants()
            if released:
                retry = retry.unionByName(self.ops.held_events(released, RELEASABLE))
            if requests:
                log.info("taking %d request files handed over by backfill/replay runs", len(requests))
                retry = retry.unionByName(self.inbox.frame(self.spark, requests))
            counts.retried_in = retry.count()
            events = self._records(batch_df, batch_id, counts) if batch_df is not None else None
        if counts.records_in == 0 and counts.retried_in == 0:
            return counts  # a no-data batch (Spark advancing the watermark): nothing to record
        all_events = (retry if events is None else events.unionByName(retry)).persist()
        try:
            self._apply_events(all_events, batch_id, counts)
            with counts.phase("ledger"):
                if released:  # their events went through this batch's ledger: no longer held
                    self.ops.release_held(released, RELEASABLE)
                self.inbox.done(requests)
        finally:
            all_events.unpersist()
        counts.finished_at = datetime.now(UTC)
        self.ops.write_metrics(counts)
        return counts

    def _released_tenants(self) -> list[str]:
        """Active tenants with held events: those events re-enter in this batch."""
        if self.gate.open:
            return []
        self.gate.refresh()
        held = ops_table(self.config, "held")
        state = (current_snapshot_id(self.spark, held), self.gate.version)
        if state[0] is None or state == self._nothing_held_at or not self.gate.active():
            return []
        rows = self.ops.held_events(self.gate.active(), RELEASABLE).select("tenant").distinct().collect()
        tenants = sorted(r["tenant"] for r in rows)
        self._nothing_held_at = None if tenants else state
        if tenants:
            log.info("releasing held events of %d tenants now active: %s", len(tenants), ", ".join(tenants))
        return tenants

    def _records(self, batch_df: DataFrame, batch_id: int, counts: BatchCounts) -> DataFrame:
        """Count the batch's records by parse outcome; keep the rejected; return the events."""
        grouped = batch_df.groupBy("outcome").agg(F.count("*").alias("n")).collect()
        by_outcome = {r["outcome"]: r["n"] for r in grouped}
        counts.records_in = sum(by_outcome.values())
        counts.test = by_outcome.get("test", 0)
        counts.ignored = by_outcome.get("ignored", 0)
        counts.rejected = by_outcome.get("rejected", 0)
        if counts.rejected:
            self.ops.write_rejected(batch_df, batch_id)
        return (
            batch_df.filter(F.col("outcome") == "event")
            .withColumn("directive", F.lit(None).cast("string"))
            .withColumn("expect_event_id", F.lit(None).cast("string"))
            .select(*EVENT_FIELDS)
            .withColumn("attempts", F.lit(0))
        )

    def _apply_events(self, events: DataFrame, batch_id: int, counts: BatchCounts) -> None:
        with counts.phase("judge"):
            ledger_df = self.spark.table(ops_table(self.config, "ledger"))
            judged = ledger.judge_events(events, ledger_df).collect()
        winners: list[Row] = []
        for row in judged:
            if row["verdict"] != ledger.APPLY:
                counts.add(row["verdict"], 1, tenant=row["tenant"], dataset=row["dataset"])
            else:
                winners.append(row)
        admission = admit(winners, self.gate, self.config.stream.max_files_per_tenant)
        self._count_admission(admission, counts)
        to_apply = [r for r in admission.apply if r["dataset"] in self.contracts]
        unknown = [r for r in admission.apply if r["dataset"] not in self.contracts]
        quarantine: list[tuple[Row, str, str | None]] = [(r, "unknown_dataset", None) for r in unknown]
        try:
            plan, verdicts = self.planner.plan(to_apply, batch_id, counts, quarantine)
            with counts.phase("commit"):
                results = commit_changes(
                    self.spark,
                    [planned.change for planned in plan.values()],
                    batch_id=batch_id,
                    query_id=self.query_id,
                    max_workers=self.config.stream.commit_threads,
                )
        finally:
            self.planner.staging.clear()  # the commits have read the staged rows
        with counts.phase("ledger"):
            no_table = [(r, ledger.LEDGER_QUARANTINED) for r in unknown]
            self._after_commits(plan, results, no_table, batch_id, counts, admission.deferred)
            self.ops.write_held(
                [*admission.held, *((r, TENANT_OFFBOARDED) for r in admission.dropped)], batch_id
            )
            self.ops.write_quarantine(quarantine, batch_id)
            self.ops.write_validation(verdicts, batch_id=batch_id, query_id=self.query_id)

    def _after_commits(
        self,
        plan: Mapping[str, PlannedTable],
        results: Sequence[CommitResult],
        no_table: list[tuple[Row, str]],
        batch_id: int,
        counts: BatchCounts,
        waiting: Sequence[Row],
    ) -> None:
        done: list[tuple[Row, str]] = list(no_table)
        failed: list[tuple[Row, str]] = []
        updates: list[TableUpdate] = []
        for result in results:
            planned = plan[result.table]
            states = planned.states
            stats = counts.table(planned.tenant, planned.dataset)
            stats["status"] = result.status
            stats["rows_written"] = result.rows_written
            if result.status == "failed":
                counts.tables_failed += 1
                failed.extend((row, result.error or "commit failed") for row, _ in states)
                continue
            counts.tables_committed += result.status == "committed"
            counts.rows_written += result.rows_written
            done.extend(states)
            if result.status == "committed":
                updates.append(_table_update(planned, result, batch_id))
        now = datetime.now(UTC)
        for row, state in done:
            where = {"tenant": row["tenant"], "dataset": row["dataset"]}
            if state == ledger.LEDGER_QUARANTINED:
                counts.add("quarantined", 1, **where)
            else:
                counts.add("applied", 1, **where)
                if state == ledger.LEDGER_DELETED:
                    stats = counts.table(row["tenant"], row["dataset"])
                    stats["deleted"] = stats.get("deleted", 0) + 1
                if getattr(row, "directive", None) is None:  # a backfill's time is LastModified, not news
                    delay = now - row["event_time"].replace(tzinfo=UTC)
                    counts.freshness_samples.append(delay.total_seconds())
        if done:
            rows = [_ledger_row(row, state, batch_id, now) for row, state in done]
            all_new = all(row["_l_event_id"] is None for row, _ in done)
            ledger_table = ops_table(self.config, "ledger")
            ledger.update_ledger(self.spark, ledger_table, self.ops.ledger_df(rows), all_new=all_new)
        self.ops.rewrite_retry(failed, batch_id, counts, waiting)
        if self.notifier is not None and updates:  # after the ledger: announce only durable state
            self.notifier.record(updates)
        for row, _ in [*done, *failed]:
            if getattr(row, "directive", None) is None:
                counts.note_lag(row["tenant"], row["event_time"].replace(tzinfo=UTC), now)
        counts.freshness_p50_s, counts.freshness_p95_s = freshness_percentiles(counts.freshness_samples)

    def _count_admission(self, admission: Admission, counts: BatchCounts) -> None:
        """Count held, dropped and deferred events; note how far behind those tenants are."""
        now = datetime.now(UTC)
        for row, _ in admission.held:
            counts.add("parked", 1)
            counts.note_lag(row["tenant"], row["event_time"].replace(tzinfo=UTC), now)
        for row in admission.deferred:
            counts.add("deferred", 1, tenant=row["tenant"], dataset=row["dataset"])
            counts.note_lag(row["tenant"], row["event_time"].replace(tzinfo=UTC), now)
        counts.add("dropped", len(admission.dropped))
        if admission.held or admission.dropped:
            log.info(
                "held %d events of inactive tenants, dropped %d of offboarded tenants",
                len(admission.held),
                len(admission.dropped),
            )


def _table_update(planned: PlannedTable, result: CommitResult, batch_id: int) -> TableUpdate:
    return TableUpdate(
        table=result.table,
        tenant=planned.tenant,
        dataset=planned.dataset,
        zone=planned.change.zone,
        snapshot_id=result.snapshot_id,
        rows_written=result.rows_written,
        rows_deleted=None,  # replaced rows are not counted by the commit
        source_objects=len(planned.states),
        batch_id=batch_id,
        committed_at=datetime.now(UTC),
    )


def _ledger_row(row: Row, state: str, batch_id: int, now: datetime) -> tuple[Any, ...]:
    return (
        row["bucket"], row["key"], row["tenant"], row["dataset"], state, row["sequencer"],
        row["event_time"], row["event_id"], row["etag"], row["version_id"], batch_id, now,
    )  # fmt: skip

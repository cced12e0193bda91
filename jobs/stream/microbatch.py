"""The foreachBatch writer: one micro-batch of parsed events -> silver, ledger, ops tables.

The order of a micro-batch's effects, and why a crash between any two of them is
safe (R6), is written once: :meth:`BatchWriter._process`.
"""

from __future__ import annotations

import hashlib
import logging
import threading
import time
from collections.abc import Callable, Collection, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from jobs.config import SilverlineConfig
from jobs.contracts import DatasetContract
from jobs.quality.suites import expectations_dir
from jobs.silver.commit import CommitResult, commit_changes
from jobs.silver.conflicts import retry_on_conflict
from jobs.silver.snapshots import current_snapshot_id, find_batch_snapshot, holds_no_rows
from jobs.stream import ledger
from jobs.stream.accounting import BatchCounts, freshness_percentiles
from jobs.stream.handoff import RequestInbox
from jobs.stream.intents import CommitIntents, Intent
from jobs.stream.lease import LeaseLostError, WriterLease
from jobs.stream.notify import TableUpdate, TableUpdateNotifier
from jobs.stream.ops import MetricsSink, ops_table
from jobs.stream.ops_writer import EVENT_FIELDS, OpsWriter
from jobs.stream.plan import PlannedTable, Planner
from jobs.tenants.gate import RELEASABLE, TENANT_OFFBOARDED, Admission, TenantGate, admit

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
        query_id: str = "unknown",
        metrics_sink: MetricsSink | None = None,
        on_batch: Callable[[BatchCounts], None] | None = None,
        gate: TenantGate | None = None,
        notifier: TableUpdateNotifier | None = None,
    ) -> None:
        self.spark = spark
        self.config = config
        self.contracts = dict(contracts)
        self.query_id = query_id
        self.ops = OpsWriter(spark, config, metrics_sink)
        self.on_batch = on_batch  # e.g. a progress display; called after each batch with data
        self._lock = threading.Lock()  # stream batches and retry passes never overlap
        self._judged_ledger: int | None = None  # the ledger snapshot the last judge read
        suites = expectations_dir(config.stream.datasets_file)
        self.planner = Planner(spark, config, self.contracts, suites)
        self.gate = gate or TenantGate(None, config.group.name)
        self.notifier = notifier  # downstream "table updated" messages (None: not configured)
        self._nothing_held_at: tuple[int | None, int] | None = None  # (held snapshot, gate version)
        self.inbox = RequestInbox.for_config(config)  # events handed over by backfill / replay runs
        self.intents = CommitIntents.for_config(config)  # what a batch's commits stand for, until recorded
        self.lease: WriterLease | None = None  # checked right before the commits (None: not checked)

    def take_over(self) -> None:
        """Call once the writer lease is held: clear what a stopped writer left in staging.

        Its batch is replayed from bronze. Not done when the writer is built: a second
        process builds one before it waits for the lease, while the holder's staged
        rows still wait for their commits.
        """
        cleared = self.planner.staging.clear()
        if cleared:
            log.info("cleared %d files a stopped writer left in staging", cleared)

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

    # ---- one micro-batch, step by step --------------------------------------------------------------
    def _process(
        self,
        batch_df: DataFrame | None,
        batch_id: int,
        started: datetime,
        requests: Sequence[str],
        source_seconds: float = 0.0,
    ) -> BatchCounts:
        """Apply one micro-batch (or retry pass): every effect it has, in the order it has them.

        A batch with records or retried events first checks the writer lease, then
        recovers the intents left by a batch that stopped between its commits and its
        ledger update (:mod:`jobs.stream.intents`): the tables that did commit get
        their objects' ledger rows, before anything is judged. Nothing else before
        step 1 writes anything durable but the rejected records: the inputs (this
        batch's events, the retry table, held events of tenants active again, request
        files handed over by backfill/replay runs) are judged against the ledger,
        admitted by the tenant gate, read, checked and staged. The lease is checked
        again right before step 1: a writer whose lease another process took over
        aborts the batch before its first commit. Then:

        1. **held**, **quarantine** and **validation** rows, each replaced per batch id:
           they depend on the plan only, so they are durable before any event leaves
           the retry table or the ledger calls an object done.
        2. **intent**: the ledger rows each tenant table's commit stands for.
        3. **silver commits**, one per tenant table (quarantine table first). Each
           snapshot carries (query id, batch id). A table that already has this batch's
           snapshot is skipped, and its planned events, which that commit did not hold
           (the recovered intent made the ones it held duplicates), wait in the retry
           table. Staged rows are cleared once the commits ran.
        4. **ledger**: the objects applied or quarantined, with their new state.
        5. **intent removed**.
        6. **retry table** rewritten: events of failed or skipped commits and of tables
           whose objects could not be read, deferred events.
        7. **notifications** of the committed tables (after the ledger: durable state).
        8. **held events released** (their tenants' events went through this batch) and
           handed-over **request files marked done**.
        9. **batch metrics**, replaced per batch id.

        Why a crash between two steps is safe: Spark replays the micro-batch from bronze
        with the same batch id (a retry pass gets the same id while the retry table is
        unchanged); a new query (``--reset-checkpoint``) replays it under another id.
        Either way the next batch first recovers the intent of 2, so an object whose
        commit (3) landed is in the ledger before anything is judged, and is never
        appended twice; the ledger turns what is already applied into duplicate or
        stale; the ops rows of 1, 6 and 9 are replaced, not appended. Step 8 runs after
        every table that took those events was written, so a crash before it only
        replays them into the ledger's duplicate verdict. A notification (7) may be sent
        twice, never before its state is durable.

        Args:
            batch_df: The micro-batch's parsed records (None for a retry pass).
            batch_id: Spark's batch id, or a retry pass's negative id.
            started: When the batch started.
            requests: Handed-over request files to take in this batch.
            source_seconds: Time the query spent producing ``batch_df``.

        Returns:
            The batch's counts.
        """
        counts = BatchCounts(batch_id=batch_id, query_id=self.query_id, started_at=started)
        self.ops.query_id = self.query_id  # ops rows are keyed by (query id, batch id)
        if batch_df is not None:  # reading bronze, parsing, the watermark dedupe (the query's own work)
            counts.phase_seconds["source"] = round(source_seconds, 3)
        with counts.phase("parse"):
            retry_table = ops_table(self.config, "retry")
            self._forget_cached(retry_table, ops_table(self.config, "held"))
            retry = self.spark.table(retry_table).select(*EVENT_FIELDS, "attempts")
            released = self._released_tenants()
            if released:
                retry = retry.unionByName(self.ops.held_events(released, RELEASABLE))
            if requests:
                log.info("taking %d request files handed over by backfill/replay runs", len(requests))
                retry = retry.unionByName(self.inbox.frame(self.spark, requests))
            # Usually nothing waits: the retry table's snapshot says so without a Spark job.
            nothing_waits = not released and not requests and holds_no_rows(self.spark, retry_table)
            counts.retried_in = 0 if nothing_waits else retry.count()
            events = self._records(batch_df, batch_id, counts) if batch_df is not None else None
        if counts.records_in == 0 and counts.retried_in == 0:
            return counts  # a no-data batch (Spark advancing the watermark): nothing to record
        with counts.phase("ledger"):
            self._check_lease(batch_id)
            self._recover_intents()
        all_events = (retry if events is None else events.unionByName(retry)).persist()
        try:
            with counts.phase("judge"):
                admission = self._judge_and_admit(all_events, counts)
            to_apply = [r for r in admission.apply if r["dataset"] in self.contracts]
            unknown = [r for r in admission.apply if r["dataset"] not in self.contracts]
            quarantine: list[tuple[Row, str, str | None]] = [(r, "unknown_dataset", None) for r in unknown]
            try:
                plan, verdicts, unreadable = self.planner.plan(to_apply, batch_id, counts, quarantine)
                with counts.phase("ledger"):
                    self._check_lease(batch_id)  # right before the first commit
                    self.ops.write_held(  # 1
                        [*admission.held, *((r, TENANT_OFFBOARDED) for r in admission.dropped)], batch_id
                    )
                    self.ops.write_quarantine(quarantine, batch_id)
                    self.ops.write_validation(verdicts, batch_id=batch_id, query_id=self.query_id)
                    if plan:  # 2
                        self.intents.write(_intent(plan, self.query_id, batch_id))
                with counts.phase("commit"):  # 3
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
                done, failed, skipped, updates = self._tally(plan, results, unknown, counts)
                failed.extend(unreadable)
                self._update_ledger(done, batch_id)  # 4
                if plan:  # 5
                    self.intents.remove(self.query_id, batch_id)
                self.ops.rewrite_retry(failed, batch_id, counts, admission.deferred, skipped)  # 6
                if self.notifier is not None and updates:  # 7
                    self.notifier.record(updates)
                self._note_lags([*done, *failed], counts)
                if released:  # 8: their events went through this batch's ledger: no longer held
                    self.ops.release_held(released, RELEASABLE)
                self.inbox.done(requests)
        finally:
            all_events.unpersist()
        counts.finished_at = datetime.now(UTC)
        self.ops.write_metrics(counts)  # 9
        return counts

    def _forget_cached(self, *tables: str) -> None:
        """Read these ops tables from their newest metadata from now on.

        The session's Iceberg catalog caches tables: a batch that planned a read from a
        cached snapshot which ``silverline maintain`` has since expired (another process)
        would open manifests that are gone.
        """
        for table in tables:
            self.spark.catalog.refreshTable(table)

    def _check_lease(self, batch_id: int) -> None:
        """Abort the batch when another process took the writer lease over (R6)."""
        if self.lease is not None and not self.lease.verify():
            raise LeaseLostError(
                f"batch {batch_id}: the writer lease was taken over by another process; "
                "nothing of this batch was committed, and it is replayed by the next holder"
            )

    def _recover_intents(self) -> None:
        """Record in the ledger what a stopped batch committed (see :mod:`jobs.stream.intents`)."""
        rows, names = self.intents.recover(self.spark, find_batch_snapshot)
        if rows:
            self._write_ledger(rows)
        self.intents.forget(names)

    def _write_ledger(
        self,
        rows: Sequence[tuple[Any, ...]],
        *,
        known: Collection[tuple[str, str]] | None = None,
        where: ledger.Located | None = None,
    ) -> None:
        """Upsert ledger rows (``known``, ``where``: what the judge found, :func:`ledger.update_ledger`)."""
        ledger_table = ops_table(self.config, "ledger")
        ledger.update_ledger(self.spark, ledger_table, rows, known=known, where=where)

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

    def _judge_and_admit(self, events: DataFrame, counts: BatchCounts) -> Admission:
        """Judge the events against the ledger; the winners pass the tenant gate."""
        names = (ops_table(self.config, "ledger"), ops_table(self.config, "parked"))

        def judge() -> list[Row]:
            self._forget_cached(*names)
            # The ledger read at one snapshot: the rows' positions are that snapshot's.
            self._judged_ledger = current_snapshot_id(self.spark, names[0])
            ledger_df = (
                self.spark.table(names[0])
                if self._judged_ledger is None
                else self.spark.read.option("snapshot-id", self._judged_ledger).table(names[0])
            )
            judged = ledger.judge_events(events, ledger_df, self.spark.table(names[1]), positions=True)
            return ledger.keyed_rows(judged.collect())

        winners: list[Row] = []
        # A snapshot that maintenance expired while the judge planned from it: plan again.
        for row in retry_on_conflict(judge, "the ledger"):
            if row["verdict"] != ledger.APPLY:
                counts.add(row["verdict"], 1, tenant=row["tenant"], dataset=row["dataset"])
            else:
                winners.append(row)
        admission = admit(winners, self.gate, self.config.stream.max_files_per_tenant)
        self._count_admission(admission, counts)
        return admission

    def _tally(
        self,
        plan: Mapping[str, PlannedTable],
        results: Sequence[CommitResult],
        unknown: Sequence[Row],
        counts: BatchCounts,
    ) -> tuple[list[tuple[Row, str]], list[tuple[Row, str]], list[Row], list[TableUpdate]]:
        """Count the commits' results.

        Returns:
            The events done (with their ledger state), the failed ones (with the error),
            those of tables skipped as already committed by this batch id, and the
            committed tables' updates.
        """
        done: list[tuple[Row, str]] = [(r, ledger.LEDGER_QUARANTINED) for r in unknown]
        failed: list[tuple[Row, str]] = []
        skipped: list[Row] = []
        updates: list[TableUpdate] = []
        for result in results:
            planned = plan[result.table]
            states = planned.states
            stats = counts.table(planned.tenant, planned.dataset)
            stats["status"] = result.status
            stats["rows_written"] = result.rows_written
            if result.status == "failed":
                counts.tables_failed += 1
                failed.extend((row, f"commit failed: {result.error or 'unknown error'}") for row, _ in states)
                continue
            if result.status == "skipped_replay":  # that commit did not hold these events: retry them
                for row, _ in states:
                    skipped.append(row)
                    counts.add("deferred", 1, tenant=row["tenant"], dataset=row["dataset"])
                continue
            counts.tables_committed += result.status == "committed"
            counts.rows_written += result.rows_written
            done.extend(states)
            if result.status == "committed":
                updates.append(_table_update(planned, result, counts.batch_id))
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
        counts.freshness_p50_s, counts.freshness_p95_s = freshness_percentiles(counts.freshness_samples)
        return done, failed, skipped, updates

    def _update_ledger(self, done: Sequence[tuple[Row, str]], batch_id: int) -> None:
        """Record the new state of every object this batch applied or quarantined."""
        if not done:
            return
        now = datetime.now(UTC)
        rows = [_ledger_row(row, state, batch_id, now) for row, state in done]
        known = [row for row, _ in done if row["_l_event_id"] is not None]
        where = ledger.Located(
            {(row["bucket"], row["key"]): (row["_l_file"], row["_l_pos"]) for row in known if row["_l_file"]},
            self._judged_ledger,
        )
        self._write_ledger(rows, known={(row["bucket"], row["key"]) for row in known}, where=where)

    @staticmethod
    def _note_lags(items: Sequence[tuple[Row, str]], counts: BatchCounts) -> None:
        """Note how far behind each tenant of these events is (backfill directives excepted)."""
        now = datetime.now(UTC)
        for row, _ in items:
            if getattr(row, "directive", None) is None:
                counts.note_lag(row["tenant"], row["event_time"].replace(tzinfo=UTC), now)

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


def _intent(plan: Mapping[str, PlannedTable], query_id: str, batch_id: int) -> Intent:
    """The ledger rows each planned table's commit stands for (written before the commits)."""
    now = datetime.now(UTC)
    tables = {
        table: [_ledger_row(row, state, batch_id, now) for row, state in planned.states]
        for table, planned in plan.items()
    }
    return Intent(query_id, batch_id, tables)

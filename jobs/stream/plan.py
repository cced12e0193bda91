"""Planning a micro-batch's tenant-table changes: the driver's half of reading the objects.

For the events the ledger lets through, per (bucket, tenant, dataset): which object
versions to read (R9), and whether the table's change is a plain append (none of its
objects can have rows in it yet) or a replacement. Either way, for contracts whose
partition spec :mod:`jobs.silver.fastappend` computes, the tasks write the rows as the
table's data files (else they stage them for Spark's writer or a MERGE), and the
commit decides how they go in (:func:`jobs.silver.commit.commit_change`). Spark tasks
read, check and write
(:mod:`jobs.stream.tasks`); from what they return the planner judges each read
(superseded objects are stale, unreadable ones quarantined), merges the validation
results (:mod:`jobs.quality.merge`) and builds one :class:`jobs.silver.commit.TableChange`
per tenant table: the good rows for silver, the bad rows for its quarantine table,
committed first.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any, NamedTuple

from jobs.config import SilverlineConfig
from jobs.contracts import DatasetContract
from jobs.events import model as m
from jobs.objects.reader import ObjectRef, ReadOutcome
from jobs.quality.merge import merge_verdicts
from jobs.quality.suites import load_suite
from jobs.silver import fastappend
from jobs.silver.commit import TableChange, ensure_table, one_line, silver_columns
from jobs.silver.fastappend import FileTarget
from jobs.silver.staging import RowStaging, staged_frame, staging_uri
from jobs.storage import QUARANTINE, SILVER, silver_location, table_name
from jobs.stream import ledger, tasks
from jobs.stream.accounting import BatchCounts
from jobs.stream.tasks import UnitResult

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession

    from jobs.quality.verdicts import RowVerdicts

log = logging.getLogger(__name__)

# (event row, reason, detail) of an object quarantined whole: the ops `quarantine` table.
Quarantined = tuple["Row", str, "str | None"]


class PlannedTable(NamedTuple):
    """One tenant table's change in a batch and the ledger state each of its events leads to."""

    change: TableChange
    states: list[tuple[Row, str]]
    tenant: str
    dataset: str


class _TablePlan(NamedTuple):
    """One tenant table's events before the reads: what to read, what is removed unread."""

    bucket: str
    tenant: str
    dataset: str
    contract: DatasetContract
    rows: list[Row]
    to_read: list[tuple[Row, bool]]  # (event, read the current version)
    replaces: bool  # some object the ledger knows as live may have rows in the table
    files: bool  # the tasks write data files (else they stage rows for a MERGE)


def _writes_files(table: _TablePlan) -> bool:
    """Whether the table's change is data files the tasks write (its target is needed)."""
    return table.files and bool(table.to_read or table.replaces)


class Planner:
    """Builds the tenant-table changes of a micro-batch; the objects are read by Spark tasks."""

    def __init__(
        self,
        spark: SparkSession,
        config: SilverlineConfig,
        contracts: Mapping[str, DatasetContract],
        expectations_dir: Path,
    ) -> None:
        """Create the planner.

        Args:
            spark: The session.
            config: The job configuration.
            contracts: Dataset contracts by name.
            expectations_dir: Where the expectation suites live.
        """
        self.spark = spark
        self.config = config
        self.contracts = contracts
        self.expectations_dir = expectations_dir
        self.staging = RowStaging.for_config(config)  # the tasks' staged rows, until the commits

    def plan(
        self, to_apply: Sequence[Row], batch_id: int, counts: BatchCounts, quarantine: list[Quarantined]
    ) -> tuple[dict[str, PlannedTable], list[RowVerdicts], list[tuple[Row, str]]]:
        """Read, validate and plan every tenant table the events touch.

        The reads, checks and row writes run in Spark tasks (:mod:`jobs.stream.tasks`);
        this plans them and builds each table's change from what the tasks return.

        A table whose objects the store refuses to serve (S3 ``AccessDenied`` for a KMS
        key the job may not use, ``InvalidObjectState`` for an archived object, a
        persistent 5xx, an unreadable local file) is left out: its events come back
        with the error, to be retried and then parked, while the other tables go on (R10).
        Objects that are gone or changed are no such error: they are superseded (R9).

        Args:
            to_apply: Events the ledger lets through, of declared datasets.
            batch_id: The micro-batch id (the ``_batch_id`` of new rows).
            counts: The batch's counts (updated).
            quarantine: Objects quarantined whole are appended here.

        Returns:
            The planned changes by table name, the validation verdicts, and the events
            of tables that could not be read, each with the error.
        """
        groups: dict[tuple[str, str, str], list[Row]] = defaultdict(list)
        for row in to_apply:
            groups[(row["bucket"], row["tenant"], row["dataset"])].append(row)
        tables = [self._table_plan(*names, rows) for names, rows in groups.items()]
        unreadable: list[tuple[Row, str]] = []
        with counts.phase("read"):
            with_files = [t for t in tables if _writes_files(t)]
            targets = self._targets(with_files, unreadable, counts)
            tables = [t for t in tables if not _writes_files(t) or self._name(t) in targets]
            results, verdict_parts, task_seconds = self._run_tasks(tables, targets, batch_id)
        # The tasks' validation share of the stage, as its own phase: GE's share of the batch's time.
        total = sum(task_seconds.values()) or 1.0
        share = round(counts.phase_seconds.get("read", 0.0) * task_seconds.get("validate", 0.0) / total, 3)
        counts.phase_seconds["read"] = round(counts.phase_seconds.get("read", 0.0) - share, 3)
        counts.phase_seconds["validate"] = round(counts.phase_seconds.get("validate", 0.0) + share, 3)
        plan = {}
        for table in tables:
            name = self._name(table)
            units = results.get(name, [])
            error = next((u.error for u in units if u.error), None)
            if error is not None:  # R10: this table's change fails, not the batch
                log.warning(
                    "%s/%s/%s: %s (%d events to retry)", table.bucket, table.tenant, table.dataset, error,
                    len(table.rows),
                )  # fmt: skip
                counts.tables_failed += 1
                counts.table(table.tenant, table.dataset)["status"] = "failed"
                unreadable.extend((row, error) for row in table.rows)
                continue
            planned = self._planned(table, units, targets.get(name), batch_id, counts, quarantine)
            plan[planned.change.table] = planned
        return plan, merge_verdicts(verdict_parts), unreadable

    def _table_plan(self, bucket: str, tenant: str, dataset: str, rows: list[Row]) -> _TablePlan:
        contract = self.contracts[dataset].for_tenant(tenant)
        created = [r for r in rows if r["event_kind"] == "created"]
        current = [r for r in rows if reads_current_version(r)]
        to_read = [(r, False) for r in created] + [(r, True) for r in current]
        # Objects the ledger knows as live may have rows in the table: those are replaced.
        replaces = any(r["_l_state"] == ledger.LEDGER_LIVE for r in rows)
        files = fastappend.supports(contract)
        return _TablePlan(bucket, tenant, dataset, contract, rows, to_read, replaces, files)

    def _name(self, table: _TablePlan) -> str:
        return table_name(self.config, table.bucket, table.tenant, table.dataset)

    def _change(self, table: _TablePlan, zone: str = SILVER, **fields: Any) -> TableChange:
        """The table's change in ``zone`` (default: no rows, what creating the table needs)."""
        names = (table.bucket, table.tenant, table.dataset)
        return TableChange(
            table=table_name(self.config, *names, zone),
            location=silver_location(self.config.lake.root, *names, zone),
            contract=table.contract,
            zone=zone,
            **{"rows": None, "files": (), "replace_keys": [], **fields},
        )

    def _targets(
        self, tables: Sequence[_TablePlan], unreadable: list[tuple[Row, str]], counts: BatchCounts
    ) -> dict[str, FileTarget]:
        """Each plain-append table's files target (tables are created first when missing)."""

        def target(table: _TablePlan) -> FileTarget | str:
            name = self._name(table)
            try:
                try:
                    return fastappend.target_of(self.spark, name)
                except Exception as exc:
                    if not any(s in str(exc) for s in ("NoSuchTableException", "TABLE_OR_VIEW_NOT_FOUND")):
                        raise
                ensure_table(self.spark, self._change(table))
                return fastappend.target_of(self.spark, name)
            except Exception as exc:  # R10: retried like a failed commit
                return f"commit failed: {one_line(exc)}"

        found: dict[str, FileTarget] = {}
        workers = max(1, min(self.config.stream.commit_threads, len(tables)))
        with ThreadPoolExecutor(max_workers=workers) as pool:
            for table, outcome in zip(tables, pool.map(target, tables), strict=True):
                if isinstance(outcome, str):
                    log.warning("%s: %s", self._name(table), outcome)
                    counts.tables_failed += 1
                    counts.table(table.tenant, table.dataset)["status"] = "failed"
                    unreadable.extend((row, outcome) for row in table.rows)
                else:
                    found[self._name(table)] = outcome
        return found

    def _run_tasks(
        self, tables: Sequence[_TablePlan], targets: Mapping[str, FileTarget], batch_id: int
    ) -> tuple[dict[str, list[UnitResult]], list[RowVerdicts], dict[str, float]]:
        """Run the reads in Spark tasks; their results by table, validation parts, task seconds."""
        units = [
            tasks.ReadUnit(
                table=self._name(table),
                bucket=table.bucket,
                tenant=table.tenant,
                dataset=table.dataset,
                contract=table.contract,
                refs=chunk,
                target=targets.get(self._name(table)),
            )
            for table in tables
            for chunk in tasks.split_refs([(_ref(row, current=now), now) for row, now in table.to_read])
        ]
        if not units:
            return {}, [], {}
        suites = {
            name: load_suite(name, self.expectations_dir)
            for name in sorted({u.contract.expectations for u in units if u.contract.expectations})
        }
        spec = tasks.TaskSpec(self.config, suites, batch_id, datetime.now(UTC), staging_uri(self.config))
        context = self.spark.sparkContext
        bins = tasks.pack(units, context.defaultParallelism)
        objects = sum(len(u.refs) for u in units)
        context.setJobDescription(
            f"silverline batch {batch_id}: read {objects} objects of {len(tables)} tables"
        )

        def run(some: list[list[tasks.ReadUnit]]) -> list[tasks.BinResult]:
            job = context.parallelize(some, len(some)).mapPartitions(lambda part: tasks.run_bins(spec, part))
            return job.collect()

        try:
            outputs = tasks.run_isolated(run, bins)
        finally:
            context.setJobDescription(None)  # type: ignore[arg-type]
        by_table: dict[str, list[UnitResult]] = defaultdict(list)
        seconds: dict[str, float] = defaultdict(float)
        for output in outputs:
            for unit in output.units:
                by_table[unit.table].append(unit)
            for phase, value in output.seconds.items():
                seconds[phase] += value
        log.info(
            "batch %d: %d objects in %d tasks, task seconds %s", batch_id, objects, len(bins), dict(seconds)
        )
        return by_table, [v for output in outputs for v in output.verdicts], dict(seconds)

    def _planned(
        self,
        table: _TablePlan,
        units: Sequence[UnitResult],
        target: FileTarget | None,
        batch_id: int,
        counts: BatchCounts,
        quarantine: list[Quarantined],
    ) -> PlannedTable:
        """One table's change and its events' ledger states, from its units' results."""
        outcomes = [o for unit in units for o in unit.outcomes]
        removed = [r for r in table.rows if r["event_kind"] != "created" and not reads_current_version(r)]
        states = [(r, ledger.LEDGER_DELETED) for r in removed]
        counts.files_read += len(table.to_read)
        stats = counts.table(table.tenant, table.dataset)
        stats["files"] += len(table.to_read)
        stats["rows_read"] += sum(o.rows for o in outcomes if o.status == "ok")
        for (row, now), outcome in zip(table.to_read, outcomes, strict=True):
            states.extend(_judge_read(row, outcome, counts, quarantine, current=now))
        rejected = {key: summary for unit in units for key, summary in unit.rejected.items()}
        if rejected:  # reject_file: the whole object is quarantined, its rows logged
            for i, (row, state) in enumerate(states):
                if state == ledger.LEDGER_LIVE and row["key"] in rejected:
                    states[i] = (row, ledger.LEDGER_QUARANTINED)
                    quarantine.append((row, "rejected_rows", rejected[row["key"]]))
        bad_rows = sum(unit.bad_rows for unit in units)
        good_rows = sum(unit.good_rows for unit in units)
        stats["rows_quarantined"] = stats.get("rows_quarantined", 0) + bad_rows
        counts.rows_quarantined += bad_rows
        rejected_change = None
        bad_files = [f for unit in units for f in unit.bad_files]
        if bad_files:
            rows = self._staged(bad_files, table.contract, QUARANTINE)
            rejected_change = self._change(table, QUARANTINE, rows=rows, files=None, row_count=bad_rows)
        files = [f for unit in units for f in unit.files]
        if target is not None:
            change = self._change(
                table,
                files=files,
                target=target,
                replace_keys=_replace_keys(states),
                row_count=good_rows,
                quarantine=rejected_change,
            )
        else:
            change = self._change(
                table,
                rows=self._staged([f.path for f in files], table.contract, SILVER),
                files=None,
                replace_keys=_replace_keys(states),
                row_count=good_rows,
                quarantine=rejected_change,
            )
        return PlannedTable(change, states, table.tenant, table.dataset)

    def _staged(self, uris: Sequence[str], contract: DatasetContract, zone: str) -> DataFrame:
        """Rows the tasks staged, as a DataFrame of the zone's columns (in table order)."""
        return staged_frame(self.spark, uris, silver_columns(contract, zone))


def _replace_keys(states: Sequence[tuple[Row, str]]) -> list[str]:
    """Keys whose rows a change must replace: only objects the ledger knows as live can have rows."""
    return [row["key"] for row, _ in states if row["_l_state"] == ledger.LEDGER_LIVE]


def _judge_read(
    row: Row, outcome: ReadOutcome, counts: BatchCounts, quarantine: list[Quarantined], *, current: bool
) -> list[tuple[Row, str]]:
    """The ledger state a read leads to.

    ``current``: the read of the current version for a removal of one version
    (:func:`reads_current_version`).
    """
    if outcome.status == "superseded":
        if current:  # no current version any more: the object is gone
            return [(row, ledger.LEDGER_DELETED)]
        counts.add("stale", 1, tenant=row["tenant"], dataset=row["dataset"])
        counts.superseded += 1
        return []
    if outcome.status == "quarantined":
        quarantine.append((row, outcome.reason or "quarantined", outcome.detail))
        return [(row, ledger.LEDGER_QUARANTINED)]
    counts.rows_read += outcome.rows
    if current:  # the ledger records the version now current
        row = type(row)(**{**row.asDict(), "version_id": outcome.ref.version_id, "etag": outcome.ref.etag})
    return [(row, ledger.LEDGER_LIVE)]


def reads_current_version(row: Row) -> bool:
    """A removal that deletes one version for good: silver then follows whatever is current (R5).

    In a versioned bucket a removal that names a version (``ObjectRemoved:Delete`` or
    ``LifecycleExpiration:Delete`` with a ``versionId``) deletes that version only. If it
    was noncurrent nothing changes; if it was current the previous version is current
    again, or none is. Instead of guessing which, the object's current version is read
    (R9: the read tells what is current): its rows replace the object's rows in silver,
    or, when there is none (gone, or a delete marker on top), the rows go. A delete marker
    (``...:DeleteMarkerCreated``) hides the object: a plain removal. Removals without a
    version (unversioned buckets) are plain removals too.
    """
    return (
        row["event_kind"] == m.REMOVED
        and row["version_id"] is not None
        and not (row["event_name"] or "").endswith("DeleteMarkerCreated")
    )


def _ref(row: Row, *, current: bool = False) -> ObjectRef:
    """The object version an event names (``current``: whatever version is current now)."""
    return ObjectRef(
        bucket=row["bucket"],
        key=row["key"],
        tenant=row["tenant"],
        dataset=row["dataset"],
        version_id=None if current else row["version_id"],
        etag=None if current else row["etag"],
        sequencer=row["sequencer"],
        event_time=row["event_time"],
        size=None if current else row["size"],
    )

"""Planning a micro-batch's tenant-table changes: read the objects, check them, build the changes.

For the events the ledger lets through, per (bucket, tenant, dataset): read the
created objects (R9), judge each read (superseded objects are stale, unreadable
ones quarantined), validate every dataset once (:mod:`jobs.quality.batch`), and
build one :class:`jobs.silver.commit.TableChange` per tenant table — the good rows for
silver, and the bad rows for its quarantine table, committed first.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from concurrent.futures import ThreadPoolExecutor
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, NamedTuple

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
from pyspark.sql import functions as F

from jobs.config import SilverlineConfig
from jobs.contracts import DatasetContract
from jobs.events import model as m
from jobs.objects.reader import ObjectReader, ObjectRef, ReadOutcome
from jobs.quality import batch as batch_quality
from jobs.quality.split import FAILED_EXPECTATIONS_COLUMN as FAILED_EXPECTATIONS
from jobs.quality.split import split_verdicts
from jobs.silver import fastappend
from jobs.silver.commit import TableChange, one_line, silver_columns
from jobs.silver.staging import RowStaging
from jobs.storage import QUARANTINE, silver_location, table_name
from jobs.stream import ledger
from jobs.stream.accounting import BatchCounts

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


class Planner:
    """Builds the tenant-table changes of a micro-batch."""

    def __init__(
        self,
        spark: SparkSession,
        config: SilverlineConfig,
        contracts: Mapping[str, DatasetContract],
        reader: ObjectReader,
        expectations_dir: Path,
    ) -> None:
        """Create the planner.

        Args:
            spark: The session.
            config: The job configuration.
            contracts: Dataset contracts by name.
            reader: The object reader.
            expectations_dir: Where the expectation suites live.
        """
        self.spark = spark
        self.config = config
        self.contracts = contracts
        self.reader = reader
        self.expectations_dir = expectations_dir
        self.staging = RowStaging.for_config(config)  # the rows' way into Spark (Parquet files)

    def plan(
        self, to_apply: Sequence[Row], batch_id: int, counts: BatchCounts, quarantine: list[Quarantined]
    ) -> tuple[dict[str, PlannedTable], list[RowVerdicts], list[tuple[Row, str]]]:
        """Read, validate and plan every tenant table the events touch.

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
        reads = []
        unreadable: list[tuple[Row, str]] = []
        with counts.phase("read"):
            for (bucket, tenant, dataset), rows in groups.items():
                try:
                    reads.append(self._read(bucket, tenant, dataset, rows, counts, quarantine))
                except Exception as exc:  # R10: this table's change fails, not the batch
                    error = f"read failed: {one_line(exc)}"
                    log.warning(
                        "%s/%s/%s: %s (%d events to retry)", bucket, tenant, dataset, error, len(rows)
                    )
                    counts.tables_failed += 1
                    counts.table(tenant, dataset)["status"] = "failed"
                    unreadable.extend((row, error) for row in rows)
        with counts.phase("validate"):
            verdicts = batch_quality.check([r for r, _ in reads], self.expectations_dir)
        with counts.phase("read"):
            # Staging each table's rows (a Parquet write, then Spark resolving the file) is
            # mostly I/O and JVM work: tables are staged side by side.
            workers = max(1, min(self.config.stream.commit_threads, len(reads)))
            with ThreadPoolExecutor(max_workers=workers) as pool:
                frames = list(pool.map(lambda r: self._frames(r[0], r[1], batch_id), reads))
            plan = {}
            for (read, states), (good, bad_df) in zip(reads, frames, strict=True):
                planned = self._planned(read, states, good, bad_df, counts, quarantine)
                plan[planned.change.table] = planned
        return plan, verdicts, unreadable

    def _read(
        self,
        bucket: str,
        tenant: str,
        dataset: str,
        rows: list[Row],
        counts: BatchCounts,
        quarantine: list[Quarantined],
    ) -> tuple[batch_quality.TableRead, list[tuple[Row, str]]]:
        contract = self.contracts[dataset].for_tenant(tenant)
        created = [r for r in rows if r["event_kind"] == "created"]
        current = [r for r in rows if reads_current_version(r)]
        to_read = [(r, False) for r in created] + [(r, True) for r in current]
        table, outcomes = self.reader.read([_ref(r, current=now) for r, now in to_read], contract)
        counts.files_read += len(to_read)
        stats = counts.table(tenant, dataset)
        stats["files"] += len(to_read)
        stats["rows_read"] += table.num_rows
        removed = [r for r in rows if r["event_kind"] != "created" and not reads_current_version(r)]
        states = [(r, ledger.LEDGER_DELETED) for r in removed]
        for (row, now), outcome in zip(to_read, outcomes, strict=True):
            states.extend(_judge_read(row, outcome, counts, quarantine, current=now))
        return batch_quality.TableRead(bucket, tenant, dataset, contract, table), states

    def _frames(
        self, read: batch_quality.TableRead, states: Sequence[tuple[Row, str]], batch_id: int
    ) -> tuple[DataFrame | pa.Table, DataFrame | None]:
        """The good rows (silver columns) and the bad rows (quarantine columns, None if none).

        The split happens in Arrow, so the common case hands on only the silver columns
        (not the raw text, row numbers and verdict lists every read row carries). Good rows
        of a plain append (no object the table may hold rows of) stay Arrow, for a
        metadata-only commit (:mod:`jobs.silver.fastappend`); the others become a
        DataFrame for Spark's MERGE.
        """
        assert read.checked is not None  # set by batch_quality.check
        good, bad = batch_quality.split_checked(read.checked)
        silver = [(n, t) for n, t in silver_columns(read.contract) if n not in ("_ingest_time", "_batch_id")]
        good_rows: DataFrame | pa.Table
        if fastappend.supports(read.contract) and not _replace_keys(states):
            good_rows = _with_ingest(good.select([name for name, _ in silver]), batch_id)
        else:
            good_rows = self._spark_frame(good, silver, batch_id)  # in table order: lineage ends the row
        bad_df = None
        if bad.num_rows:
            _, bad_df = split_verdicts(self._checked_df(bad, read.contract, batch_id))
        return good_rows, bad_df

    def _planned(
        self,
        read: batch_quality.TableRead,
        states: list[tuple[Row, str]],
        good: DataFrame | pa.Table,
        bad_df: DataFrame | None,
        counts: BatchCounts,
        quarantine: list[Quarantined],
    ) -> PlannedTable:
        if read.rejected_keys:  # reject_file: the whole object is quarantined, its rows logged
            for i, (row, state) in enumerate(states):
                if state == ledger.LEDGER_LIVE and row["key"] in read.rejected_keys:
                    states[i] = (row, ledger.LEDGER_QUARANTINED)
                    quarantine.append(
                        (row, "rejected_rows", batch_quality.quarantine_summary(read, row["key"]))
                    )
        assert read.checked is not None  # set by batch_quality.check
        stats = counts.table(read.tenant, read.dataset)
        stats["rows_quarantined"] = stats.get("rows_quarantined", 0) + read.bad_rows
        counts.rows_quarantined += read.bad_rows
        names = (self.config.catalog.name, read.bucket, read.tenant, read.dataset)
        rejected = None
        if bad_df is not None:
            rejected = TableChange(
                table=table_name(self.config, *names[1:], QUARANTINE),
                location=silver_location(self.config.lake.root, *names[1:], QUARANTINE),
                contract=read.contract,
                rows=bad_df.select(*_columns(read.contract, QUARANTINE)),
                replace_keys=[],
                row_count=read.bad_rows,
                zone=QUARANTINE,
            )
        change = TableChange(
            table=table_name(self.config, *names[1:]),
            location=silver_location(self.config.lake.root, *names[1:]),
            contract=read.contract,
            rows=None if isinstance(good, pa.Table) else good,  # the table's columns in order
            arrow=good if isinstance(good, pa.Table) else None,
            replace_keys=_replace_keys(states),
            row_count=read.checked.num_rows - read.bad_rows,
            quarantine=rejected,
        )
        return PlannedTable(change, states, read.tenant, read.dataset)

    def _checked_df(self, checked: pa.Table, contract: DatasetContract, batch_id: int) -> DataFrame:
        """Read rows with their verdicts as a Spark DataFrame (ingest time and batch id added)."""
        quarantine = silver_columns(contract, QUARANTINE)
        columns = [
            (n, t) for n, t in quarantine if n not in ("_ingest_time", "_batch_id", FAILED_EXPECTATIONS)
        ]
        columns.insert(len(columns) - len(batch_quality.LINEAGE), (batch_quality.FAILED, "array<string>"))
        return self._spark_frame(checked, columns, batch_id)

    def _spark_frame(self, table: pa.Table, columns: Sequence[tuple[str, str]], batch_id: int) -> DataFrame:
        """``columns`` of ``table``, then ``_ingest_time`` and ``_batch_id``, as a Spark DataFrame."""
        ingest = [
            F.current_timestamp().alias("_ingest_time"),
            F.lit(batch_id).cast("bigint").alias("_batch_id"),
        ]
        return self.staging.frame(self.spark, table, columns, label=f"batch{batch_id}", extra=ingest)


def _replace_keys(states: Sequence[tuple[Row, str]]) -> list[str]:
    """Keys whose rows a change must replace: only objects the ledger knows as live can have rows."""
    return [row["key"] for row, _ in states if row["_l_state"] == ledger.LEDGER_LIVE]


def _with_ingest(rows: pa.Table, batch_id: int) -> pa.Table:
    """``rows`` with ``_ingest_time`` (now) and ``_batch_id`` appended, as the Spark path adds them."""
    now = datetime.now(UTC)
    count = rows.num_rows
    rows = rows.append_column("_ingest_time", pa.array([now] * count, pa.timestamp("us", tz="UTC")))
    return rows.append_column("_batch_id", pa.array([batch_id] * count, pa.int64()))


def _columns(contract: DatasetContract, zone: str) -> list[str]:
    return [f"`{name}`" for name, _ in silver_columns(contract, zone)]


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

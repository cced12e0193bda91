"""Iceberg housekeeping for one table: expire snapshots, compact, rewrite manifests, remove orphans.

Every step is one of Iceberg's Spark procedures (``CALL <catalog>.system.*``), so
each commit goes through Iceberg's optimistic concurrency next to the running
stream:

* compaction (``rewrite_data_files``) runs with partial progress, so a file group
  whose files the stream changed meanwhile fails alone and is counted, not fatal;
  the stream's own commits re-plan on such a conflict (:mod:`jobs.silver.conflicts`);
* orphan removal only touches files older than ``maintenance.orphan_after_hours``
  (at least 24 hours, which Iceberg's procedure enforces), so files the stream is
  writing for a commit are never taken;
* expiry keeps ``maintenance.retain_last`` snapshots however old, so the stream's
  crash-replay check (its batch's snapshot) and short time travel keep working.
"""

from __future__ import annotations

import logging
import time
from dataclasses import dataclass, field
from datetime import UTC, datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING

from jobs.config import MaintenanceConfig
from jobs.silver.commit import catalog_of, one_line
from jobs.silver.conflicts import retry_on_conflict

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# Compaction first: expiry then removes the files it replaced, and keeps retain_last snapshots.
TABLE_STEPS = ("compact", "manifests", "expire", "orphans")


@dataclass
class TableReport:
    """What maintenance did to one table (counts from the procedures' results)."""

    table: str
    kind: str
    expired_snapshots: int = 0
    deleted_files: int = 0
    rewritten_files: int = 0
    added_files: int = 0
    failed_groups: int = 0
    rewritten_manifests: int = 0
    orphans: int = 0
    seconds: float = 0.0
    errors: list[str] = field(default_factory=list)

    @property
    def ok(self) -> bool:
        """True when no step failed (conflicted compaction groups are not failures)."""
        return not self.errors


def _sql_string(text: str) -> str:
    return "'" + text.replace("\\", "\\\\").replace("'", "\\'") + "'"


def sql_timestamp(moment: datetime) -> str:
    """A SQL timestamp literal with its zone (independent of the session's time zone)."""
    return f"TIMESTAMP '{moment.astimezone(UTC).strftime('%Y-%m-%d %H:%M:%S.%f')}+00:00'"


def split_identifier(table: str) -> tuple[str, str]:
    """(catalog, identifier inside the catalog) of a fully qualified table name."""
    catalog = catalog_of(table)
    rest = table.strip()[len(f"`{catalog}`") if table.strip().startswith("`") else len(catalog) :]
    return catalog, rest.lstrip(".")


def snapshot_count(spark: SparkSession, table: str) -> int:
    """Snapshots the table's metadata holds now."""
    return int(spark.sql(f"SELECT count(*) AS n FROM {table}.snapshots").first()["n"])  # type: ignore[index]


def _expire(spark: SparkSession, table: str, settings: MaintenanceConfig) -> dict[str, int]:
    catalog, ident = split_identifier(table)
    before = snapshot_count(spark, table)
    # Measured when the step runs: the commits compaction just made count as old as they are.
    older = datetime.now(UTC) - timedelta(hours=settings.expire_after_hours)
    row = spark.sql(
        f"CALL `{catalog}`.system.expire_snapshots(table => {_sql_string(ident)}, "
        f"older_than => {sql_timestamp(older)}, retain_last => {settings.retain_last})"
    ).first()
    deleted = sum(int(v or 0) for k, v in row.asDict().items() if k.startswith("deleted_")) if row else 0
    return {"expired_snapshots": before - snapshot_count(spark, table), "deleted_files": deleted}


def _compact(spark: SparkSession, table: str, settings: MaintenanceConfig) -> dict[str, int]:
    catalog, ident = split_identifier(table)
    options = {
        "min-input-files": str(settings.min_input_files),
        "target-file-size-bytes": str(settings.target_file_mb * 1024 * 1024),
        "delete-file-threshold": str(settings.delete_file_threshold),
        "partial-progress.enabled": "true",
        "partial-progress.max-commits": "10",
        "remove-dangling-deletes": "true",
    }
    pairs = ", ".join(f"{_sql_string(k)}, {_sql_string(v)}" for k, v in options.items())
    row = spark.sql(
        f"CALL `{catalog}`.system.rewrite_data_files(table => {_sql_string(ident)}, options => map({pairs}))"
    ).first()
    values = row.asDict() if row else {}
    return {
        "rewritten_files": int(values.get("rewritten_data_files_count") or 0),
        "added_files": int(values.get("added_data_files_count") or 0),
        "failed_groups": int(values.get("failed_data_files_count") or 0),
    }


def _manifests(spark: SparkSession, table: str) -> dict[str, int]:
    catalog, ident = split_identifier(table)
    row = spark.sql(f"CALL `{catalog}`.system.rewrite_manifests(table => {_sql_string(ident)})").first()
    return {"rewritten_manifests": int(row["rewritten_manifests_count"] or 0) if row else 0}


def _orphans(
    spark: SparkSession, table: str, settings: MaintenanceConfig, now: datetime, dry_run: bool
) -> dict[str, int]:
    catalog, ident = split_identifier(table)
    older = now - timedelta(hours=settings.orphan_after_hours)
    rows = spark.sql(
        f"CALL `{catalog}`.system.remove_orphan_files(table => {_sql_string(ident)}, "
        f"older_than => {sql_timestamp(older)}, dry_run => {'true' if dry_run else 'false'})"
    ).collect()
    for row in rows[:20]:
        log.info("%s: orphan %s%s", table, row[0], " (dry run: kept)" if dry_run else " removed")
    return {"orphans": len(rows)}


def _step(
    spark: SparkSession, table: str, step: str, settings: MaintenanceConfig, now: datetime, dry_run: bool
) -> dict[str, int]:
    if step == "expire":
        return _expire(spark, table, settings)
    if step == "compact":
        return _compact(spark, table, settings)
    if step == "manifests":
        return _manifests(spark, table)
    return _orphans(spark, table, settings, now, dry_run)


def maintain_table(
    spark: SparkSession,
    table: str,
    kind: str,
    settings: MaintenanceConfig,
    *,
    steps: tuple[str, ...] = TABLE_STEPS,
    now: datetime,
    dry_run: bool = False,
) -> TableReport:
    """Run the selected steps on one table; a failing step is recorded, the next still runs.

    Args:
        spark: The session (with Iceberg's SQL extensions, for ``CALL``).
        table: Fully qualified table name.
        kind: ``silver``, ``quarantine`` or ``ops`` (for the report).
        settings: The ``maintenance`` configuration.
        steps: Which of :data:`TABLE_STEPS` to run, in that order.
        now: The run's reference time for orphan removal (time-zone aware); expiry uses the step's own time.
        dry_run: Only orphan removal can report without acting; the other steps are skipped.

    Returns:
        The table's report.
    """
    report = TableReport(table=table, kind=kind)
    started = time.monotonic()
    for step in TABLE_STEPS:
        if step not in steps or (dry_run and step != "orphans"):
            continue
        try:
            counts = retry_on_conflict(partial(_step, spark, table, step, settings, now, dry_run), table)
        except Exception as exc:  # one step's failure is reported; the others still run
            report.errors.append(f"{step}: {one_line(exc)}")
            log.warning("%s: %s failed: %s", table, step, one_line(exc))
            continue
        for name, value in counts.items():
            setattr(report, name, getattr(report, name) + value)
    report.seconds = round(time.monotonic() - started, 2)
    return report

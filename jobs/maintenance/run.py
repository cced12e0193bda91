"""One maintenance run over a tenant group: which tables, which steps, in which order."""

from __future__ import annotations

import logging
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING

from jobs.config import SilverlineConfig
from jobs.maintenance.retention import expire_bronze, expire_ops_rows
from jobs.maintenance.tables import TABLE_STEPS, TableReport, maintain_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

RETENTION_STEPS = ("ops-retention", "bronze")
STEPS = ("ops-retention", *TABLE_STEPS, "bronze")


@dataclass
class MaintenanceReport:
    """What one run did: per table, bronze retention and ops-row retention."""

    tables: list[TableReport] = field(default_factory=list)
    bronze_deleted: int = 0
    bronze_pending: int = 0
    ops_rows_deleted: dict[str, int] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """True when no table step failed."""
        return all(t.ok for t in self.tables)


def tables_to_maintain(
    spark: SparkSession,
    config: SilverlineConfig,
    *,
    tenants: Sequence[str] = (),
    dataset: str | None = None,
    include_ops: bool = True,
) -> list[tuple[str, str]]:
    """(table, kind) of the tenant tables the ledger knows (filtered) and of the ops tables.

    Args:
        spark: The session.
        config: The job configuration.
        tenants: Only these tenants (empty: all).
        dataset: Only this dataset (None: all).
        include_ops: Also the job's own tables (ledger, metrics, ...).

    Returns:
        Tables in a stable order: tenant tables first, then ops tables.
    """
    from jobs.silver.evolution import tables_in_ledger
    from jobs.storage import table_name
    from jobs.stream.ops import TABLES, ops_table

    found = []
    for tenant, zone, name in tables_in_ledger(spark, config):
        if (tenants and tenant not in tenants) or (dataset and name != dataset):
            continue
        found.append((table_name(config, config.group.bucket, tenant, name, zone), zone))
    if include_ops:
        for name in TABLES:
            table = ops_table(config, name)
            if spark.catalog.tableExists(table):
                found.append((table, "ops"))
    return found


def run_maintenance(
    spark: SparkSession,
    config: SilverlineConfig,
    *,
    now: datetime,
    steps: Sequence[str] = STEPS,
    tenants: Sequence[str] = (),
    dataset: str | None = None,
    include_ops: bool = True,
    dry_run: bool = False,
) -> MaintenanceReport:
    """Run the selected steps: ops-row retention, then each table's steps, then bronze retention.

    Args:
        spark: The session.
        config: The job configuration (``maintenance`` section).
        now: The reference time (time-zone aware).
        steps: Which of :data:`STEPS` to run.
        tenants: Only these tenants' tables (empty: all).
        dataset: Only this dataset's tables.
        include_ops: Also the ops tables, ops-row and bronze retention.
        dry_run: Report what would go; change nothing.

    Returns:
        The run's report.
    """
    report = MaintenanceReport()
    if include_ops and "ops-retention" in steps:
        report.ops_rows_deleted = expire_ops_rows(spark, config, now=now, dry_run=dry_run)
    table_steps = tuple(s for s in TABLE_STEPS if s in steps)
    if table_steps:
        tables = tables_to_maintain(spark, config, tenants=tenants, dataset=dataset, include_ops=include_ops)
        for number, (table, kind) in enumerate(tables, start=1):
            done = maintain_table(
                spark, table, kind, config.maintenance, steps=table_steps, now=now, dry_run=dry_run
            )
            report.tables.append(done)
            log.info(
                "[%d/%d] %s: expired %d snapshots, compacted %d -> %d files (%d groups conflicted), "
                "%d manifests rewritten, %d orphans, %.1fs%s",
                number,
                len(tables),
                table,
                done.expired_snapshots,
                done.rewritten_files,
                done.added_files,
                done.failed_groups,
                done.rewritten_manifests,
                done.orphans,
                done.seconds,
                f", errors: {'; '.join(done.errors)}" if done.errors else "",
            )
    if include_ops and "bronze" in steps:
        report.bronze_deleted, report.bronze_pending = expire_bronze(config, now=now, dry_run=dry_run)
    return report

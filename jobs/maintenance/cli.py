"""``silverline maintain``: table maintenance and retention for one tenant group."""

from __future__ import annotations

import argparse
import logging
import sys
from datetime import UTC, datetime
from typing import Any

from jobs.cliargs import add_command, add_config_arguments, config_from_args
from jobs.maintenance.run import STEPS, MaintenanceReport

log = logging.getLogger(__name__)

_DESCRIPTION = """\
Keep a tenant group's Iceberg tables and the job's own data small and fast:
expire old snapshots (keeping maintenance.retain_last), compact small data
files and the delete files of merge-on-read commits, rewrite manifests, remove
orphan files older than maintenance.orphan_after_hours, delete ops-table rows
older than maintenance.ops_retention_days (batch metrics, stream progress,
validation results) and bronze files older than maintenance.bronze_retention_days
that the stream has committed. Parked, quarantined, rejected, retry and ledger
rows are never deleted by age.

Safe next to the running stream: every step is an Iceberg commit with
optimistic concurrency. A compaction group that conflicts with a stream commit
is skipped and counted (run again later); the stream re-plans a commit that
conflicted with compaction instead of failing.
"""

_EPILOG = """\
examples:
  silverline maintain --config conf/local.yaml
  silverline maintain --config conf/local.yaml --dry-run
  silverline maintain --config conf/local.yaml --tenant acme --steps expire,compact
  spark-submit jobs/maintain.py --config conf/emr.yaml          # same arguments
  silverline emr schedule-maintain --config conf/emr.yaml --cron "cron(0 3 * * ? *)"

exit codes: 0 done; 1 a step failed on some table (the others still ran); 2 bad arguments or
            configuration.
"""


def _steps(text: str) -> tuple[str, ...]:
    chosen = tuple(s.strip() for s in text.split(",") if s.strip())
    unknown = [s for s in chosen if s not in STEPS]
    if unknown or not chosen:
        choices = ", ".join(STEPS)
        raise argparse.ArgumentTypeError(f"unknown step(s) {unknown or text!r}; choose from {choices}")
    return chosen


def add_parser(subparsers: Any) -> None:
    """Register ``silverline maintain``.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    parser = add_command(
        subparsers,
        "maintain",
        summary="expire snapshots, compact, remove orphans; bronze and ops-table retention",
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )
    add_config_arguments(parser, queue_flags=False)
    parser.add_argument(
        "--tenant", metavar="T", action="append", default=[], help="only this tenant's tables (repeatable)"
    )
    parser.add_argument("--dataset", metavar="D", help="only this dataset's tables")
    parser.add_argument(
        "--steps",
        type=_steps,
        default=STEPS,
        metavar="S,S",
        help=f"which steps, comma-separated (default all: {','.join(STEPS)})",
    )
    parser.add_argument(
        "--no-ops",
        action="store_true",
        help="only tenant tables: skip the ops tables, ops-row and bronze retention",
    )
    parser.add_argument(
        "--dry-run",
        action="store_true",
        help="report orphans, old bronze files and old ops rows; change nothing",
    )
    parser.set_defaults(func=run_maintain_command)


def print_report(report: MaintenanceReport, dry_run: bool) -> None:
    """The run's report as a table, then retention counts."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title="maintenance" + (" (dry run: nothing changed)" if dry_run else ""))
    columns = ("table", "kind", "snapshots expired", "files compacted", "files added")
    for column in (*columns, "groups conflicted", "manifests", "orphans", "seconds", "errors"):
        table.add_column(column, justify="left" if column in ("table", "kind", "errors") else "right")
    for t in report.tables:
        table.add_row(
            t.table,
            t.kind,
            *(
                str(v)
                for v in (
                    t.expired_snapshots,
                    t.rewritten_files,
                    t.added_files,
                    t.failed_groups,
                    t.rewritten_manifests,
                    t.orphans,
                    t.seconds,
                )
            ),
            "; ".join(t.errors),
        )
    console = Console(width=None if sys.stdout.isatty() else 200)
    console.print(table)
    verb = "eligible" if dry_run else "deleted"
    rows = ", ".join(f"{k} {v}" for k, v in sorted(report.ops_rows_deleted.items())) or "none"
    console.print(f"ops rows {verb}: {rows}")
    console.print(
        f"bronze files {verb}: {report.bronze_deleted}; "
        f"not yet committed by the stream (kept): {report.bronze_pending}"
    )


def run_maintain_command(args: argparse.Namespace) -> int:
    """Entry of ``silverline maintain``."""
    from jobs.batchruns.run import open_session
    from jobs.maintenance.run import run_maintenance

    config = config_from_args(args)
    spark = open_session(config)
    report = run_maintenance(
        spark,
        config,
        now=datetime.now(UTC),
        steps=args.steps,
        tenants=args.tenant,
        dataset=args.dataset,
        include_ops=not args.no_ops,
        dry_run=args.dry_run,
    )
    print_report(report, args.dry_run)
    if not report.ok:
        failed = [t.table for t in report.tables if not t.ok]
        log.error("maintenance failed on %d table(s): %s", len(failed), ", ".join(failed))
        return 1
    return 0

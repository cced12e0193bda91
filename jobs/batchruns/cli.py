"""``silverline backfill`` and ``silverline replay``: batch runs with the stream's guarantees."""

from __future__ import annotations

import argparse
import collections
import contextlib
import logging
import sys
from collections.abc import Callable, Iterator
from datetime import UTC, datetime
from typing import Any

from jobs.batchruns.plan import ACTIONS, Plan
from jobs.cliargs import add_command, add_config_arguments, config_from_args
from jobs.config import ConfigError, SilverlineConfig

log = logging.getLogger(__name__)

_BACKFILL_DESCRIPTION = """\
Converge a tenant group's silver tables to what is in its bucket now. Lists
the raw objects (S3 ListObjectsV2, or the local lake), compares them with the
object ledger, and applies what is missing or changed; with --delete-missing it
also removes the rows of objects that no longer exist. Use it for notifications
that were lost, dead-lettered or predate the bucket's notification
configuration.

The events go through the streaming job's own writer: when a stream holds the
group's writer lease, the backfill hands them to it (applied in its next batch
or retry pass) and waits; otherwise it runs the writer itself. Each event
applies only while the ledger still holds the version it was planned against,
so a backfill running next to the stream never puts an older version over a
newer one.
"""

_BACKFILL_EPILOG = """\
examples:
  silverline backfill --config conf/local.yaml --dry-run
  silverline backfill --config conf/local.yaml --tenant acme --dataset orders --since 2026-11-01
  silverline backfill --config conf/emr.yaml --group prod-eu --delete-missing
  spark-submit jobs/backfill.py --config conf/emr.yaml --group prod-eu     # same arguments

exit codes: 0 done (or handed over with --no-wait); 1 the run failed or timed out;
            2 bad arguments or configuration.
"""

_REPLAY_DESCRIPTION = """\
Reprocess events that already landed in the bronze log: after a fix to the
job or a change of a dataset's contract. Each object's newest landed event is
handed to the writer; events the ledger already holds are skipped unless
--force, which applies the ledger's current version of those objects again
(rewriting their rows under the current contract). Only the tables of the
selected tenants and datasets are touched.
"""

_REPLAY_EPILOG = """\
examples:
  silverline replay --from-bronze --config conf/local.yaml --dataset orders --dry-run
  silverline replay --from-bronze --config conf/local.yaml --dataset orders --force
  silverline replay --from-bronze --config conf/local.yaml --tenant acme --since 2026-11-20T00:00:00Z

exit codes: 0 done (or handed over with --no-wait); 1 the run failed or timed out;
            2 bad arguments or configuration.
"""


def _when(text: str) -> datetime:
    try:
        moment = datetime.fromisoformat(text.replace("Z", "+00:00"))
    except ValueError as exc:
        raise argparse.ArgumentTypeError(
            f"not an ISO date or time: {text!r} (e.g. 2026-11-01T00:00:00Z)"
        ) from exc
    return moment if moment.tzinfo else moment.replace(tzinfo=UTC)


def _common(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, queue_flags=False)
    parser.add_argument(
        "--group", metavar="G", help="the tenant group (must be the configuration's group.name)"
    )
    parser.add_argument(
        "--tenant", metavar="T", action="append", default=[], help="only this tenant (repeatable)"
    )
    parser.add_argument("--dataset", metavar="D", help="only this dataset")
    parser.add_argument("--dry-run", action="store_true", help="print the plan; change nothing")
    parser.add_argument(
        "--no-wait",
        action="store_true",
        help="when a stream runs, hand the events over and return without waiting for them",
    )
    parser.add_argument(
        "--timeout",
        metavar="SECONDS",
        type=float,
        default=3600.0,
        help="how long to wait for a running stream to take the events (default 3600)",
    )


def add_parser(subparsers: Any) -> None:
    """Register the ``backfill`` and ``replay`` subcommands.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    backfill = add_command(
        subparsers,
        "backfill",
        summary="converge silver to the objects in the bucket (lost or old notifications)",
        description=_BACKFILL_DESCRIPTION,
        epilog=_BACKFILL_EPILOG,
    )
    _common(backfill)
    backfill.add_argument(
        "--since", metavar="TIME", type=_when, help="only objects modified at or after TIME"
    )
    backfill.add_argument("--until", metavar="TIME", type=_when, help="only objects modified before TIME")
    backfill.add_argument(
        "--delete-missing",
        action="store_true",
        help="also remove the rows of objects the ledger holds but the bucket no longer has",
    )
    backfill.set_defaults(func=run_backfill_command)
    replay = add_command(
        subparsers,
        "replay",
        summary="reprocess landed events from the bronze log (after a fix or a contract change)",
        description=_REPLAY_DESCRIPTION,
        epilog=_REPLAY_EPILOG,
    )
    _common(replay)
    replay.add_argument(
        "--from-bronze", action="store_true", required=True, help="replay what landed in the bronze log"
    )
    replay.add_argument(
        "--since", metavar="TIME", type=_when, help="only events with an event time at or after TIME"
    )
    replay.add_argument(
        "--force", action="store_true", help="re-apply objects the ledger already considers current"
    )
    replay.set_defaults(func=run_replay_command)


def _config(args: argparse.Namespace) -> SilverlineConfig:
    config = config_from_args(args)
    if args.group and args.group != config.group.name:
        raise ConfigError(
            f"--group {args.group}: the configuration is for group {config.group.name!r}; "
            "pass that group's configuration file (or SILVERLINE__GROUP__NAME)"
        )
    if getattr(args, "since", None) and getattr(args, "until", None) and args.since >= args.until:
        raise ConfigError("--since must be before --until")
    return config


def print_plan(plan: Plan, title: str) -> None:
    """The plan as a table: objects per tenant, dataset and action, then example keys."""
    from rich.console import Console
    from rich.table import Table

    table = Table(title=title)
    shown = [a for a in ACTIONS if plan.total(a)]
    for column in ("tenant", "dataset", *shown):
        table.add_column(column, justify="left" if column in ("tenant", "dataset") else "right")
    per_table: dict[tuple[str, str], collections.Counter[str]] = collections.defaultdict(collections.Counter)
    for (tenant, dataset, action), n in plan.counts.items():
        per_table[(tenant, dataset)][action] += n
    for (tenant, dataset), counts in sorted(per_table.items()):
        table.add_row(tenant, dataset, *[str(counts.get(a, 0)) for a in shown])
    console = Console(width=None if sys.stdout.isatty() else 160)
    console.print(table)
    for action, keys in plan.examples.items():
        console.print(f"  {action}: " + ", ".join(keys) + (" ..." if plan.total(action) > len(keys) else ""))
    console.print(f"{plan.changes} objects to hand over ({len(plan.events)} events)")


class ListingProgress:
    """Counts listed objects and shows the count on stderr while listing."""

    def __init__(self, show: Callable[[int], None]) -> None:
        self.listed = 0
        self._show = show

    def __call__(self, n: int) -> None:
        """Note ``n`` more listed objects."""
        self.listed += n
        self._show(n)


@contextlib.contextmanager
def listing_progress() -> Iterator[ListingProgress]:
    """A live count on a terminal; otherwise a line every 10,000 objects (logs of scheduled runs)."""
    if not sys.stderr.isatty():

        def line(n: int) -> None:
            if progress.listed // 10_000 != (progress.listed - n) // 10_000:
                print(f"  listed {progress.listed} objects", file=sys.stderr)

        progress = ListingProgress(line)
        yield progress
        return
    from rich.console import Console
    from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

    columns = (SpinnerColumn(), TextColumn("listing raw objects: {task.completed:,.0f}"), TimeElapsedColumn())
    with Progress(*columns, console=Console(stderr=True), transient=True) as bar:
        task = bar.add_task("list", total=None)
        yield ListingProgress(lambda n: bar.advance(task, n))


def _finish(
    config: SilverlineConfig, spark: Any, plan: Plan, request_id: str, args: argparse.Namespace, role: str
) -> int:
    from jobs.batchruns.run import hand_over, outcomes

    if args.dry_run:
        print("dry run: nothing was changed")
        return 0
    if not plan.events:
        print("nothing to do")
        return 0
    submitted = datetime.now(UTC)
    code = hand_over(config, request_id, plan.events, role=role, wait=not args.no_wait, timeout=args.timeout)
    if code != 0 or args.no_wait:
        return code
    result = outcomes(spark, config, plan.events, submitted)
    print(f"{role} {request_id} finished: " + ", ".join(f"{k}: {v}" for k, v in sorted(result.items())))
    return 0


def run_backfill_command(args: argparse.Namespace) -> int:
    """Entry of ``silverline backfill``."""
    from jobs.batchruns.listing import LakeLister
    from jobs.batchruns.plan import plan_backfill
    from jobs.batchruns.run import Scope, open_session, read_ledger
    from jobs.stream.handoff import BACKFILL, new_request_id

    config = _config(args)
    lister = LakeLister(config)
    spark = open_session(config)
    scope = Scope(tuple(args.tenant), args.dataset)
    ledger = read_ledger(spark, config, scope)  # before the listing: see jobs.batchruns.plan
    tenants = list(scope.tenants) or lister.tenants()
    print(
        f"ledger: {len(ledger)} objects; listing {len(tenants)} tenants under {lister.where}", file=sys.stderr
    )
    request_id = new_request_id(BACKFILL)
    with listing_progress() as on_page:
        plan = plan_backfill(
            config.group.bucket,
            lister.objects(tenants, args.dataset, on_page),
            ledger,
            request_id=request_id,
            now=datetime.now(UTC),
            delete_missing=args.delete_missing,
            since=args.since,
            until=args.until,
        )
    print(f"listed {on_page.listed} raw objects", file=sys.stderr)
    print_plan(plan, f"backfill plan for group {config.group.name} (bucket {config.group.bucket})")
    return _finish(config, spark, plan, request_id, args, BACKFILL)


def run_replay_command(args: argparse.Namespace) -> int:
    """Entry of ``silverline replay``."""
    from jobs.batchruns.plan import plan_replay
    from jobs.batchruns.run import Scope, open_session, read_landed, read_ledger
    from jobs.stream.handoff import REPLAY, new_request_id

    config = _config(args)
    spark = open_session(config)
    scope = Scope(tuple(args.tenant), args.dataset)
    ledger = read_ledger(spark, config, scope)
    landed = read_landed(spark, config, scope, args.since)
    print(f"ledger: {len(ledger)} objects; bronze: {len(landed)} objects with landed events", file=sys.stderr)
    request_id = new_request_id(REPLAY)
    plan = plan_replay(
        config.group.bucket, landed, ledger, request_id=request_id, now=datetime.now(UTC), force=args.force
    )
    print_plan(plan, f"replay plan for group {config.group.name} (bucket {config.group.bucket})")
    return _finish(config, spark, plan, request_id, args, REPLAY)

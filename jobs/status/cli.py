"""``silverline status``: is the tenant group healthy, and where is it behind?"""

from __future__ import annotations

import argparse
import json
from typing import Any

from jobs.cliargs import add_command, add_config_arguments, config_from_args

_DESCRIPTION = """\
One view of a tenant group, read from where the job keeps its state, without
starting Spark: the queue's depth and the age of its oldest message (CloudWatch),
the dead-letter queue's depth, bronze files the query has not taken yet, the last
batch (when, its outcome counts, whether they balance, freshness p50/p95), the
tenants lagging most, the events waiting for a retry, held for their tenant,
dropped and parked, and who holds the writer lease. Works on local and s3:// ops
roots. Ends with the problems found, or "healthy".
"""

_EPILOG = """\
examples:
  silverline status --config conf/local.yaml
  silverline status --config conf/emr.yaml --json | jq '.tenants | to_entries | .[:10]'

exit codes: 0 healthy; 1 problems found (listed); 2 bad arguments or configuration.
"""


def add_parser(subparsers: Any) -> None:
    """Register ``status``.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    parser = add_command(
        subparsers,
        "status",
        summary="is the tenant group healthy: queue, bronze, last batch, lag, lease",
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--json", action="store_true", help="print one JSON object (tenants keyed by name) instead of a table"
    )
    parser.set_defaults(func=run)


def run(args: argparse.Namespace) -> int:
    """Entry of ``silverline status``.

    Args:
        args: Parsed arguments.

    Returns:
        The exit code.
    """
    from jobs.status.view import group_status, render

    status = group_status(config_from_args(args))
    if args.json:
        print(json.dumps(status, indent=2, sort_keys=False, default=str))
    else:
        from rich.console import Console

        render(status, Console())
    return 0 if status["healthy"] else 1

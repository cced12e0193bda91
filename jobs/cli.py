"""The ``silverline`` command line: a thin entry point that wires subcommands."""

from __future__ import annotations

import argparse
import logging
import os
import sys
from collections.abc import Sequence

from jobs import __version__
from jobs.batchruns import cli as batchruns_cli
from jobs.bridge import cli as bridge_cli
from jobs.config import ConfigError
from jobs.demo import cli as demo_cli
from jobs.dlq import cli as dlq_cli
from jobs.emr import cli as emr_cli
from jobs.events import cli as events_cli
from jobs.logs import configure_logging
from jobs.maintenance import cli as maintenance_cli
from jobs.quality import cli as quality_cli
from jobs.simulate import cli as simulate_cli
from jobs.status import cli as status_cli
from jobs.stream import command as stream_cli
from jobs.tenants import cli as tenants_cli

log = logging.getLogger(__name__)

_DESCRIPTION = """\
silverline turns Amazon S3 event notifications (from SQS) into per-tenant Apache
Iceberg silver tables: duplicates and stale notifications removed, every raw
object's latest version reflected exactly once.

Run `silverline COMMAND --help` for each command's options and an example.
"""


def build_parser() -> argparse.ArgumentParser:
    """Build the top-level parser with every subcommand registered.

    Returns:
        The parser.
    """
    parser = argparse.ArgumentParser(
        prog="silverline",
        description=_DESCRIPTION,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("--version", action="version", version=f"silverline {__version__}")
    parser.add_argument(
        "--log-level",
        default="INFO",
        choices=["DEBUG", "INFO", "WARNING", "ERROR"],
        help="log verbosity on stderr (default: INFO)",
    )
    parser.add_argument(
        "--verbose",
        action="store_true",
        help="local runs: show Spark's stage progress bars and JVM warnings (hidden by default)",
    )
    subparsers = parser.add_subparsers(dest="command", metavar="COMMAND", required=True)
    events_cli.add_parser(subparsers)
    bridge_cli.add_parser(subparsers)
    stream_cli.add_parser(subparsers)
    simulate_cli.add_parser(subparsers)
    demo_cli.add_parser(subparsers)
    quality_cli.add_parser(subparsers)
    tenants_cli.add_parser(subparsers)
    batchruns_cli.add_parser(subparsers)
    dlq_cli.add_parser(subparsers)
    maintenance_cli.add_parser(subparsers)
    status_cli.add_parser(subparsers)
    emr_cli.add_parser(subparsers)
    return parser


def main(argv: Sequence[str] | None = None) -> int:
    """Run the command line.

    Args:
        argv: Arguments without the program name (default: ``sys.argv[1:]``).

    Returns:
        The process exit code.
    """
    parser = build_parser()
    args = parser.parse_args(argv)
    configure_logging(args.log_level)
    if args.verbose:
        from jobs.session import VERBOSE_ENV

        os.environ[VERBOSE_ENV] = "1"  # read when Spark starts, here or in a process started from here
    return run_parsed(args)


def run_parsed(args: argparse.Namespace) -> int:
    """Run a parsed command: a configuration error is one line and exit 2, an interrupt 130.

    Args:
        args: Arguments parsed by :func:`build_parser`.

    Returns:
        The process exit code.
    """
    try:
        code: int = args.func(args)
    except ConfigError as exc:
        print(f"silverline: {exc}", file=sys.stderr)
        return 2
    except KeyboardInterrupt:
        return 130
    return code

"""Command-line flags shared by the commands that load a job configuration."""

from __future__ import annotations

import argparse
import functools
import sys
from collections.abc import Callable
from typing import Any

from jobs.config import SilverlineConfig, load_config


def add_command(
    subparsers: Any, name: str, *, summary: str, description: str, epilog: str | None = None
) -> argparse.ArgumentParser:
    """Add a subcommand whose ``--help`` keeps the layout of its description and epilog.

    Args:
        subparsers: The top-level parser's subparsers action.
        name: The command name.
        summary: One line for ``silverline --help``.
        description: The command's own help text.
        epilog: Examples and exit codes.

    Returns:
        The subcommand's parser.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        name,
        help=summary,
        description=description,
        epilog=epilog,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    return parser


def add_command_group(
    subparsers: Any, name: str, *, summary: str, description: str, epilog: str | None = None
) -> Any:
    """Add a command with actions (``silverline NAME ACTION ...``); returns the actions' subparsers.

    Args:
        subparsers: The top-level parser's subparsers action.
        name: The command name.
        summary: One line for ``silverline --help``.
        description: The command's own help text.
        epilog: Examples and exit codes.

    Returns:
        The subparsers action to add the actions to (with :func:`add_command`).
    """
    parser = add_command(subparsers, name, summary=summary, description=description, epilog=epilog)
    return parser.add_subparsers(dest="action", metavar="ACTION", required=True)


def add_config_arguments(parser: argparse.ArgumentParser, *, queue_flags: bool = True) -> None:
    """Add ``--config`` and the common override flags to a subcommand parser.

    Args:
        parser: The subcommand's parser.
        queue_flags: Also add ``--queue-url`` and ``--sqs-endpoint-url`` (a command
            that makes its own queue leaves them out).
    """
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML configuration (e.g. conf/local.yaml); SILVERLINE__SECTION__KEY "
        "environment variables and the flags below override it",
    )
    if queue_flags:
        parser.add_argument("--queue-url", metavar="URL", help="SQS queue URL (sqs.queue_url)")
        parser.add_argument(
            "--sqs-endpoint-url", metavar="URL", help="SQS endpoint, e.g. moto's server (sqs.endpoint_url)"
        )
    else:
        parser.set_defaults(queue_url=None, sqs_endpoint_url=None)
    parser.add_argument("--lake-root", metavar="DIR|URI", help="lake root (lake.root)")


def config_from_args(args: argparse.Namespace, **extra: Any) -> SilverlineConfig:
    """Load the configuration named by ``--config`` with flag overrides applied.

    Args:
        args: Parsed arguments from a parser set up by :func:`add_config_arguments`.
        **extra: Further nested overrides (section -> key -> value).

    Returns:
        The frozen configuration.
    """
    overrides: dict[str, Any] = {
        "sqs": {"queue_url": args.queue_url, "endpoint_url": args.sqs_endpoint_url},
        "lake": {"root": args.lake_root},
    }
    for section, values in extra.items():
        overrides.setdefault(section, {}).update(values)
    return load_config(args.config, overrides=overrides)


Command = Callable[[argparse.Namespace], int]


def command_name(args: argparse.Namespace) -> str:
    """``silverline <command> [<action>]`` of the parsed arguments, for messages."""
    return " ".join(p for p in ("silverline", args.command, getattr(args, "action", None)) if p)


def aws_errors_exit_1(run: Command) -> Command:
    """Decorate a command: a failed AWS request prints ``silverline <command> <action>: ...``, exit 1.

    A ``ConfigError`` still reaches :func:`jobs.cli.main` (exit code 2).
    """

    @functools.wraps(run)
    def wrapper(args: argparse.Namespace) -> int:
        from boto3.exceptions import S3UploadFailedError
        from botocore.exceptions import BotoCoreError, ClientError

        try:
            return run(args)
        except (ClientError, BotoCoreError, S3UploadFailedError) as exc:
            print(f"{command_name(args)}: AWS request failed: {exc}", file=sys.stderr)
            return 1

    return wrapper

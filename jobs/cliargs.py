"""Command-line flags shared by the commands that load a job configuration."""

from __future__ import annotations

import argparse
from typing import Any

from jobs.config import SilverlineConfig, load_config


def add_config_arguments(parser: argparse.ArgumentParser) -> None:
    """Add ``--config`` and the common override flags to a subcommand parser.

    Args:
        parser: The subcommand's parser.
    """
    parser.add_argument(
        "--config",
        metavar="FILE",
        help="YAML configuration (e.g. conf/local.yaml); SILVERLINE__SECTION__KEY "
        "environment variables and the flags below override it",
    )
    parser.add_argument("--queue-url", metavar="URL", help="SQS queue URL (sqs.queue_url)")
    parser.add_argument(
        "--sqs-endpoint-url", metavar="URL", help="SQS endpoint, e.g. moto's server (sqs.endpoint_url)"
    )
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

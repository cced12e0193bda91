"""``silverline bridge`` (placeholder until the bridge lands)."""

from __future__ import annotations

import argparse
from typing import Any


def add_parser(subparsers: Any) -> None:
    """Register the ``bridge`` subcommand.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "bridge", help="drain the SQS queue into the bronze landing log (not built yet)"
    )
    parser.set_defaults(func=lambda args: 1)

"""Logging setup for entry points (library modules only call ``getLogger``)."""

from __future__ import annotations

import logging
import sys

_FORMAT = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"


def configure_logging(level: str = "INFO") -> None:
    """Send log records to stderr in one plain format.

    Args:
        level: A logging level name (DEBUG, INFO, WARNING, ERROR).
    """
    logging.basicConfig(level=level.upper(), format=_FORMAT, stream=sys.stderr, force=True)
    for noisy in ("py4j", "botocore", "urllib3", "werkzeug", "great_expectations", "pyiceberg"):
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))

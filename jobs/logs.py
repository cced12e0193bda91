"""Logging setup for entry points (library modules only call ``getLogger``).

Every handler :func:`configure_logging` installs carries a
:class:`~jobs.redact.RedactingFilter`: AWS secrets from the environment,
presigned-URL query strings, signatures, ``Authorization`` headers and STS
credentials never reach the log, whichever logger (ours, botocore's,
urllib3's, ...) emitted the record.
"""

from __future__ import annotations

import logging
import sys

from jobs.redact import Redactor, install

_FORMAT = "%(asctime)s %(levelname)-5s %(name)s: %(message)s"
#: Third-party loggers kept at WARNING or above whatever the level (their DEBUG is wire traffic).
QUIET_LOGGERS = ("py4j", "botocore", "urllib3", "werkzeug", "great_expectations", "pyiceberg")


def configure_logging(level: str = "INFO") -> None:
    """Send log records to stderr in one plain format, with secrets redacted.

    Args:
        level: A logging level name (DEBUG, INFO, WARNING, ERROR).
    """
    logging.basicConfig(level=level.upper(), format=_FORMAT, stream=sys.stderr, force=True)
    redactor = Redactor.from_environ()
    for handler in logging.getLogger().handlers:
        install(handler, redactor)
    for noisy in QUIET_LOGGERS:
        logging.getLogger(noisy).setLevel(max(logging.WARNING, logging.getLogger().level))

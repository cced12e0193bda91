"""Re-run an Iceberg write that lost a race with a concurrent commit.

Iceberg retries a commit that merely lost the race for the metadata pointer
(``commit.retry.num-retries``). It does not retry a commit whose *validation*
fails against what the other writer did — compaction (``silverline maintain``)
replaced the data files a MERGE's position deletes point at ("missing data
files"), or rewrote the files an overwrite meant to delete. Those writes are
safe to plan and run again from the new table state: every silverline write is
idempotent per batch (a silver commit first looks for its own batch's snapshot;
the ledger MERGE and the ops tables' replace-by-batch rewrite the same rows).

The same holds for a write planned from a snapshot that maintenance expired
while it ran: the manifest or data file it then reads is gone
(``FileNotFoundException`` on a file under the table's ``metadata/`` or
``data/``), and planning it again from the new state reads the files that replaced it.
"""

from __future__ import annotations

import logging
import random
import re
import time
from collections.abc import Callable
from typing import TypeVar

log = logging.getLogger(__name__)

T = TypeVar("T")

# What Iceberg (through Py4J) says when a concurrent commit invalidated this one.
CONFLICT_SIGNS = (
    "ValidationException",
    "CommitFailedException",
    "Missing required files to delete",
    "missing data files",
    "Found conflicting files",
    "Found new conflicting delete files",
    "Cannot commit, found new",
)

# A table file that a concurrent expiry deleted after this write planned from an older snapshot.
EXPIRED_FILE = re.compile(r"FileNotFoundException: File \S+/(?:metadata|data)/\S+ does not exist")


def first_line(exc: BaseException) -> str:
    """The first informative line of an error (past Py4J's "An error occurred while calling ...")."""
    for line in str(exc).splitlines():
        line = line.strip().lstrip(":").strip()
        if line and not line.startswith("An error occurred while calling"):
            return line
    return ""


def is_conflict(exc: BaseException) -> bool:
    """True when ``exc`` is Iceberg refusing a commit because of a concurrent one.

    Args:
        exc: The error a write raised.

    Returns:
        Whether running the write again from the new table state can succeed.
    """
    text = f"{type(exc).__name__}: {exc}"
    return any(sign in text for sign in CONFLICT_SIGNS) or EXPIRED_FILE.search(text) is not None


def retry_on_conflict(
    write: Callable[[], T],
    what: str,
    *,
    attempts: int = 4,
    base_delay: float = 0.5,
    sleep: Callable[[float], None] = time.sleep,
) -> T:
    """Run ``write``; on a commit conflict, plan and run it again (at most ``attempts`` times).

    Args:
        write: The whole write: planning included, so each attempt reads the newest state.
        what: What is written, for the log (e.g. the table name).
        attempts: Runs in all; the last conflict is raised.
        base_delay: The first back-off in seconds (doubled each time, with jitter).
        sleep: The sleep function (tests pass a recorder).

    Returns:
        What ``write`` returned.

    Raises:
        Exception: The last conflict, or at once any error that is not a conflict.
    """
    for attempt in range(1, attempts + 1):
        try:
            return write()
        except Exception as exc:
            if attempt == attempts or not is_conflict(exc):
                raise
            delay = base_delay * (2 ** (attempt - 1)) * (0.5 + random.random())
            log.warning(
                "%s: commit conflict with a concurrent writer (attempt %d of %d), again in %.1fs: %s",
                what,
                attempt,
                attempts,
                delay,
                first_line(exc)[:300] or type(exc).__name__,
            )
            sleep(delay)
    raise AssertionError("unreachable")  # pragma: no cover

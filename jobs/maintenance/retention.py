"""Retention of the job's own data: processed bronze files and old ops-table rows.

A bronze file may be deleted only once the ingest query has *committed* the
micro-batch that read it — not merely when it is old: a stream stopped for a
month must still find its backlog. Spark's file-source log in the checkpoint
(``sources/0/<batch>`` and the ``.compact`` files) lists every file with the
batch that took it and the file's modification time, and ``commits/<batch>``
marks the batches that finished. A bronze file is deleted when its batch is
committed and its modification time is older than ``bronze_retention_days``.
After a checkpoint reset the new checkpoint has taken nothing yet, so nothing
is deleted until the stream has re-read the files.

Ops tables that only describe the past (batch metrics, stream progress,
validation results) lose rows older than ``ops_retention_days``. Tables that
hold work or evidence someone must act on — the ledger, retry, held, parked,
quarantine and rejected tables — are never trimmed by age.
"""

from __future__ import annotations

import json
import logging
from dataclasses import dataclass
from datetime import datetime, timedelta
from functools import partial
from typing import TYPE_CHECKING, Protocol, cast
from urllib.parse import unquote, urlparse

from jobs.bridge.landing import bronze_uri, open_bronze_store, open_store
from jobs.config import SilverlineConfig
from jobs.maintenance.tables import sql_timestamp
from jobs.silver.conflicts import retry_on_conflict
from jobs.stream.ops import ops_table

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# Ops tables trimmed by age, with the column that dates a row.
AGED_OPS_TABLES = {
    "batch_metrics": "finished_at",
    "stream_progress": "reported_at",
    "validation_results": "validated_at",
}


class _Files(Protocol):
    def names(self) -> list[str]: ...

    def read(self, name: str) -> bytes: ...

    def delete(self, name: str) -> None: ...


@dataclass(frozen=True)
class BronzeFile:
    """A bronze file the ingest query took: its batch and modification time (ms since the epoch)."""

    batch_id: int
    modified_ms: int


def _location(uri: str) -> tuple[str, str]:
    """(bucket or "", path) of a ``file:``/``s3:``/``s3a:`` URI, comparable across spellings."""
    parsed = urlparse(uri)
    netloc = parsed.netloc if parsed.scheme in ("s3", "s3a", "s3n") else ""
    return netloc, unquote(parsed.path).lstrip("/")


def relative_name(uri: str, base_uri: str) -> str | None:
    """``uri`` relative to the directory ``base_uri``; None when it is not under it."""
    bucket, path = _location(uri)
    base_bucket, base = _location(base_uri)
    base = base.rstrip("/") + "/"
    if bucket != base_bucket or not path.startswith(base):
        return None
    return path[len(base) :]


def _checkpoint_store(config: SilverlineConfig, sub: str) -> _Files:
    from jobs.stream.query import checkpoint_uri

    return cast(_Files, open_store(f"{checkpoint_uri(config)}{sub}/", config))


def taken_files(config: SilverlineConfig) -> dict[str, BronzeFile]:
    """Bronze files (relative names) in committed batches of the ingest query's checkpoint."""
    commits = _checkpoint_store(config, "commits")
    committed = [int(n) for n in commits.names() if n.isdigit()]
    if not committed:
        return {}
    last = max(committed)
    sources = _checkpoint_store(config, "sources/0")
    found: dict[str, BronzeFile] = {}
    for name in sources.names():
        if not name.split(".")[0].isdigit():
            continue
        for line in sources.read(name).decode("utf-8").splitlines()[1:]:
            if not line.strip():
                continue
            entry = json.loads(line)
            relative = relative_name(entry["path"], bronze_uri(config))
            if relative is not None and int(entry["batchId"]) <= last:
                found[relative] = BronzeFile(int(entry["batchId"]), int(entry["timestamp"]))
    return found


def expire_bronze(config: SilverlineConfig, *, now: datetime, dry_run: bool = False) -> tuple[int, int]:
    """Delete processed bronze files older than the retention.

    Args:
        config: The job configuration (``maintenance.bronze_retention_days``).
        now: The reference time (time-zone aware).
        dry_run: Count, delete nothing.

    Returns:
        (files deleted or, with ``dry_run``, eligible; files kept because no committed batch took them).
    """
    days = config.maintenance.bronze_retention_days
    if days is None:
        return 0, 0
    store = cast(_Files, open_bronze_store(config))
    names = store.names()
    cutoff_ms = int((now - timedelta(days=days)).timestamp() * 1000)
    taken = taken_files(config)
    old = [n for n in names if n in taken and taken[n].modified_ms < cutoff_ms]
    for name in old:
        if not dry_run:
            store.delete(name)
    untaken = sum(1 for n in names if n not in taken)
    log.info(
        "bronze: %d processed files older than %s days %s; %d not yet committed by the stream (kept)",
        len(old),
        days,
        "eligible (dry run)" if dry_run else "deleted",
        untaken,
    )
    return len(old), untaken


def expire_ops_rows(
    spark: SparkSession, config: SilverlineConfig, *, now: datetime, dry_run: bool = False
) -> dict[str, int]:
    """Delete rows older than ``maintenance.ops_retention_days`` from the dated ops tables.

    Args:
        spark: The session.
        config: The job configuration.
        now: The reference time (time-zone aware).
        dry_run: Count, delete nothing.

    Returns:
        Rows deleted (or eligible) per table.
    """
    days = config.maintenance.ops_retention_days
    if days is None:
        return {}
    cutoff = sql_timestamp(now - timedelta(days=days))
    result = {}
    for name, column in AGED_OPS_TABLES.items():
        table = ops_table(config, name)
        if not spark.catalog.tableExists(table):
            continue
        where = f"{column} < {cutoff}"
        count = int(spark.sql(f"SELECT count(*) AS n FROM {table} WHERE {where}").first()["n"])  # type: ignore[index]
        if count and not dry_run:
            retry_on_conflict(partial(spark.sql, f"DELETE FROM {table} WHERE {where}"), table)
        result[name] = count
        verb = "eligible" if dry_run else "deleted"
        log.info("%s: %d rows older than %s days %s", table, count, days, verb)
    return result

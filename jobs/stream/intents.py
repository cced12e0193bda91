"""Commit intents: the ledger rows each tenant table's commit will stand for, written before the commits.

A micro-batch commits its tenant tables first and records the objects in the
ledger after. A crash between the two leaves rows in silver that the ledger does
not know. Replayed under the same batch id the commit is skipped (its snapshot
carries the batch id), but under another id — a retry pass, a new query after
``--reset-checkpoint`` — a new object's rows are a plain append and would land a
second time, and a skipped commit must not be recorded with what the replay
recomputed (R6).

So before its commits a batch writes one intent file under ``<ops_root>intents/``
(table -> the ledger rows of its objects), and removes it once the ledger holds
them. Whatever batch comes next first recovers the intents left behind: a table
whose snapshot of that (query id, batch id) exists gets those ledger rows, the
others get nothing (their events are still in bronze or in the retry table).
Then a replay judges the committed objects as duplicates instead of applying them
again. The idea is that of Iceberg's Kafka Connect sink and Flink's committer:
what a commit contains is known before it happens, and checked against the table
after a crash.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from typing import TYPE_CHECKING, Any

from jobs.bridge.landing import FileStore
from jobs.config import SilverlineConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

# Ledger columns in table order (jobs.stream.ops.TABLES["ledger"]); timestamps as ISO text.
LEDGER_FIELDS = (
    "bucket", "key", "tenant", "dataset", "state", "sequencer", "event_time", "event_id", "etag",
    "version_id", "batch_id", "updated_at",
)  # fmt: skip
_TIMESTAMPS = frozenset({"event_time", "updated_at"})


@dataclass(frozen=True)
class Intent:
    """One batch's intent: the ledger rows of each table it was about to commit."""

    query_id: str
    batch_id: int
    tables: Mapping[str, Sequence[tuple[Any, ...]]]

    @property
    def name(self) -> str:
        """The file name: one per (query id, batch id), so a replay overwrites its own."""
        return intent_name(self.query_id, self.batch_id)


def intent_name(query_id: str, batch_id: int) -> str:
    """``<query id>.<batch id>.json`` (retry passes have negative ids)."""
    return f"{query_id}.{batch_id}.json"


def _encode(row: Sequence[Any]) -> list[Any]:
    return [v.isoformat() if isinstance(v, datetime) else v for v in row]


def _decode(row: Sequence[Any]) -> tuple[Any, ...]:
    return tuple(
        datetime.fromisoformat(v) if name in _TIMESTAMPS and v is not None else v
        for name, v in zip(LEDGER_FIELDS, row, strict=True)
    )


class CommitIntents:
    """The intents of the batches that have not finished recording their commits."""

    def __init__(self, store: FileStore) -> None:
        """Create the intents view.

        Args:
            store: A whole-file store (local directory or S3 prefix) under the ops root.
        """
        self._store = store

    @classmethod
    def for_config(cls, config: SilverlineConfig) -> CommitIntents:
        """The intents under ``<ops_root>intents/``."""
        from jobs.bridge.landing import open_file_store

        return cls(open_file_store(f"{config.ops_root}intents/", config))

    def write(self, intent: Intent) -> None:
        """Durably record ``intent`` (before the first of its commits)."""
        body = {
            "query_id": intent.query_id,
            "batch_id": intent.batch_id,
            "fields": list(LEDGER_FIELDS),
            "tables": {table: [_encode(r) for r in rows] for table, rows in intent.tables.items()},
        }
        self._store.write(intent.name, json.dumps(body, separators=(",", ":")).encode())

    def remove(self, query_id: str, batch_id: int) -> None:
        """Forget a batch's intent (its ledger rows are recorded)."""
        self._store.delete(intent_name(query_id, batch_id))

    def pending(self) -> list[Intent]:
        """The intents left behind by batches that stopped before recording their commits."""
        intents = []
        for name in self._store.names():
            body = json.loads(self._store.read(name))
            tables = {table: [_decode(r) for r in rows] for table, rows in body["tables"].items()}
            intents.append(Intent(body["query_id"], int(body["batch_id"]), tables))
        return intents

    def recover(
        self, spark: SparkSession, committed: Callable[..., Any]
    ) -> tuple[list[tuple[Any, ...]], list[str]]:
        """The ledger rows of every leftover intent's tables that did commit.

        Args:
            spark: The session.
            committed: ``(spark, table, batch_id=, query_id=) -> snapshot or None``, e.g.
                :func:`jobs.silver.snapshots.find_batch_snapshot`; a table that cannot be
                loaded (never created) counts as not committed.

        Returns:
            The ledger rows to upsert, and the intents' names: :meth:`forget` them once the
            rows are in the ledger.
        """
        rows: list[tuple[Any, ...]] = []
        names: list[str] = []
        for intent in self.pending():
            names.append(intent.name)
            tables, before = 0, len(rows)
            for table, table_rows in intent.tables.items():
                try:
                    found = committed(spark, table, batch_id=intent.batch_id, query_id=intent.query_id)
                except Exception as exc:  # a table the stopped batch never created
                    log.debug("intent %s: %s cannot be loaded (%s)", intent.name, table, exc)
                    found = None
                if found is not None:
                    rows.extend(table_rows)
                    tables += 1
            log.warning(
                "batch %d of query %s stopped between its commits and its ledger update: "
                "%d of its %d tables had committed; their %d objects are recorded now",
                intent.batch_id, intent.query_id, tables, len(intent.tables), len(rows) - before,
            )  # fmt: skip
        return rows, names

    def forget(self, names: Sequence[str]) -> None:
        """Remove recovered intents (their committed rows are in the ledger)."""
        for name in names:
            self._store.delete(name)

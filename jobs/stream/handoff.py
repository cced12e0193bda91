"""Hand-off: events that a backfill or a replay hands to the one writer that applies them.

A batch run never commits to silver next to a running stream: two writers that
each judge against the ledger and then commit could put an older version over a
newer one (the ledger and a silver table are two Iceberg tables; no transaction
spans both). Instead a batch run writes its events as JSON-lines files under
``<ops_root>requests/<request id>/`` (atomic whole files, like bronze) and the
writer that holds the writer lease (:mod:`jobs.stream.lease`) — the running stream, or
the batch run itself when no stream runs — takes every pending file into its
next batch or retry pass, exactly like the retry table, and deletes the files
once the batch is durable. A crash before the delete replays them; the ledger
then counts them as duplicates.

Each event has a ``directive`` (``backfill`` or ``replay``) and the ledger
event it supersedes (``expect_event_id``): it applies only while the ledger
still holds exactly that event (:mod:`jobs.stream.ledger`).
"""

from __future__ import annotations

import json
import uuid
from collections.abc import Iterable, Mapping, Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobs.config import SilverlineConfig
from jobs.stream.ops import EVENT_COLUMNS
from jobs.stream.ops_writer import EVENT_FIELDS

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

    from jobs.bridge.landing import LocalBronzeStore, S3BronzeStore

BACKFILL = "backfill"
REPLAY = "replay"
FILE_EVENTS = 5000  # events per request file

_TIME_FORMAT = "%Y-%m-%dT%H:%M:%S.%fZ"
_SPARK_TIME_FORMAT = "yyyy-MM-dd'T'HH:mm:ss.SSSSSSX"


def requests_uri(config: SilverlineConfig) -> str:
    """Where pending requests wait: ``<ops_root>requests/``."""
    return f"{config.ops_root}requests/"


def new_request_id(kind: str) -> str:
    """A sortable, unique id for one batch run's request, e.g. ``backfill-20261123T201500-1a2b3c4d``."""
    return f"{kind}-{datetime.now(UTC):%Y%m%dT%H%M%S}-{uuid.uuid4().hex[:8]}"


def _json_value(value: Any) -> Any:
    if isinstance(value, datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=UTC)
        return moment.astimezone(UTC).strftime(_TIME_FORMAT)
    return value


def encode_events(events: Iterable[Mapping[str, Any]]) -> bytes:
    """JSON lines with exactly the event fields (missing ones null)."""
    lines = [json.dumps({f: _json_value(e.get(f)) for f in EVENT_FIELDS}, sort_keys=True) for e in events]
    return ("\n".join(lines) + "\n").encode("utf-8") if lines else b""


class RequestInbox:
    """The pending requests of one tenant group (a whole-file store under the ops root)."""

    def __init__(self, store: LocalBronzeStore | S3BronzeStore) -> None:
        """Create the inbox.

        Args:
            store: A store at :func:`requests_uri` (``names``, ``read``, ``write``, ``delete``).
        """
        self._store = store

    @classmethod
    def for_config(cls, config: SilverlineConfig) -> RequestInbox:
        """The inbox under a configuration's ops root."""
        from jobs.bridge.landing import open_store

        store = open_store(requests_uri(config), config)
        return cls(store)  # type: ignore[arg-type]  # both stores implement names/read/delete

    @property
    def uri(self) -> str:
        """The inbox directory's URI."""
        return self._store.uri

    def submit(self, request_id: str, events: Sequence[Mapping[str, Any]]) -> list[str]:
        """Write a request's events, :data:`FILE_EVENTS` per file; returns the file names."""
        names: list[str] = []
        for part, start in enumerate(range(0, len(events), FILE_EVENTS)):
            name = f"{request_id}/part-{part:05d}.jsonl"
            self._store.write(name, encode_events(events[start : start + FILE_EVENTS]))
            names.append(name)
        return names

    def pending(self, request_id: str | None = None) -> list[str]:
        """Names of the pending request files (of one request, or all)."""
        names = [n for n in self._store.names() if n.endswith(".jsonl")]
        if request_id is not None:
            names = [n for n in names if n.startswith(f"{request_id}/")]
        return names

    def frame(self, spark: SparkSession, names: Sequence[str]) -> DataFrame:
        """The events of ``names`` shaped like the retry table's rows (attempts 0)."""
        from pyspark.sql import functions as F

        base = self._store.uri
        return (
            spark.read.schema(EVENT_COLUMNS)  # the event columns of the retry and held tables
            .option("timestampFormat", _SPARK_TIME_FORMAT)
            .json([base + name for name in names])
            .select(*EVENT_FIELDS)
            .withColumn("attempts", F.lit(0))
        )

    def done(self, names: Iterable[str]) -> None:
        """Remove request files whose events went through a durable batch."""
        for name in names:
            self._store.delete(name)

"""The streaming query: bronze landing log -> parsed, deduplicated events -> BatchWriter.

Spark's file source reads what the SQS bridge landed (checkpointed, so every
bronze file is processed exactly once per checkpoint); the S3 event model
parses it; ``dropDuplicatesWithinWatermark`` on the event identity removes
duplicate notifications. The watermark runs on the stream's own clock (the time
the micro-batch reads the record, ``ingested_at``), never on a time a record
carries: an event whose *event time* is old, or that a bridge whose clock runs
behind stamped with an old receive time, is never dropped as late (R6).
Duplicates that arrive further apart than the watermark are caught by the ledger
instead.
"""

from __future__ import annotations

import logging
import re
import threading
from collections.abc import Sequence
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from pyspark.sql import functions as F

from jobs.config import SilverlineConfig
from jobs.events import model as m
from jobs.events.spark import parse_events, with_foreign_buckets_rejected
from jobs.silver.conflicts import retry_on_conflict
from jobs.silver.fastappend import append_when_new
from jobs.stream.checkpoint import RECOVERY, move_checkpoint_aside

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession
    from pyspark.sql.streaming.query import StreamingQuery

log = logging.getLogger(__name__)

BRONZE_SCHEMA = (
    "message_id STRING, queue_url STRING, body STRING, received_at STRING, "
    "receive_count INT, sent_at STRING, bridge_id STRING"
)
QUERY_NAME = "silverline_ingest"
# The line a Python traceback ends with: ``OSError: [Errno 36] ...``, ``jobs.x.SomeError: ...``.
_PYTHON_ERROR_RE = re.compile(r"^[A-Za-z_][\w.]*(Error|Exception|Interrupt|Exit)\b(:|$)")


def bronze_uri(config: SilverlineConfig) -> str:
    """URI of the bronze landing log (the bridge writes, the stream reads)."""
    return f"{config.ops_root}bronze/"


def checkpoint_uri(config: SilverlineConfig) -> str:
    """URI of the ingest query's checkpoint."""
    return f"{config.checkpoint_root}ingest/"


def ensure_local_dir(uri: str) -> None:
    """Create a ``file://`` directory (Spark's file source needs it to exist)."""
    if uri.startswith("file:"):
        Path(unquote(urlparse(uri).path)).mkdir(parents=True, exist_ok=True)


def read_bronze(spark: SparkSession, config: SilverlineConfig) -> DataFrame:
    """The bronze landing log as a stream, one row per landed SQS message.

    Args:
        spark: The session.
        config: The job configuration.

    Returns:
        A streaming DataFrame with the bronze columns, a timestamp ``received_at``
        and the ``bronze_file`` each row came from.
    """
    return (
        spark.readStream.schema(BRONZE_SCHEMA)
        .option("maxFilesPerTrigger", config.files_per_trigger)
        .option("pathGlobFilter", "*.jsonl")
        .option("recursiveFileLookup", "true")
        .json(bronze_uri(config))
        .withColumn("bronze_file", F.input_file_name())
        .withColumn(
            "received_at",
            F.coalesce(F.to_timestamp("received_at"), F.to_timestamp("sent_at"), F.current_timestamp()),
        )
    )


def with_dedupe_key(parsed_df: DataFrame) -> DataFrame:
    """Add ``dedupe_key``: the event identity (R3), or the message and record for non-events.

    Non-event records (tests, ignored, rejected) are keyed by message id,
    record index and body, so a message the bridge landed twice is counted once.
    """
    fallback = F.sha2(
        F.concat_ws(
            m.ID_SEPARATOR,
            F.coalesce(F.col("message_id"), F.lit("")),
            F.col("record_index").cast("string"),
            F.col("body_sha256"),
        ),
        256,
    )
    return parsed_df.withColumn("dedupe_key", F.coalesce(F.col("event_id"), fallback))


def deduplicated_events(bronze_df: DataFrame, watermark_delay: str, bucket: str) -> DataFrame:
    """Parse bronze rows into records and drop duplicates within the watermark.

    Args:
        bronze_df: Output of :func:`read_bronze`.
        watermark_delay: How long duplicate-detection state is kept (e.g. ``10 minutes``).
        bucket: The tenant group's bucket (events of other buckets are rejected).

    Returns:
        One row per distinct record.
    """
    return (
        bronze_df.withColumn("body_sha256", F.sha2(F.coalesce(F.col("body"), F.lit("")), 256))
        .transform(parse_events)
        .transform(lambda df: with_foreign_buckets_rejected(df, bucket))
        .transform(with_dedupe_key)
        # The batch's own timestamp: every record of a micro-batch gets the same one, and it
        # never runs behind the watermark, which is the previous batches' time less the delay.
        .withColumn("ingested_at", F.current_timestamp())
        .withWatermark("ingested_at", watermark_delay)
        .dropDuplicatesWithinWatermark(["dedupe_key"])
    )


class QueryIdGate:
    """Hands the query id to the batch function once ``start()`` has returned."""

    def __init__(self) -> None:
        self._ready = threading.Event()
        self.query_id = "unknown"

    def set(self, query_id: str) -> None:
        """Publish the id."""
        self.query_id = query_id
        self._ready.set()

    def wait(self, timeout: float = 60.0) -> str:
        """Block until the id is known (the first batch can start before ``start()`` returns)."""
        self._ready.wait(timeout)
        return self.query_id


def progress_rows(progress: list[dict[str, Any]], query_id: str) -> list[tuple[Any, ...]]:
    """Rows for the ``stream_progress`` ops table from ``query.recentProgress``.

    Args:
        progress: Progress dicts (``StreamingQueryProgress`` as JSON).
        query_id: The query id.

    Returns:
        (batch_id, query_id, input messages, duplicates dropped, late dropped, now) per batch.
    """
    rows = []
    now = datetime.now(UTC)
    for item in progress:
        operators = item.get("stateOperators") or []
        log.debug("progress of batch %s: state operators %s", item.get("batchId"), operators)
        dropped = sum(
            int((op.get("customMetrics") or {}).get("numDroppedDuplicateRows", 0)) for op in operators
        )
        late = sum(int(op.get("numRowsDroppedByWatermark", 0)) for op in operators)
        rows.append((int(item["batchId"]), query_id, int(item.get("numInputRows", 0)), dropped, late, now))
    return rows


class ProgressRecorder:
    """Writes the stream's per-batch dedupe counts to ``stream_progress`` (from the driver's main thread)."""

    def __init__(self, spark: SparkSession, table: str) -> None:
        self.spark = spark
        self.table = table
        self.recorded: set[int] = set()

    def record(self, query: StreamingQuery) -> int:
        """Append progress of batches not recorded yet; returns how many rows were written.

        A trigger without input (no new bronze file, or a restarted query reporting its
        last batch again) dropped nothing: it gets no row, and no write at all.
        """
        fresh = [p for p in query.recentProgress if int(p["batchId"]) not in self.recorded]
        if not fresh:
            return 0
        rows = progress_rows([dict(p) for p in fresh], str(query.id))
        # Input, duplicates dropped, late dropped. A trigger without any is not marked as
        # recorded: the batch id it reports may still come with input, from a restarted query.
        rows = [r for r in rows if any(r[2:5])]
        if not rows:
            return 0
        self._upsert(rows)
        self.recorded.update(r[0] for r in rows)
        return len(rows)

    def _upsert(self, rows: Sequence[tuple[Any, ...]]) -> None:
        """Write these batches' rows, replacing any row of the same (query, batch).

        Usually the table holds none of them (its file metrics say so, without reading
        data): they are appended metadata-only, with no Spark job. A restarted query
        reports its last batch id again, so that batch's row is replaced by a MERGE, row
        by row (an overwrite by filter would drop whole data files, and a file from an
        earlier run can hold that batch next to others).
        """
        keys = [{"query_id": row[1], "batch_id": row[0]} for row in rows]
        if append_when_new(self.spark, self.table, rows, keys, {}):
            return
        frame = self.spark.createDataFrame(list(rows), schema=self.spark.table(self.table).schema)
        view = "_silverline_progress_rows"
        frame.createOrReplaceTempView(view)
        merge = f"""MERGE INTO {self.table} t USING {view} u
                ON t.query_id = u.query_id AND t.batch_id = u.batch_id
                WHEN MATCHED THEN UPDATE SET *
                WHEN NOT MATCHED THEN INSERT *"""
        # ``silverline maintain`` may compact and expire this table meanwhile: plan again then.
        retry_on_conflict(lambda: self.spark.sql(merge), self.table)


def failure_message(error: Any, config: SilverlineConfig) -> str:
    """One line for a failed query: what failed, plus the recovery when a checkpoint file is named.

    Spark's message is long (the query's plan and offsets, a JVM stack, and, for an error
    in the batch function, the Python traceback). The line keeps the Python exception's
    own line when there is one, else Spark's first line.

    Args:
        error: ``query.exception()`` (a ``StreamingQueryException``) or any exception.
        config: The job configuration.

    Returns:
        The line to log.
    """
    text = str(getattr(error, "desc", None) or error).strip()
    lines = [line.strip() for line in text.splitlines() if line.strip()]
    first = lines[0] if lines else type(error).__name__
    if "Traceback (most recent call last)" in text:
        raised = [line for line in lines if _PYTHON_ERROR_RE.match(line)]
        first = raised[0] if raised else first
    location = unquote(urlparse(checkpoint_uri(config)).path).rstrip("/")
    if location and f"{location}/" in first:
        return f"{first} [{RECOVERY}]"
    return first


def start_query(
    spark: SparkSession,
    config: SilverlineConfig,
    writer: Any,
    trigger: str | None = None,
    *,
    reset_checkpoint: bool = False,
) -> StreamingQuery:
    """Start the ingest query with ``writer`` as its foreachBatch function.

    Args:
        spark: The session.
        config: The job configuration.
        writer: A callable ``(batch_df, batch_id)`` with a ``query_id`` attribute.
        trigger: ``available-now`` or ``interval=<N>s`` (default: ``stream.trigger``).
        reset_checkpoint: First move the checkpoint aside (``--reset-checkpoint``): the query
            re-reads bronze from its first file and the ledger counts what was already applied.

    Returns:
        The running query.
    """
    if reset_checkpoint:
        move_checkpoint_aside(checkpoint_uri(config))
    ensure_local_dir(bronze_uri(config))
    trigger = trigger or config.stream.trigger
    gate = QueryIdGate()

    def run_batch(batch_df: DataFrame, batch_id: int) -> None:
        writer.query_id = gate.wait()
        writer(batch_df, batch_id)

    bronze_df = read_bronze(spark, config)
    events = deduplicated_events(bronze_df, config.stream.watermark_delay, config.group.bucket)
    stream = (
        events.writeStream.queryName(QUERY_NAME)
        .foreachBatch(run_batch)
        .option("checkpointLocation", checkpoint_uri(config))
    )
    if trigger == "available-now":
        stream = stream.trigger(availableNow=True)
    else:
        stream = stream.trigger(processingTime=trigger.removeprefix("interval=").replace("s", " seconds"))
    query = stream.start()
    gate.set(str(query.id))
    log.info("ingest query %s started (trigger %s, checkpoint %s)", query.id, trigger, checkpoint_uri(config))
    return query

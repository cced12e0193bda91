"""The batch writer's ops-table writes: each idempotent per batch id, so a replay rewrites its own rows."""

from __future__ import annotations

from collections.abc import Sequence
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from pyspark.sql import functions as F

from jobs.config import SilverlineConfig
from jobs.silver.conflicts import retry_on_conflict
from jobs.silver.fastappend import append_when_new
from jobs.silver.snapshots import SNAPSHOT_BATCH_ID, SNAPSHOT_QUERY_ID
from jobs.stream.accounting import BatchCounts
from jobs.stream.ops import MetricsSink, ops_table

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, Row, SparkSession

    from jobs.quality.results import FileStore
    from jobs.quality.verdicts import RowVerdicts

# The event columns carried by the retry, parked and quarantine tables (ops.EVENT_COLUMNS).
EVENT_FIELDS = (
    "bucket", "key", "tenant", "dataset", "event_kind", "event_name", "event_time", "sequencer",
    "version_id", "etag", "size", "event_id", "message_id", "received_at", "directive", "expect_event_id",
)  # fmt: skip


# Iceberg's refusal to drop a data file by a filter that matches only some of its rows.
_PARTIAL_FILE = "Cannot delete file where some, but not all, rows match filter"

# The retry table's ``last_error`` of events over their tenant's per-batch cap.
CAP_REASON = "over the tenant's cap (stream.max_files_per_tenant)"
# ... and of events whose table this batch id had already committed, in a run that did not hold them.
SKIPPED_REASON = "replayed batch: its table was already committed without this object"


class OpsWriter:
    """Writes the ops tables (retry, parked, rejected, quarantine, batch metrics) for a batch."""

    def __init__(
        self,
        spark: SparkSession,
        config: SilverlineConfig,
        metrics_sink: MetricsSink | None,
        results_store: FileStore | None = None,
    ) -> None:
        """Create the writer.

        Args:
            spark: The session.
            config: The job configuration.
            metrics_sink: Where the JSON-lines copy of the metrics goes (None: no copy).
            results_store: Where GE's result JSON files go (None: not written).
        """
        self.spark = spark
        self.config = config
        self.metrics_sink = metrics_sink
        self.results_store = results_store
        # The streaming query whose batch is written: a batch's rows are keyed by (query id,
        # batch id), so a new query (--reset-checkpoint) never replaces an old one's rows.
        self.query_id = "unknown"

    def rewrite_retry(
        self,
        failed: list[tuple[Row, str]],
        batch_id: int,
        counts: BatchCounts,
        waiting: Sequence[Row] = (),
        skipped: Sequence[Row] = (),
    ) -> None:
        """Park events out of attempts; replace the retry table with the rest (counts updated).

        Args:
            failed: Events whose tenant table's read or commit failed, with the error
                (``read failed: ...``, ``commit failed: ...``; one attempt more).
            batch_id: The batch id.
            counts: The batch's counts (``parked`` and ``deferred`` updated for ``failed``).
            waiting: Events over their tenant's cap (already counted ``deferred``; attempts kept).
            skipped: Events of tables this batch id had already committed without them
                (already counted ``deferred``; attempts kept).
        """
        retry_table = ops_table(self.config, "retry")
        parked = [(r, e) for r, e in failed if r["attempts"] + 1 >= self.config.stream.max_attempts]
        again = [(r, e) for r, e in failed if r["attempts"] + 1 < self.config.stream.max_attempts]
        counts.parked += len(parked)
        counts.deferred += len(again)
        if parked:
            rows = [
                (batch_id, r["attempts"] + 1, e, *[r[f] for f in EVENT_FIELDS], self.query_id)
                for r, e in parked
            ]
            self.replace_batch_rows("parked", rows, batch_id)
        if again or waiting or skipped or counts.retried_in:
            schema = self.spark.table(retry_table).schema
            rows = [(r["attempts"] + 1, e, *[r[f] for f in EVENT_FIELDS]) for r, e in again]
            rows += [(r["attempts"], CAP_REASON, *[r[f] for f in EVENT_FIELDS]) for r in waiting]
            rows += [(r["attempts"], SKIPPED_REASON, *[r[f] for f in EVENT_FIELDS]) for r in skipped]
            frame = self.spark.createDataFrame(rows, schema=schema)
            retry_on_conflict(lambda: frame.writeTo(retry_table).overwrite(F.lit(True)), retry_table)

    def write_held(self, items: Sequence[tuple[Row, str]], batch_id: int) -> None:
        """Record the batch's events of unknown, suspended or offboarded tenants (event, reason)."""
        if items:
            rows = [(batch_id, reason, *[r[f] for f in EVENT_FIELDS], self.query_id) for r, reason in items]
            self.replace_batch_rows("held", rows, batch_id)

    def held_events(self, tenants: Sequence[str], reasons: Sequence[str]) -> DataFrame:
        """Held events of ``tenants`` for ``reasons``, shaped like the retry table's (attempts 0)."""
        return (
            self.spark.table(ops_table(self.config, "held"))
            .filter(F.col("tenant").isin(list(tenants)) & F.col("reason").isin(list(reasons)))
            .select(*EVENT_FIELDS)
            .withColumn("attempts", F.lit(0))
        )

    def release_held(self, tenants: Sequence[str], reasons: Sequence[str]) -> None:
        """Delete the held events of ``tenants`` for ``reasons`` (they were applied in this batch)."""
        if tenants:
            names = ", ".join("'" + t.replace("'", "''") + "'" for t in tenants)
            kinds = ", ".join(f"'{r}'" for r in reasons)
            table = ops_table(self.config, "held")
            statement = f"DELETE FROM {table} WHERE tenant IN ({names}) AND reason IN ({kinds})"
            retry_on_conflict(lambda: self.spark.sql(statement), table)

    def replace_batch_rows(self, name: str, rows: Sequence[tuple[Any, ...]], batch_id: int) -> None:
        """Replace one batch's rows of an ops table (a replayed batch overwrites its own).

        Usually the table holds none of this batch's rows yet (its file metrics say so,
        without reading data): the rows are then appended metadata-only, with no Spark job
        (:func:`jobs.silver.fastappend.append_when_new`). A replay replaces them.
        """
        table = ops_table(self.config, name)
        mine = {"batch_id": int(batch_id), "query_id": self.query_id}
        properties = {SNAPSHOT_QUERY_ID: self.query_id, SNAPSHOT_BATCH_ID: str(batch_id)}
        if rows and append_when_new(self.spark, table, rows, [mine], properties):
            return
        frame = self.spark.createDataFrame(list(rows), schema=self.spark.table(table).schema)
        self._replace(table, frame, batch_id)

    def _replace(self, table: str, frame: DataFrame, batch_id: int) -> None:
        """Overwrite ``table``'s rows of this query's ``batch_id`` with ``frame`` (retried on conflicts).

        The fast path drops whole data files by the filter ``batch_id = <id> AND
        query_id = <query id>`` (rows of another query, or of a release that wrote no
        query id, are never replaced). Once
        ``silverline maintain`` has compacted an ops table, a data file may hold rows of
        several batches; then the batch's rows are deleted row by row and the new ones
        appended (two commits; a crash between them is repaired by the batch's replay).
        """
        query = self.query_id.replace("'", "''")
        mine = (F.col("batch_id") == F.lit(batch_id)) & (F.col("query_id") == F.lit(self.query_id))

        def write() -> None:
            try:
                frame.writeTo(table).overwrite(mine)
            except Exception as exc:
                if _PARTIAL_FILE not in str(exc):
                    raise
                where = f"batch_id = {int(batch_id)} AND query_id = '{query}'"
                self.spark.sql(f"DELETE FROM {table} WHERE {where}")
                frame.writeTo(table).append()

        retry_on_conflict(write, table)

    def write_rejected(self, batch_df: DataFrame, batch_id: int) -> None:
        """Keep the batch's rejected records with where to find their messages."""
        table = ops_table(self.config, "rejected")
        rejected = batch_df.filter(F.col("outcome") == "rejected").select(
            F.lit(batch_id).cast("bigint").alias("batch_id"),
            "message_id",
            F.col("record_index").cast("int"),
            "bronze_file",
            "envelope",
            "reason",
            "bucket",
            "key",
            "received_at",
            F.lit(self.query_id).alias("query_id"),
        )
        self._replace(table, rejected, batch_id)

    def write_quarantine(self, items: list[tuple[Row, str, str | None]], batch_id: int) -> None:
        """Record quarantined objects (event, reason, detail)."""
        if not items:
            return
        rows = [
            (batch_id, reason, detail, *[r[f] for f in EVENT_FIELDS], self.query_id)
            for r, reason, detail in items
        ]
        self.replace_batch_rows("quarantine", rows, batch_id)

    def write_validation(self, verdicts: Sequence[RowVerdicts], *, batch_id: int, query_id: str) -> None:
        """The batch's ``validation_results`` rows and GE's result JSON per validation call."""
        from jobs.quality.results import result_rows, write_result_json

        if not verdicts:
            return
        now = datetime.now(UTC)
        rows = [
            r
            for v in verdicts
            for r in result_rows(v, batch_id=batch_id, query_id=query_id, validated_at=now)
        ]
        self.replace_batch_rows("validation_results", [tuple(r) for r in rows], batch_id)
        if self.results_store is not None:
            for each in verdicts:
                write_result_json(self.results_store, each, query_id=query_id, batch_id=batch_id)

    def write_metrics(self, counts: BatchCounts) -> None:
        """The batch's row in ``batch_metrics`` and its JSON-lines copy."""
        self.replace_batch_rows("batch_metrics", [counts.as_row()], counts.batch_id)
        if self.metrics_sink is not None:
            self.metrics_sink.write(counts)

"""The job's own Iceberg tables (ledger, metrics, rejected, quarantine, parked, retry).

They live in the ops catalog (``<catalog>_ops``, warehouse ``<ops_root>tables/``),
outside every tenant prefix, so the job's writes never trigger tenant
notifications.
"""

from __future__ import annotations

import json
import logging
from typing import TYPE_CHECKING

from jobs.config import SilverlineConfig
from jobs.quality.results import VALIDATION_RESULTS_DDL
from jobs.session import ops_catalog_name
from jobs.storage import glue_database, ops_namespace

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

    from jobs.bridge.landing import BronzeStore
    from jobs.stream.accounting import BatchCounts

log = logging.getLogger(__name__)

# Columns every event-carrying ops table shares (one S3 event, as parsed). ``directive`` and
# ``expect_event_id`` are set on events a backfill or replay made (see jobs.requests).
EVENT_COLUMNS = """
    bucket STRING, key STRING, tenant STRING, dataset STRING, event_kind STRING, event_name STRING,
    event_time TIMESTAMP, sequencer STRING, version_id STRING, etag STRING, size BIGINT,
    event_id STRING, message_id STRING, received_at TIMESTAMP, directive STRING, expect_event_id STRING"""

TABLES: dict[str, str] = {
    # Last applied state per object: the guard against stale and duplicate events (R4, R5).
    "ledger": """
        bucket STRING, key STRING, tenant STRING, dataset STRING, state STRING,
        sequencer STRING, event_time TIMESTAMP, event_id STRING, etag STRING, version_id STRING,
        batch_id BIGINT, updated_at TIMESTAMP""",
    # One row per micro-batch: outcome counts that add up (R7), timings, freshness.
    "batch_metrics": """
        batch_id BIGINT, query_id STRING, started_at TIMESTAMP, finished_at TIMESTAMP,
        records_in BIGINT, retried_in BIGINT, applied BIGINT, duplicate BIGINT, stale BIGINT,
        ignored BIGINT, test BIGINT, parked BIGINT, quarantined BIGINT, rejected BIGINT,
        deferred BIGINT, tables_committed INT, tables_failed INT, files_read INT, rows_written BIGINT,
        freshness_p50_s DOUBLE, freshness_p95_s DOUBLE, details STRING, dropped BIGINT""",
    # What the stream's own operators did per batch: records removed by the watermark dedupe
    # never reach the batch writer, so they are counted here (from the query progress).
    "stream_progress": """
        batch_id BIGINT, query_id STRING, input_messages BIGINT, duplicates_dropped BIGINT,
        late_dropped BIGINT, reported_at TIMESTAMP""",
    # Records that could not be parsed or were unsafe, with where to find the message (R1, R7).
    "rejected": """
        batch_id BIGINT, message_id STRING, record_index INT, bronze_file STRING, envelope STRING,
        reason STRING, bucket STRING, key STRING, received_at TIMESTAMP, query_id STRING""",
    # Objects whose file could not be used, or that belong to no declared dataset.
    "quarantine": f"""
        batch_id BIGINT, reason STRING, detail STRING, {EVENT_COLUMNS}, query_id STRING""",
    # Events given up on after repeated commit failures; kept to be replayed.
    "parked": f"""
        batch_id BIGINT, attempts INT, reason STRING, {EVENT_COLUMNS}, query_id STRING""",
    # Events of unknown or suspended tenants (released when the tenant becomes active) and of
    # offboarded tenants (dropped; kept here to inspect), see jobs.tenants.gate.
    "held": f"""
        batch_id BIGINT, reason STRING, {EVENT_COLUMNS}, query_id STRING""",
    # Great-expectations results per batch, dataset, tenant and expectation (jobs.quality).
    "validation_results": VALIDATION_RESULTS_DDL,
    # Events whose tenant table failed to commit; joined into the next batches.
    "retry": f"""
        attempts INT, last_error STRING, {EVENT_COLUMNS}""",
}


def ops_table(config: SilverlineConfig, name: str) -> str:
    """Fully qualified name of an ops table.

    Args:
        config: The job configuration.
        name: One of :data:`TABLES`.

    Returns:
        ``<catalog>_ops.ops.<name>``.
    """
    if name not in TABLES:
        raise KeyError(f"unknown ops table {name!r}")
    return f"{ops_catalog_name(config)}.{ops_namespace(config)}.{name}"


def ensure_ops_tables(spark: SparkSession, config: SilverlineConfig) -> None:
    """Create the ops tables that do not exist yet (format v2, merge-on-read).

    Args:
        spark: The session.
        config: The job configuration.
    """
    spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {ops_catalog_name(config)}.{ops_namespace(config)}")
    if config.catalog.type == "glue":  # the group's database of tenant tables (single-level on Glue)
        database = f"`{config.catalog.name}`.`{glue_database(config.group.name)}`"
        spark.sql(f"CREATE NAMESPACE IF NOT EXISTS {database}")
    for name, columns in TABLES.items():
        if spark.catalog.tableExists(ops_table(config, name)):
            _add_missing_columns(spark, ops_table(config, name), columns)
            continue
        spark.sql(
            f"""CREATE TABLE IF NOT EXISTS {ops_table(config, name)} ({columns})
                USING iceberg
                TBLPROPERTIES ('format-version'='2', 'write.merge.mode'='merge-on-read',
                  'write.delete.mode'='merge-on-read', 'write.update.mode'='merge-on-read',
                  'commit.retry.num-retries'='10',
                  'write.metadata.delete-after-commit.enabled'='true',
                  'write.metadata.previous-versions-max'='50')"""
        )


def _add_missing_columns(spark: SparkSession, table: str, columns: str) -> None:
    """Ops tables of an older release gain the columns added since, at the end (in DDL order)."""
    have = {f.name for f in spark.table(table).schema.fields}
    wanted = [c.strip() for c in columns.replace("\n", " ").split(",") if c.strip()]
    missing = [c for c in wanted if c.split()[0] not in have]
    if missing:
        log.info("ops table %s: adding columns %s", table, ", ".join(missing))
        spark.sql(f"ALTER TABLE {table} ADD COLUMNS ({', '.join(missing)})")


def metrics_uri(config: SilverlineConfig) -> str:
    """Directory of the JSON-lines copy of the batch metrics: ``<ops_root>metrics/batches/``."""
    return f"{config.ops_root}metrics/batches/"


class MetricsSink:
    """Writes each batch's metrics as one JSON line, one file per batch.

    ``<ops_root>metrics/batches/query=<query id>/batch-<id>.jsonl`` (``retry-<id>``
    for retry passes): a replayed batch overwrites its own file, so the copy
    stays exact; read it with
    ``spark.read.json``, pandas or ``jq``. Losing a copy never fails a batch:
    the ``batch_metrics`` table is the record.
    """

    def __init__(self, store: BronzeStore) -> None:
        """Create the sink.

        Args:
            store: A whole-file store at :func:`metrics_uri`.
        """
        self._store = store

    @classmethod
    def for_config(cls, config: SilverlineConfig) -> MetricsSink:
        """The sink under a configuration's ops root."""
        from jobs.bridge.landing import open_store

        return cls(open_store(metrics_uri(config), config))

    def write(self, counts: BatchCounts) -> str | None:
        """Write one batch's metrics; returns the file's URI (None if the write failed)."""
        kind = "retry" if counts.batch_id < 0 else "batch"
        name = f"query={counts.query_id}/{kind}-{abs(counts.batch_id):020d}.jsonl"
        data = (json.dumps(counts.as_dict(), sort_keys=True) + "\n").encode("utf-8")
        try:
            return self._store.write(name, data)
        except Exception as exc:  # the ops table holds the same row; report and go on
            log.warning("could not write the JSON copy of batch %s metrics: %s", counts.batch_id, exc)
            return None

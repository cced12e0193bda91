"""Maintenance against real Iceberg tables: compacted ops tables, and compaction racing MERGE commits."""

from __future__ import annotations

import threading
from pathlib import Path
from typing import Any

import pytest

from jobs.config import SilverlineConfig, load_config

pytestmark = pytest.mark.spark


@pytest.fixture
def config(spark_lake: Path) -> SilverlineConfig:
    return load_config(
        None,
        environ={"SILVERLINE__MAINTENANCE__MIN_INPUT_FILES": "2"},
        overrides={"lake": {"root": str(spark_lake)}, "group": {"name": "maint"}},
    )


def test_a_replayed_batch_replaces_its_rows_in_a_compacted_ops_table(
    spark: Any, config: SilverlineConfig
) -> None:
    """Overwrite-by-filter cannot split a compacted file that holds several batches' rows."""
    from datetime import UTC, datetime

    from jobs.maintenance.tables import maintain_table
    from jobs.stream.ops import ensure_ops_tables, ops_table
    from jobs.stream.ops_writer import EVENT_FIELDS, OpsWriter

    table = ops_table(config, "held")
    spark.sql(f"DROP TABLE IF EXISTS {table}")  # the session's ops catalog is shared: start empty
    ensure_ops_tables(spark, config)
    writer = OpsWriter(spark, config, None)
    q = writer.query_id
    blank = (None,) * len(EVENT_FIELDS)
    for batch in (1, 2, 3):
        writer.replace_batch_rows("held", [(batch, f"first-{batch}", *blank, q)], batch)
    dry = maintain_table(spark, table, "ops", config.maintenance, now=datetime.now(UTC), dry_run=True)
    assert dry.ok and (dry.rewritten_files, dry.expired_snapshots, dry.orphans) == (0, 0, 0), dry
    report = maintain_table(
        spark, table, "ops", config.maintenance, steps=("compact",), now=datetime.now(UTC)
    )
    assert report.ok and report.rewritten_files >= 3 and report.added_files == 1, report

    writer.replace_batch_rows("held", [(2, "again-2a", *blank, q), (2, "again-2b", *blank, q)], 2)  # a replay
    writer.replace_batch_rows("held", [(None, None, *blank, q)], 4)  # the null row of a new batch
    rows = sorted((r["batch_id"] or 0, r["reason"] or "") for r in spark.table(table).collect())
    assert rows == [(0, ""), (1, "first-1"), (2, "again-2a"), (2, "again-2b"), (3, "first-3")]


def test_compaction_racing_merge_commits_loses_no_update(spark: Any, spark_lake: Path) -> None:
    """A writer thread MERGEs (merge-on-read: delete files) while maintenance compacts the table."""
    from datetime import UTC, datetime

    from jobs.maintenance.tables import maintain_table
    from jobs.silver.conflicts import retry_on_conflict

    settings = load_config(
        None,
        environ={
            "SILVERLINE__MAINTENANCE__MIN_INPUT_FILES": "2",
            "SILVERLINE__MAINTENANCE__DELETE_FILE_THRESHOLD": "1",
            "SILVERLINE__MAINTENANCE__EXPIRE_AFTER_HOURS": "0",
            "SILVERLINE__MAINTENANCE__RETAIN_LAST": "3",
        },
    ).maintenance
    table = "silverline.race.t"
    spark.sql(f"DROP TABLE IF EXISTS {table}")
    spark.sql(
        f"""CREATE TABLE {table} (k STRING, v INT) USING iceberg TBLPROPERTIES ('format-version'='2',
            'write.merge.mode'='merge-on-read', 'write.delete.mode'='merge-on-read',
            'write.update.mode'='merge-on-read', 'commit.retry.num-retries'='10')"""
    )
    spark.sql(f"INSERT INTO {table} VALUES ('a', 0), ('b', 0), ('c', 0), (NULL, NULL)")
    updates = 12
    done = threading.Event()
    reports: list[Any] = []

    def writer() -> None:
        try:
            for i in range(1, updates + 1):
                statement = (
                    f"MERGE INTO {table} t USING (SELECT '{'abc'[i % 3]}' AS k, {i} AS v) s ON t.k = s.k "
                    "WHEN MATCHED THEN UPDATE SET v = s.v WHEN NOT MATCHED THEN INSERT *"
                )
                retry_on_conflict(lambda statement=statement: spark.sql(statement), table)
        finally:
            done.set()

    thread = threading.Thread(target=writer)
    thread.start()
    while not done.is_set():
        reports.append(maintain_table(spark, table, "race", settings, now=datetime.now(UTC)))
    thread.join()
    reports.append(maintain_table(spark, table, "race", settings, now=datetime.now(UTC)))

    want = {"a": 12, "b": 10, "c": 11, None: None}  # the last update of each key (i % 3)
    assert {r["k"]: r["v"] for r in spark.table(table).collect()} == want
    assert spark.table(table).count() == 4
    assert sum(r.rewritten_files for r in reports) > 0
    assert reports[-1].ok, reports[-1].errors
    snapshots = spark.sql(f"SELECT count(*) AS n FROM {table}.snapshots").first()["n"]
    assert snapshots <= 3
    print(f"{len(reports)} maintenance runs; errors {[e for r in reports for e in r.errors]}")

"""The factory's session really runs Iceberg: a partitioned table, a MERGE, two readers."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from jobs.storage import silver_location, silver_table_name

pytestmark = pytest.mark.spark


def test_partitioned_table_merge_and_independent_read(spark: Any, spark_lake: Path) -> None:
    table = silver_table_name("silverline", "demo-lake", "acme", "orders")
    spark.sql(
        f"""CREATE TABLE {table} (
              order_id BIGINT, customer_id STRING, amount DECIMAL(12,2), order_ts TIMESTAMP,
              _source_key STRING)
            USING iceberg PARTITIONED BY (days(order_ts))
            TBLPROPERTIES ('format-version'='2')"""
    )
    spark.sql(
        f"""INSERT INTO {table} VALUES
            (1, 'c1', 10.50, TIMESTAMP '2024-03-01 10:00:00', 'acme/raw/orders/a.csv'),
            (2, 'c2', 20.00, TIMESTAMP '2024-03-02 11:00:00', 'acme/raw/orders/a.csv'),
            (3, NULL, NULL, TIMESTAMP '2024-03-02 12:00:00', 'acme/raw/orders/b.csv')"""
    )
    updates = spark.createDataFrame(
        [
            (2, "c2", Decimal("25.00"), dt.datetime(2024, 3, 2, 11), "acme/raw/orders/a.csv"),
            (4, "c4", Decimal("1.00"), dt.datetime(2024, 3, 3, 9), "acme/raw/orders/c.csv"),
        ],
        "order_id BIGINT, customer_id STRING, amount DECIMAL(12,2), order_ts TIMESTAMP, _source_key STRING",
    )
    updates.createOrReplaceTempView("updates")
    spark.sql(
        f"""MERGE INTO {table} t USING updates u ON t.order_id = u.order_id
            WHEN MATCHED THEN UPDATE SET *
            WHEN NOT MATCHED THEN INSERT *"""
    )
    rows = {r.order_id: (r.customer_id, r.amount) for r in spark.table(table).collect()}
    assert rows == {
        1: ("c1", Decimal("10.50")),
        2: ("c2", Decimal("25.00")),
        3: (None, None),
        4: ("c4", Decimal("1.00")),
    }
    partitions = {r.partition.order_ts_day for r in spark.sql(f"SELECT * FROM {table}.partitions").collect()}
    assert partitions == {dt.date(2024, 3, 1), dt.date(2024, 3, 2), dt.date(2024, 3, 3)}

    # The table sits in the tenant's silver prefix, and pyiceberg reads it without Spark.
    location = Path(silver_location(str(spark_lake) + "/", "demo-lake", "acme", "orders"))
    metadata = sorted((location / "metadata").glob("v*.metadata.json"))
    assert metadata, f"no Iceberg metadata under {location}"
    from pyiceberg.table import StaticTable

    arrow = StaticTable.from_metadata(str(metadata[-1])).scan().to_arrow()
    assert sorted(arrow.column("order_id").to_pylist()) == [1, 2, 3, 4]

"""Metadata-only appends: data files written from Arrow, one FastAppend, read back by Spark and pyiceberg."""

from __future__ import annotations

import datetime as dt
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.contracts import DatasetContract
from jobs.objects.fetch import file_uri_to_path
from jobs.silver.commit import TableChange, commit_change, ensure_table
from jobs.silver.fastappend import (
    parquet_compression,
    parquet_footer,
    put_local,
    supports,
    target_of,
    write_data_files,
    write_via_file_io,
)
from jobs.silver.snapshots import SNAPSHOT_BATCH_ID, SNAPSHOT_QUERY_ID, holds_no_rows, jvm_of
from jobs.storage import silver_location, silver_table_name
from tests.silver.test_silver import BUCKET, ORDERS, QUERY, SCHEMA, read_table
from tests.silver.test_silver import change as df_change
from tests.silver.test_silver import row as df_row

pytestmark = pytest.mark.spark

UTC = dt.UTC
ARROW = pa.schema(
    [
        ("order_id", pa.int64()),
        ("customer_id", pa.string()),
        ("amount", pa.decimal128(12, 2)),
        ("order_ts", pa.timestamp("us", tz="UTC")),
        ("_rescued", pa.string()),
        ("_source_bucket", pa.string()),
        ("_source_key", pa.string()),
        ("_source_version_id", pa.string()),
        ("_source_etag", pa.string()),
        ("_source_sequencer", pa.string()),
        ("_event_time", pa.timestamp("us", tz="UTC")),
        ("_ingest_time", pa.timestamp("us", tz="UTC")),
        ("_batch_id", pa.int64()),
    ]
)
EVENT = dt.datetime(2024, 3, 1, 10, 0, tzinfo=UTC)


def rows(specs: list[tuple[int, dt.datetime | None, str]]) -> pa.Table:
    """Rows of (order_id, order_ts, source key)."""
    records = [
        {
            "order_id": oid, "customer_id": f"c{oid}", "amount": Decimal("1.10") * oid, "order_ts": ts,
            "_rescued": None, "_source_bucket": BUCKET, "_source_key": key, "_source_version_id": "v1",
            "_source_etag": "e", "_source_sequencer": "00A1", "_event_time": EVENT, "_ingest_time": EVENT,
            "_batch_id": 7,
        }
        for oid, ts, key in specs
    ]  # fmt: skip
    return pa.Table.from_pylist(records, schema=ARROW)


def arrow_change(spark: Any, tenant: str, table: pa.Table) -> TableChange:
    """The change a task's data files make: the table created, ``table`` written as its files."""
    empty = TableChange(
        table=silver_table_name("silverline", BUCKET, tenant, "orders"),
        location=silver_location("file:///unused/", BUCKET, tenant, "orders"),
        contract=ORDERS,
        rows=None,
        replace_keys=[],
        files=(),
    )
    return files_change(spark, empty, table)


def files_change(
    spark: Any,
    empty: TableChange,
    table: pa.Table,
    *,
    keys: list[str] | None = None,
) -> TableChange:
    ensure_table(spark, empty)
    target = target_of(spark, empty.table)
    files = write_data_files(table, target, put_local)
    return TableChange(**{**empty.__dict__, "files": files, "target": target, "replace_keys": keys or []})


def data_files(spark: Any, table: str) -> list[Any]:
    return spark.sql(
        f"SELECT partition, record_count, file_path, lower_bounds, upper_bounds FROM {table}.files"
    ).collect()


def test_appended_files_follow_the_partition_spec_and_read_back_exactly(spark: Any, spark_lake: Path) -> None:
    day = dt.datetime(2024, 3, 1, 23, 59, 59, 999999, tzinfo=UTC)
    before_1970 = dt.datetime(1969, 12, 31, 23, 0, tzinfo=UTC)
    table = rows(
        [(1, day, "t/raw/orders/a.csv"), (2, day + dt.timedelta(microseconds=1), "t/raw/orders/a.csv"),
         (3, None, "t/raw/orders/b.csv"), (4, before_1970, "t/raw/orders/b.csv"),
         (5, day, "t/raw/orders/b.csv")]
    )  # fmt: skip
    change = arrow_change(spark, "fast-days", table)
    result = commit_change(spark, change, batch_id=7, query_id=QUERY)

    assert (result.status, result.rows_written) == ("committed", 5)
    files = data_files(spark, change.table)
    by_day = {str(f["partition"]["order_ts_day"]): f["record_count"] for f in files}
    assert by_day == {"2024-03-01": 2, "2024-03-02": 1, "None": 1, "1969-12-31": 1}
    assert all("/data/order_ts_day=" in f["file_path"] for f in files)
    assert all(f["lower_bounds"] for f in files)  # Iceberg read each footer's column metrics
    # Spark prunes by those partitions and metrics: only the one row of 2 March.
    march_2 = spark.sql(f"SELECT order_id FROM {change.table} WHERE order_ts >= '2024-03-02'").collect()
    assert [r["order_id"] for r in march_2] == [2]
    # pyiceberg, reading the metadata alone, gets every value back as written.
    back = read_table(spark_lake, "fast-days").scan().to_arrow().sort_by("order_id")
    assert back.select(ARROW.names).cast(ARROW).to_pylist() == table.to_pylist()
    snapshot = read_table(spark_lake, "fast-days").current_snapshot()
    assert snapshot is not None and snapshot.summary is not None
    assert snapshot.summary[SNAPSHOT_BATCH_ID] == "7" and snapshot.summary[SNAPSHOT_QUERY_ID] == QUERY


def test_the_commit_takes_each_files_metrics_from_the_footer_its_writer_sent(spark: Any) -> None:
    table = rows(
        [(5, EVENT, "t/raw/orders/a.csv"), (1, EVENT, "t/raw/orders/a.csv"), (3, EVENT, "t/raw/orders/b.csv")]
    )
    change = arrow_change(spark, "fast-footers", table)
    [written] = change.files
    assert written.footer is not None
    # The commit must not read the file: on S3 that would be one GET per file.
    Path(file_uri_to_path(written.path)).write_bytes(b"\0" * written.size)
    result = commit_change(spark, change, batch_id=7, query_id=QUERY)

    assert (result.status, result.rows_written) == ("committed", 3)
    [metrics] = spark.sql(
        "SELECT record_count, readable_metrics.order_id.lower_bound AS low, "
        "readable_metrics.order_id.upper_bound AS high, readable_metrics._rescued.null_value_count AS nulls "
        f"FROM {change.table}.files"
    ).collect()
    assert (metrics["record_count"], metrics["low"], metrics["high"], metrics["nulls"]) == (3, 1, 5, 3)


@pytest.mark.unit
def test_a_parquet_footer_is_cut_from_a_whole_file_and_anything_else_is_refused() -> None:
    sink = pa.BufferOutputStream()
    pq.write_table(pa.table({"a": [1, 2]}), sink)
    data = sink.getvalue().to_pybytes()
    footer = parquet_footer(data)
    assert data.endswith(footer + len(footer).to_bytes(4, "little") + b"PAR1")
    with pytest.raises(ValueError, match="not a Parquet file"):
        parquet_footer(b"PAR1" + b"\0" * 20)
    with pytest.raises(ValueError, match="exceeds the file"):
        parquet_footer(b"PAR1" + b"\0" * 4 + (1000).to_bytes(4, "little") + b"PAR1")


def test_a_replayed_fast_append_is_skipped_and_a_later_merge_replaces_its_rows(spark: Any) -> None:
    first = arrow_change(
        spark, "fast-replay", rows([(1, EVENT, "t/raw/orders/a.csv"), (2, EVENT, "t/raw/orders/b.csv")])
    )
    assert commit_change(spark, first, batch_id=3, query_id=QUERY).status == "committed"
    again = commit_change(spark, first, batch_id=3, query_id=QUERY)
    assert (again.status, again.rows_written) == ("skipped_replay", 2)
    # An overwrite of a.csv goes through MERGE: it deletes the fast-appended row of a.csv.
    replaced = commit_change(
        spark,
        df_change(spark, "fast-replay", [df_row(10, "t/raw/orders/a.csv")], ["t/raw/orders/a.csv"]),
        batch_id=4,
        query_id=QUERY,
    )
    assert replaced.status == "committed"
    left = spark.sql(f"SELECT order_id, _source_key FROM {first.table} ORDER BY order_id").collect()
    assert [(r["order_id"], r["_source_key"]) for r in left] == [
        (2, "t/raw/orders/b.csv"),
        (10, "t/raw/orders/a.csv"),
    ]


def jobs_run_by(spark: Any, work: Any) -> tuple[Any, list[int]]:
    """``work()``'s result and the Spark jobs it ran (in this thread's job group)."""
    context = spark.sparkContext
    group = f"probe-{id(work)}"
    context.setJobGroup(group, "probe")
    try:
        result = work()
    finally:
        context.setLocalProperty("spark.jobGroup.id", None)  # type: ignore[arg-type]
    return result, list(context.statusTracker().getJobIdsForGroup(group))


def summary_of(spark: Any, table: str) -> dict[str, str]:
    spark.catalog.refreshTable(table)
    found = spark.sql(f"SELECT operation, summary FROM {table}.snapshots ORDER BY committed_at").collect()
    return {"operation": found[-1]["operation"], **found[-1]["summary"]}


A, B, C = "t/raw/orders/a.csv", "t/raw/orders/b.csv", "t/raw/orders/c.csv"
DAY2 = EVENT + dt.timedelta(days=1)


def test_objects_in_files_of_their_own_are_replaced_and_removed_by_metadata_alone(
    spark: Any, spark_lake: Path
) -> None:
    """Objects that came to the table alone (one per batch) are in files of their own."""
    first = arrow_change(spark, "own-files", rows([(1, EVENT, A), (2, DAY2, A)]))
    assert commit_change(spark, first, batch_id=1, query_id=QUERY).status == "committed"
    empty = TableChange(**{**first.__dict__, "files": ()})
    second = files_change(spark, empty, rows([(3, EVENT, B)]))
    assert commit_change(spark, second, batch_id=2, query_id=QUERY).status == "committed"
    assert len(data_files(spark, first.table)) == 3  # a.csv in two partitions, b.csv

    new_a = files_change(spark, empty, rows([(10, EVENT, A)]), keys=[A])
    result, jobs = jobs_run_by(spark, lambda: commit_change(spark, new_a, batch_id=3, query_id=QUERY))

    assert (result.status, result.rows_written, jobs) == ("committed", 1, [])
    summary = summary_of(spark, first.table)
    assert (summary["operation"], summary["deleted-data-files"], summary["added-data-files"]) == (
        "overwrite",
        "2",
        "1",
    )
    assert "added-delete-files" not in summary  # no position deletes: the old files are gone whole
    removed, jobs = jobs_run_by(
        spark, lambda: commit_change(spark, TableChange(**{**new_a.__dict__, "files": (), "replace_keys": [B]}),
                                     batch_id=4, query_id=QUERY)
    )  # fmt: skip
    assert (removed.status, jobs) == ("committed", [])
    left = spark.sql(f"SELECT order_id, _source_key FROM {first.table}").collect()
    assert sorted((r["order_id"], r["_source_key"]) for r in left) == [(10, A)]
    assert {
        (r["order_id"], r["_source_key"])
        for r in read_table(spark_lake, "own-files")
        .scan()
        .to_arrow()
        .select(["order_id", "_source_key"])
        .to_pylist()
    } == {(10, A)}  # type: ignore[misc]


def test_a_replacement_whose_old_rows_share_a_file_is_a_merge_of_the_written_files(spark: Any) -> None:
    first = arrow_change(spark, "shared-files", rows([(1, EVENT, A), (2, EVENT, B), (3, EVENT, C)]))
    assert commit_change(spark, first, batch_id=1, query_id=QUERY).status == "committed"
    assert len(data_files(spark, first.table)) == 1  # a, b and c share one file

    empty = TableChange(**{**first.__dict__, "files": ()})
    new_a = files_change(spark, empty, rows([(10, EVENT, A), (11, DAY2, A)]), keys=[A, C])
    written = [Path(file_uri_to_path(f.path)) for f in new_a.files]
    assert all(path.exists() for path in written)
    result = commit_change(spark, new_a, batch_id=2, query_id=QUERY)

    assert result.status == "committed"
    left = spark.sql(f"SELECT order_id, _source_key FROM {first.table}").collect()
    assert sorted((r["order_id"], r["_source_key"]) for r in left) == [(2, B), (10, A), (11, A)]
    in_table = {Path(file_uri_to_path(f["file_path"])) for f in data_files(spark, first.table)}
    assert not any(path.exists() or path in in_table for path in written)  # rewritten by the MERGE, removed


def test_a_fast_append_into_a_table_of_other_partitions_and_a_missing_column_is_refused(spark: Any) -> None:
    hourly = DatasetContract.model_validate(
        {
            "name": "orders",
            "format": "csv",
            "columns": [
                {"name": "order_id", "type": "bigint"},
                {"name": "order_ts", "type": "timestamp"},
                {"name": "snapshot_date", "type": "date"},
            ],
            "partition_by": ["hours(order_ts)", "snapshot_date"],
        }
    )
    name = silver_table_name("silverline", BUCKET, "fast-hours", "orders")
    spark.sql(
        f"CREATE TABLE {name} (order_id bigint, order_ts timestamp, snapshot_date date, _batch_id bigint) "
        "USING iceberg PARTITIONED BY (hours(order_ts), snapshot_date)"
    )
    ts = dt.datetime(2024, 3, 1, 10, 30, tzinfo=UTC)
    table = pa.table(
        {
            "order_id": pa.array([1, 2, 3], pa.int64()),
            "order_ts": pa.array([ts, ts + dt.timedelta(hours=1), ts], pa.timestamp("us", tz="UTC")),
            "snapshot_date": pa.array([dt.date(2024, 3, 1), dt.date(2024, 3, 1), None], pa.date32()),
            "_batch_id": pa.array([1, 1, 1], pa.int64()),
        }
    )
    empty = TableChange(
        table=name, location="file:///unused/", contract=hourly, rows=None, replace_keys=[], files=()
    )
    change = files_change(spark, empty, table)
    assert commit_change(spark, change, batch_id=1, query_id=QUERY).status == "committed"
    parts = {
        (f["partition"]["order_ts_hour"], str(f["partition"]["snapshot_date"])): f["record_count"]
        for f in data_files(spark, name)
    }
    hour = int(ts.timestamp() // 3600)
    assert parts == {(hour, "2024-03-01"): 1, (hour + 1, "2024-03-01"): 1, (hour, "None"): 1}
    with pytest.raises(ValueError, match="no column 'not_in_table'"):  # named; nothing written
        files_change(spark, empty, table.append_column("not_in_table", pa.array(["x"] * 3)))
    assert spark.sql(f"SELECT count(*) AS n FROM {name}").first()["n"] == 3


def test_only_supported_contracts_take_the_fast_path_and_changes_hold_one_kind_of_rows(spark: Any) -> None:
    assert supports(ORDERS)
    for partition_by in (["bucket(16, order_id)"], ["months(order_ts)"], ["order_ts"], ["amount"]):
        contract = ORDERS.model_copy(update={"partition_by": tuple(partition_by)})
        assert not supports(contract), partition_by
    with pytest.raises(ValueError, match="not both"):
        TableChange(table="t", location="l", contract=ORDERS, rows=None, replace_keys=[])
    with pytest.raises(ValueError, match="only for silver tables"):
        TableChange(
            table="t", location="l", contract=ORDERS, rows=None, replace_keys=[], files=(), zone="quarantine"
        )
    assert SCHEMA  # the DataFrame path's schema is the same table's
    codec = "write.parquet.compression-codec"
    assert (parquet_compression({}), parquet_compression({codec: "UNCOMPRESSED"})) == ("zstd", "none")
    with pytest.raises(ValueError, match="no-such-codec"):  # as the table's own writers would fail
        parquet_compression({codec: "no-such-codec"})


def test_a_tables_target_is_what_icebergs_own_objects_say(spark: Any) -> None:
    # target_of reads the schema and spec as Iceberg's JSON; the field-by-field Java calls are
    # the reference. An evolved spec (id 1), a nested source column, bucket and truncate
    # transforms, a data path and codec set as properties.
    name = silver_table_name("silverline", BUCKET, "fast-target", "orders")
    spark.sql(
        f"CREATE TABLE {name} (order_id bigint, amount decimal(12,2), order_ts timestamp, "
        "customer string, day date, address struct<city: string, zip: int>) USING iceberg "
        "PARTITIONED BY (days(order_ts), bucket(4, customer)) TBLPROPERTIES ("
        "'write.data.path'='file:///elsewhere/data/', 'write.parquet.compression-codec'='snappy')"
    )
    spark.sql(f"ALTER TABLE {name} ADD PARTITION FIELD truncate(3, customer)")
    spark.sql(f"ALTER TABLE {name} ADD PARTITION FIELD address.city")

    target = target_of(spark, name)

    iceberg = jvm_of(spark).org.apache.iceberg.spark.Spark3Util.loadIcebergTable(spark._jsparkSession, name)
    schema, spec = iceberg.schema(), iceberg.spec()
    java_fields = tuple((str(f.name()), int(f.fieldId()), str(f.type())) for f in schema.columns())
    assert target.fields == (*java_fields[:5], ("address", 6, "struct"))  # a nested type: its kind
    assert target.partition == tuple(
        (str(f.name()), str(schema.findColumnName(f.sourceId())), str(f.transform())) for f in spec.fields()
    )
    assert target.partition[2:] == (("customer_trunc_3", "customer", "truncate[3]"),
                                    ("address.city", "address.city", "identity"))  # fmt: skip
    assert target.fields[1] == ("amount", 2, "decimal(12, 2)")
    assert (target.spec_id, target.data_location, target.compression) == (
        2,
        "file:///elsewhere/data",
        "snappy",
    )


def test_the_table_file_io_writes_what_it_is_given(spark: Any, tmp_path: Path) -> None:
    name = silver_table_name("silverline", BUCKET, "fast-io", "orders")
    spark.sql(f"CREATE TABLE {name} (x int) USING iceberg")
    iceberg = jvm_of(spark).org.apache.iceberg.spark.Spark3Util.loadIcebergTable(spark._jsparkSession, name)
    data = bytes(range(256)) * 40_000  # 10 MB: more than one chunk through the gateway
    target = tmp_path / "sub" / "blob.bin"
    write_via_file_io(iceberg, target.as_uri(), data)
    assert target.read_bytes() == data


def test_an_empty_table_is_known_from_its_snapshot_summary(spark: Any) -> None:
    from pyspark.sql import functions as F

    name = silver_table_name("silverline", BUCKET, "summary-empty", "retry")
    spark.sql(
        f"CREATE TABLE {name} (x int) USING iceberg TBLPROPERTIES ('format-version'='2', "
        "'write.delete.mode'='merge-on-read')"
    )
    assert holds_no_rows(spark, name)  # no snapshot yet
    spark.sql(f"INSERT INTO {name} VALUES (1), (2)")
    assert not holds_no_rows(spark, name)
    spark.sql(f"DELETE FROM {name} WHERE x = 1")  # a delete file: the data file still counts
    assert not holds_no_rows(spark, name)
    spark.table(name).limit(0).writeTo(name).overwrite(F.lit(True))  # as the retry table is emptied
    assert holds_no_rows(spark, name)
    assert spark.table(name).count() == 0

"""Silver commits: one MERGE = one snapshot that replaces/deletes objects' rows, read back by pyiceberg."""

from __future__ import annotations

import datetime as dt
import logging
from concurrent.futures import ThreadPoolExecutor
from decimal import Decimal
from pathlib import Path
from typing import Any

import pytest

from jobs.contracts import DatasetContract
from jobs.silver.commit import (
    KEY_METRICS,
    LINEAGE_COLUMNS,
    TableChange,
    commit_change,
    commit_changes,
    create_table_sql,
    silver_ddl,
)
from jobs.silver.snapshots import SNAPSHOT_BATCH_ID, SNAPSHOT_QUERY_ID
from jobs.storage import silver_location, silver_table_name

pytestmark = pytest.mark.spark

BUCKET = "silver-lake"
QUERY = "q-5f1c"
ORDERS = DatasetContract.model_validate(
    {
        "name": "orders",
        "format": "csv",
        "columns": [
            {"name": "order_id", "type": "bigint", "nullable": False},
            {"name": "customer_id", "type": "string"},
            {"name": "amount", "type": "decimal(12,2)"},
            {"name": "order_ts", "type": "timestamp"},
        ],
        "partition_by": ["days(order_ts)"],
    }
)
SCHEMA = (
    "order_id bigint, customer_id string, amount decimal(12,2), order_ts timestamp, _rescued string, "
    "_source_bucket string, "
    "_source_key string, _source_version_id string, _source_etag string, _source_sequencer string, "
    "_event_time timestamp, _ingest_time timestamp, _batch_id bigint"
)
TS = dt.datetime(2024, 3, 1, 10, 0)


def row(order_id: int | None, key: str, *, customer: str | None = "c", amount: str | None = "1.00") -> tuple:
    """One silver row of object ``<tenant>/raw/orders/<key>`` (lineage included)."""
    return (
        order_id, customer, Decimal(amount) if amount else None, TS + dt.timedelta(days=(order_id or 0) % 3),
        None, BUCKET, key, "v1", "etag", "00A1", TS, TS, 1,
    )  # fmt: skip


def change(spark: Any, tenant: str, rows: list[tuple], keys: list[str], schema: str = SCHEMA) -> TableChange:
    return TableChange(
        table=silver_table_name("silverline", BUCKET, tenant, "orders"),
        location=silver_location("file:///unused/", BUCKET, tenant, "orders"),
        contract=ORDERS,
        rows=spark.createDataFrame(rows, schema),
        replace_keys=keys,
    )


def metadata_files(lake: Path, tenant: str) -> list[Path]:
    folder = Path(silver_location(f"{lake}/", BUCKET, tenant, "orders")) / "metadata"
    return sorted(folder.glob("v*.metadata.json"), key=lambda p: int(p.name[1:].split(".")[0]))


def read_table(lake: Path, tenant: str) -> Any:
    """The table as pyiceberg sees it from its latest metadata file (no Spark)."""
    from pyiceberg.table import StaticTable

    return StaticTable.from_metadata(str(metadata_files(lake, tenant)[-1]))


def contents(lake: Path, tenant: str) -> set[tuple]:
    arrow = read_table(lake, tenant).scan(
        selected_fields=("order_id", "customer_id", "amount", "_source_key")
    )
    return {
        (r["order_id"], r["customer_id"], r["amount"], r["_source_key"]) for r in arrow.to_arrow().to_pylist()
    }


def test_create_sql_uses_location_only_when_asked(spark: Any) -> None:
    sql = create_table_sql(change(spark, "t-sql", [], ["k"]), with_location=True)
    assert "PARTITIONED BY (days(order_ts))" in sql
    assert "LOCATION 'file:///unused/silver-lake/t-sql/silver/orders'" in sql
    assert "LOCATION" not in create_table_sql(change(spark, "t-sql", [], ["k"]), with_location=False)


def test_first_commit_creates_a_partitioned_v2_table_with_lineage(spark: Any, spark_lake: Path) -> None:
    rows = [row(1, "a.csv"), row(2, "a.csv", customer=None, amount=None), row(3, "b.csv")]
    result = commit_change(
        spark, change(spark, "t-create", rows, ["a.csv", "b.csv"]), batch_id=1, query_id=QUERY
    )

    assert (result.status, result.rows_written, result.keys_replaced, result.error) == (
        "committed",
        3,
        2,
        None,
    )
    table = read_table(spark_lake, "t-create")
    assert table.metadata.format_version == 2
    assert [(f.name, str(f.transform)) for f in table.spec().fields] == [("order_ts_day", "day")]
    assert table.schema().find_field(table.spec().fields[0].source_id).name == "order_ts"
    # All optional: the contract's NOT NULL (order_id) is a data-quality check, not DDL.
    assert [(f.name, str(f.field_type), f.required) for f in table.schema().fields] == [
        ("order_id", "long", False),
        ("customer_id", "string", False),
        ("amount", "decimal(12, 2)", False),
        ("order_ts", "timestamptz", False),
        ("_rescued", "string", False),
        ("_source_bucket", "string", False),
        ("_source_key", "string", False),
        ("_source_version_id", "string", False),
        ("_source_etag", "string", False),
        ("_source_sequencer", "string", False),
        ("_event_time", "timestamptz", False),
        ("_ingest_time", "timestamptz", False),
        ("_batch_id", "long", False),
    ]
    assert [name for name, _ in LINEAGE_COLUMNS] == [f.name for f in table.schema().fields[5:]]
    assert silver_ddl(ORDERS).startswith("`order_id` bigint, `customer_id` string")
    assert table.properties["write.merge.mode"] == "merge-on-read"
    assert int(table.properties["commit.retry.num-retries"]) >= 10
    assert contents(spark_lake, "t-create") == {
        (1, "c", Decimal("1.00"), "a.csv"),
        (2, None, None, "a.csv"),
        (3, "c", Decimal("1.00"), "b.csv"),
    }
    assert result.snapshot_id == table.current_snapshot().snapshot_id


def test_one_commit_replaces_and_deletes_objects_in_one_snapshot(spark: Any, spark_lake: Path) -> None:
    tenant = "t-replace"
    first = [
        row(1, "a.csv"),
        row(2, "a.csv"),
        row(3, "a.csv"),
        row(4, "b.csv"),
        row(5, "c.csv"),
        row(6, "c.csv"),
    ]
    commit_change(
        spark, change(spark, tenant, first, ["a.csv", "b.csv", "c.csv"]), batch_id=1, query_id=QUERY
    )
    before = {s.snapshot_id for s in read_table(spark_lake, tenant).snapshots()}

    # a.csv replaced by 2 new rows (one all-None but the key), c.csv removed, b.csv untouched.
    new_a = [row(10, "a.csv", customer="new"), row(None, "a.csv", customer=None, amount=None)]
    result = commit_change(
        spark, change(spark, tenant, new_a, ["a.csv", "c.csv"]), batch_id=2, query_id=QUERY
    )

    table = read_table(spark_lake, tenant)
    new = [s for s in table.snapshots() if s.snapshot_id not in before]
    assert len(new) == 1
    assert new[0].snapshot_id == result.snapshot_id == table.current_snapshot().snapshot_id
    summary = new[0].summary.additional_properties
    assert (summary[SNAPSHOT_QUERY_ID], summary[SNAPSHOT_BATCH_ID]) == (QUERY, "2")
    assert (result.status, result.rows_written, result.keys_replaced) == ("committed", 2, 2)
    assert contents(spark_lake, tenant) == {
        (4, "c", Decimal("1.00"), "b.csv"),
        (10, "new", Decimal("1.00"), "a.csv"),
        (None, None, None, "a.csv"),
    }

    # A delete-only change (no rows) removes exactly that object's rows.
    empty = commit_change(spark, change(spark, tenant, [], ["b.csv"]), batch_id=3, query_id=QUERY)
    assert (empty.status, empty.rows_written) == ("committed", 0)
    assert contents(spark_lake, tenant) == {
        (10, "new", Decimal("1.00"), "a.csv"),
        (None, None, None, "a.csv"),
    }


def test_a_replacement_reads_only_the_data_files_that_can_hold_its_objects(
    spark: Any, spark_lake: Path
) -> None:
    """A MERGE scans the files whose ``_source_key`` bounds can hold a replaced object, not the table.

    The files of other months' objects are moved away during the replacement: a MERGE that
    opened any of them fails. Keys share far more than Iceberg's default 16 bound characters.
    """
    tenant = "t-prune"
    prefix = f"{tenant}/raw/orders/uploads/2026/"
    for month in (1, 2, 3):
        rows = [row(month * 10 + i, f"{prefix}0{month}/o{i}.csv") for i in range(3)]
        keys = sorted({r[6] for r in rows})
        commit_change(spark, change(spark, tenant, rows, keys), batch_id=month, query_id=QUERY)
    import pyarrow.parquet as pq

    hidden = []
    for task in read_table(spark_lake, tenant).scan().plan_files():
        path = Path(task.file.file_path.removeprefix("file:"))
        keys = set(pq.read_table(path, columns=["_source_key"])["_source_key"].to_pylist())
        if all(not key.startswith(f"{prefix}03/") for key in keys):
            hidden.append((path, path.with_name(path.name + ".away")))
    assert len(hidden) >= 2
    for path, away in hidden:
        path.rename(away)

    result = commit_change(
        spark,
        change(spark, tenant, [row(99, f"{prefix}03/o1.csv", customer="new")], [f"{prefix}03/o1.csv"]),
        batch_id=4,
        query_id=QUERY,
    )

    for path, away in hidden:
        away.rename(path)
    assert (result.status, result.error) == ("committed", None)
    got = contents(spark_lake, tenant)
    assert {k for _, _, _, k in got} == {f"{prefix}0{m}/o{i}.csv" for m in (1, 2, 3) for i in range(3)}
    assert {(o, c) for o, c, _, k in got if k == f"{prefix}03/o1.csv"} == {(99, "new")}
    assert len(got) == 9


def test_a_table_made_without_exact_key_bounds_gets_them_at_its_next_replacement(
    spark: Any, spark_lake: Path
) -> None:
    tenant = "t-old-props"
    commit_change(spark, change(spark, tenant, [row(1, "a.csv")], []), batch_id=1, query_id=QUERY)  # append
    name = silver_table_name("silverline", BUCKET, tenant, "orders")
    spark.sql(f"ALTER TABLE {name} UNSET TBLPROPERTIES ('{KEY_METRICS}')")  # as a table made before
    assert KEY_METRICS not in read_table(spark_lake, tenant).properties

    commit_change(spark, change(spark, tenant, [row(2, "a.csv")], ["a.csv"]), batch_id=2, query_id=QUERY)

    assert read_table(spark_lake, tenant).properties[KEY_METRICS] == "full"
    assert contents(spark_lake, tenant) == {(2, "c", Decimal("1.00"), "a.csv")}
    # Known to this process from then on: a later replacement does not look it up again.
    spark.sql(f"ALTER TABLE {name} UNSET TBLPROPERTIES ('{KEY_METRICS}')")
    commit_change(spark, change(spark, tenant, [row(3, "a.csv")], ["a.csv"]), batch_id=3, query_id=QUERY)
    assert KEY_METRICS not in read_table(spark_lake, tenant).properties
    assert contents(spark_lake, tenant) == {(3, "c", Decimal("1.00"), "a.csv")}


def test_replayed_batch_is_skipped_and_noop_commits_nothing(spark: Any, spark_lake: Path) -> None:
    tenant = "t-replay"
    first = commit_change(
        spark, change(spark, tenant, [row(1, "a.csv")], ["a.csv"]), batch_id=7, query_id=QUERY
    )
    versions = len(metadata_files(spark_lake, tenant))

    replay = commit_change(
        spark, change(spark, tenant, [row(1, "a.csv")], ["a.csv"]), batch_id=7, query_id=QUERY
    )
    assert (replay.status, replay.snapshot_id) == ("skipped_replay", first.snapshot_id)
    other_query = commit_change(spark, change(spark, tenant, [], ["x.csv"]), batch_id=7, query_id="q-other")
    assert other_query.status == "committed"  # same batch id, different query: not a replay
    versions += 1

    noop = commit_change(spark, change(spark, tenant, [], []), batch_id=8, query_id=QUERY)
    assert (noop.status, noop.snapshot_id) == ("noop", None)
    assert len(metadata_files(spark_lake, tenant)) == versions
    assert len(read_table(spark_lake, tenant).snapshots()) == 2
    assert contents(spark_lake, tenant) == {(1, "c", Decimal("1.00"), "a.csv")}

    # Rows of objects new to the table and no keys to replace: a plain append, one snapshot.
    appended = commit_change(spark, change(spark, tenant, [row(2, "b.csv")], []), batch_id=9, query_id=QUERY)
    assert (appended.status, appended.rows_written) == ("committed", 1)
    assert len(read_table(spark_lake, tenant).snapshots()) == 3
    assert contents(spark_lake, tenant) == {
        (1, "c", Decimal("1.00"), "a.csv"),
        (2, "c", Decimal("1.00"), "b.csv"),
    }
    again = commit_change(spark, change(spark, tenant, [row(2, "b.csv")], []), batch_id=9, query_id=QUERY)
    assert again.status == "skipped_replay"  # an append is recognised as a replay too

    # Caller mistakes are refused instead of racing rows.
    with pytest.raises(ValueError, match="more than one change per table"):
        commit_changes(
            spark,
            [change(spark, tenant, [], ["a"]), change(spark, tenant, [], ["b"])],
            batch_id=9,
            query_id=QUERY,
        )
    assert len(read_table(spark_lake, tenant).snapshots()) == 3


def test_concurrent_commits_isolate_a_failing_table(spark: Any, spark_lake: Path, caplog: Any) -> None:
    tenants = [f"t-conc-{i}" for i in range(6)]
    changes = [change(spark, t, [row(i, f"{t}.csv")], [f"{t}.csv"]) for i, t in enumerate(tenants)]
    bad_schema = SCHEMA.replace("amount decimal(12,2)", "amount array<string>")
    bad_row = (3, "c", ["x"], *row(3, "bad.csv")[3:])
    changes[3] = change(spark, tenants[3], [bad_row], ["bad.csv"], schema=bad_schema)

    with caplog.at_level(logging.INFO, logger="jobs.silver.commit"):
        results = commit_changes(spark, changes, batch_id=4, query_id=QUERY, max_workers=4)

    assert [r.table for r in results] == [c.table for c in changes]
    assert [r.status for r in results] == ["committed"] * 3 + ["failed"] + ["committed"] * 2
    assert results[3].error and "\n" not in results[3].error and results[3].snapshot_id is None
    for i, tenant in enumerate(tenants):
        if i == 3:
            continue
        assert contents(spark_lake, tenant) == {(i, "c", Decimal("1.00"), f"{tenant}.csv")}
        summary = read_table(spark_lake, tenant).current_snapshot().summary.additional_properties
        assert summary[SNAPSHOT_BATCH_ID] == "4"
    assert sorted(
        r.getMessage().split(":")[0] for r in caplog.records if r.name == "jobs.silver.commit"
    ) == sorted(f"silver {c.table}" for c in changes)
    print(f"\nfailed table's error: {results[3].error}")


def test_snapshot_properties_stay_with_their_thread(spark: Any, spark_lake: Path) -> None:
    """CommitMetadata is a JVM thread-local: concurrent commits must not swap batch ids."""
    tenants = [f"t-iso-{i}" for i in range(4)]

    def commit(i: int) -> Any:
        one = change(spark, tenants[i], [row(i, "a.csv")], ["a.csv"])
        return commit_change(spark, one, batch_id=100 + i, query_id=f"q-{i}")

    with ThreadPoolExecutor(max_workers=4) as pool:
        results = list(pool.map(commit, range(4)))

    assert [r.status for r in results] == ["committed"] * 4
    for i, tenant in enumerate(tenants):
        summary = read_table(spark_lake, tenant).current_snapshot().summary.additional_properties
        assert (summary[SNAPSHOT_QUERY_ID], summary[SNAPSHOT_BATCH_ID]) == (f"q-{i}", str(100 + i))


Q_SCHEMA = SCHEMA.replace(
    "_rescued string, ",
    "_rescued string, _row_number int, _raw string, _failed_expectations array<string>, "
    "_quarantine_reason string, ",
)


def bad_row(order_id: int | None, key: str, row_number: int, failed: list[str]) -> tuple:
    good = row(order_id, key)
    return (*good[:5], row_number, None, failed, "failed_expectations", *good[5:])


def quarantine_rows(lake: Path, tenant: str) -> list[tuple]:
    from pyiceberg.table import StaticTable

    folder = Path(silver_location(f"{lake}/", BUCKET, tenant, "orders", "quarantine")) / "metadata"
    latest = max(folder.glob("v*.metadata.json"), key=lambda p: int(p.name[1:].split(".")[0]))
    arrow = StaticTable.from_metadata(str(latest)).scan().to_arrow()
    found = [
        (r["order_id"], r["_source_key"], r["_row_number"], tuple(r["_failed_expectations"]))
        for r in arrow.to_pylist()
    ]
    return sorted(found, key=repr)


def with_quarantine(
    spark: Any, tenant: str, good: list[tuple], bad: list[tuple], keys: list[str]
) -> TableChange:
    silver = change(spark, tenant, good, keys)
    rejected = TableChange(
        table=silver_table_name("silverline", BUCKET, tenant, "orders", "quarantine"),
        location=silver_location("file:///unused/", BUCKET, tenant, "orders", "quarantine"),
        contract=ORDERS,
        rows=spark.createDataFrame(bad, Q_SCHEMA),
        replace_keys=[],
        zone="quarantine",
    )
    return TableChange(**{**silver.__dict__, "quarantine": rejected})


def test_rejected_rows_are_logged_once_even_when_the_batch_is_retried(spark: Any, spark_lake: Path) -> None:
    tenant = "t-quarantine"
    bad = [bad_row(None, "a.csv", 2, ["expect_column_values_to_not_be_null(order_id)"])]
    first = commit_change(
        spark, with_quarantine(spark, tenant, [row(1, "a.csv")], bad, []), batch_id=1, query_id=QUERY
    )
    assert first.status == "committed"
    # The same object version again under another batch id (a retry): nothing is logged twice,
    # while a row of a new version of the object is.
    newer = [*bad, bad_row(7, "a.csv", 3, ["primary_key_unique"])]
    newer[1] = (*newer[1][:-4], "etag-2", *newer[1][-3:])
    again = commit_change(
        spark, with_quarantine(spark, tenant, [row(1, "a.csv")], newer, ["a.csv"]), batch_id=2, query_id=QUERY
    )
    assert again.status == "committed"
    assert quarantine_rows(spark_lake, tenant) == [
        (7, "a.csv", 3, ("primary_key_unique",)),
        (None, "a.csv", 2, ("expect_column_values_to_not_be_null(order_id)",)),
    ]
    assert contents(spark_lake, tenant) == {(1, "c", Decimal("1.00"), "a.csv")}


def test_a_failing_quarantine_commit_stops_the_silver_commit(spark: Any, spark_lake: Path) -> None:
    tenant = "t-quarantine-fails"
    spark.sql(
        f"CREATE TABLE {silver_table_name('silverline', BUCKET, tenant, 'orders', 'quarantine')} "
        "(order_id INT, note STRING) USING iceberg"  # incompatible: every insert into it fails
    )
    bad = [bad_row(None, "a.csv", 2, ["x"])]
    [result] = commit_changes(
        spark, [with_quarantine(spark, tenant, [row(1, "a.csv")], bad, [])], batch_id=1, query_id=QUERY
    )
    assert result.status == "failed"
    assert result.error is not None and "quarantine table" in result.error
    assert metadata_files(spark_lake, tenant) == []  # the silver table was never created

"""Schema evolution: contracts may add columns and widen types; anything else stops startup."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

import pytest

from jobs.contracts import DatasetContract
from jobs.silver import evolution
from jobs.silver.evolution import (
    ColumnChange,
    SchemaEvolutionError,
    contracts_fingerprint,
    evolve_tables,
    is_widening,
    last_check,
    plan_table,
    record_check,
)

LINEAGE = [
    ("_source_bucket", "string"), ("_source_key", "string"), ("_source_version_id", "string"),
    ("_source_etag", "string"), ("_source_sequencer", "string"), ("_event_time", "timestamp"),
    ("_ingest_time", "timestamp"), ("_batch_id", "bigint"),
]  # fmt: skip


def contract(*columns: tuple[str, str, bool]) -> DatasetContract:
    return DatasetContract.model_validate(
        {
            "name": "orders",
            "format": "csv",
            "columns": [{"name": n, "type": t, "nullable": nullable} for n, t, nullable in columns],
        }
    )


V1 = contract(("order_id", "bigint", False), ("amount", "decimal(12,2)", True), ("qty", "int", True))
TABLE_V1 = [
    ("order_id", "bigint"),
    ("amount", "decimal(12,2)"),
    ("qty", "int"),
    ("_rescued", "string"),
    *LINEAGE,
]


@pytest.mark.unit
def test_an_unchanged_contract_plans_nothing() -> None:
    assert plan_table("t", V1, "silver", TABLE_V1) == []


@pytest.mark.unit
def test_added_columns_and_widened_types_are_planned_in_contract_order() -> None:
    v2 = contract(
        ("order_id", "bigint", False), ("amount", "decimal(18,2)", True), ("qty", "bigint", True),
        ("channel", "string", True),
    )  # fmt: skip
    # A table from before _rescued existed gets it too.
    old_table = [c for c in TABLE_V1 if c[0] != "_rescued"]
    assert plan_table("t", v2, "silver", old_table) == [
        ColumnChange("t", "amount", "widen", "decimal(18,2)"),
        ColumnChange("t", "qty", "widen", "bigint"),
        ColumnChange("t", "channel", "add", "string"),
        ColumnChange("t", "_rescued", "add", "string"),
    ]
    assert (
        ColumnChange("t", "channel", "add", "string").sql() == "ALTER TABLE t ADD COLUMNS (`channel` string)"
    )
    assert ColumnChange("t", "qty", "widen", "bigint").sql() == "ALTER TABLE t ALTER COLUMN `qty` TYPE bigint"


@pytest.mark.unit
def test_spark_type_spellings_are_the_contract_spellings() -> None:
    spark_spelled = [("order_id", "long"), ("amount", "decimal(12, 2)"), ("qty", "integer"), *TABLE_V1[3:]]
    assert plan_table("t", V1, "silver", spark_spelled) == []


@pytest.mark.unit
@pytest.mark.parametrize(
    ("old", "new", "ok"),
    [
        ("int", "bigint", True),
        ("float", "double", True),
        ("decimal(12,2)", "decimal(18,2)", True),
        ("bigint", "int", False),
        ("decimal(12,2)", "decimal(12,4)", False),
        ("decimal(18,2)", "decimal(12,2)", False),
        ("string", "int", False),
        ("int", "string", False),
    ],
)
def test_widening_rule(old: str, new: str, ok: bool) -> None:
    assert is_widening(old, new) is ok


@pytest.mark.unit
def test_a_narrowed_type_names_dataset_column_and_fix() -> None:
    narrowed = contract(("order_id", "int", False), ("amount", "decimal(12,2)", True), ("qty", "int", True))
    with pytest.raises(SchemaEvolutionError) as err:
        plan_table("cat.b.acme.silver.orders", narrowed, "silver", TABLE_V1)
    message = str(err.value)
    assert "dataset 'orders'" in message and "'order_id'" in message
    assert "bigint in existing table" in message and "declare 'order_id' as bigint again" in message


@pytest.mark.unit
def test_a_dropped_required_column_names_dataset_column_and_fix() -> None:
    dropped = contract(("amount", "decimal(12,2)", True), ("qty", "int", True))
    with pytest.raises(SchemaEvolutionError, match=r"column 'order_id' .* put 'order_id' back"):
        plan_table("t", dropped, "silver", TABLE_V1)
    required_gone = contract(("order_id", "bigint", False), ("amount", "decimal(12,2)", True))
    with pytest.raises(SchemaEvolutionError, match="column 'qty'"):
        plan_table("t", required_gone, "silver", TABLE_V1)


@pytest.mark.unit
def test_quarantine_tables_are_planned_with_their_own_columns() -> None:
    table = [*TABLE_V1[:4], ("_row_number", "int"), ("_raw", "string"),
             ("_failed_expectations", "array<string>"), ("_quarantine_reason", "string"), *LINEAGE]  # fmt: skip
    assert plan_table("q", V1, "quarantine", table) == []
    with pytest.raises(SchemaEvolutionError, match="_row_number"):
        plan_table("t", V1, "silver", table)


@pytest.mark.spark
def _must_not_scan(*args: Any) -> Any:
    raise AssertionError("the tables were scanned although the contracts did not change")


def test_startup_adds_a_column_in_place_old_rows_read_null_data_files_untouched(
    spark: Any, spark_lake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """A contract change adds a column to existing tenant tables without rewriting data."""
    from pyiceberg.table import StaticTable

    from jobs.config import load_config

    bucket = "evolve-lake"
    table = f"silverline.`{bucket}`.acme.silver.orders"
    columns = ", ".join(f"`{n}` {t}" for n, t in TABLE_V1)
    spark.sql(f"CREATE TABLE {table} ({columns}) USING iceberg")
    values = {"order_id": "1", "amount": "2.50", "qty": "3"}
    select = ", ".join(f"CAST({values.get(n, 'NULL')} AS {t}) AS `{n}`" for n, t in TABLE_V1)
    spark.sql(f"INSERT INTO {table} SELECT {select}")
    files_before = sorted(r["file_path"] for r in spark.sql(f"SELECT file_path FROM {table}.files").collect())

    config = load_config(
        None, environ={}, overrides={"lake": {"root": str(spark_lake)}, "group": {"bucket": bucket}}
    )
    v2 = contract(
        ("order_id", "bigint", False), ("amount", "decimal(12,2)", True), ("qty", "int", True),
        ("channel", "string", True),
    )  # fmt: skip
    changes = evolve_tables(spark, config, {"orders": v2})

    assert [(c.column, c.action) for c in changes] == [("channel", "add")]
    assert [r.asDict() for r in spark.sql(f"SELECT order_id, channel FROM {table}").collect()] == [
        {"order_id": 1, "channel": None}
    ]
    files_after = sorted(r["file_path"] for r in spark.sql(f"SELECT file_path FROM {table}.files").collect())
    assert files_after == files_before
    metadata = sorted(
        (spark_lake / bucket / "acme" / "silver" / "orders" / "metadata").glob("v*.metadata.json")
    )
    latest = max(metadata, key=lambda p: int(p.name[1:].split(".")[0]))
    assert "channel" in [f.name for f in StaticTable.from_metadata(str(latest)).schema().fields]
    marker = json.loads((spark_lake / "_ops" / config.group.name / "schema-checks" / "last.json").read_text())
    assert marker == {"fingerprint": contracts_fingerprint(config, {"orders": v2}), "tables": 1, "changes": 1}
    # Run again with the same contracts: the tables are not even listed.
    monkeypatch.setattr(evolution, "existing_tables", _must_not_scan)
    assert evolve_tables(spark, config, {"orders": v2}) == []
    monkeypatch.undo()
    # Back to the old contract: checked again, and the column the tables gained is refused as dropped.
    with pytest.raises(SchemaEvolutionError, match="channel"):
        evolve_tables(spark, config, {"orders": V1})
    # A narrowing is refused and changes nothing.
    narrowed = contract(("order_id", "int", False), ("amount", "decimal(12,2)", True), ("qty", "int", True),
                        ("channel", "string", True))  # fmt: skip
    with pytest.raises(SchemaEvolutionError, match="order_id"):
        evolve_tables(spark, config, {"orders": narrowed})
    assert spark.table(table).schema["order_id"].dataType.simpleString() == "bigint"


def test_a_local_lake_lists_its_tables_from_disk_as_the_catalog_does(
    spark: Any, spark_lake: Any, monkeypatch: pytest.MonkeyPatch
) -> None:
    """Tenants with raw objects only cost no catalog calls; the listing equals the catalog's."""
    from jobs.config import load_config
    from jobs.silver.evolution import existing_tables, tables_on_disk

    bucket = "listing-lake"
    columns = ", ".join(f"`{n}` {t}" for n, t in TABLE_V1)
    for tenant, zone in (("acme", "silver"), ("acme", "quarantine"), ("globex", "silver")):
        spark.sql(f"CREATE TABLE silverline.`{bucket}`.{tenant}.{zone}.orders ({columns}) USING iceberg")
    for tenant in ("initech", "umbrella"):  # raw objects, no table yet
        raw = spark_lake / bucket / tenant / "raw" / "orders" / "2024"
        raw.mkdir(parents=True)
        (raw / "a.csv").write_text("order_id\n1\n")
    (spark_lake / bucket / "umbrella" / "silver" / "orders" / "metadata").mkdir(
        parents=True
    )  # no metadata file

    expected = [
        ("acme", "quarantine", "orders"),
        ("acme", "silver", "orders"),
        ("globex", "silver", "orders"),
    ]
    assert tables_on_disk(spark_lake, bucket) == expected
    assert sorted(existing_tables(spark, "silverline", bucket)) == expected
    config = load_config(
        None, environ={}, overrides={"lake": {"root": str(spark_lake)}, "group": {"bucket": bucket}}
    )
    monkeypatch.setattr(evolution, "existing_tables", _must_not_scan)
    changes = evolve_tables(spark, config, {"orders": V1})
    # Found from disk: the quarantine table (made with silver's columns here) gains its own.
    assert {c.table for c in changes} == {f"`silverline`.`{bucket}`.`acme`.`quarantine`.`orders`"}
    marker = json.loads((spark_lake / "_ops" / config.group.name / "schema-checks" / "last.json").read_text())
    assert marker["tables"] == 3


def test_glue_style_discovery_finds_the_tables_of_the_pairs_in_the_ledger(
    spark: Any, spark_lake: Any
) -> None:
    """With one database per group, existing tables are found from the ledger's (tenant, dataset) pairs."""
    import datetime as dt

    from jobs.config import load_config
    from jobs.silver.evolution import tables_in_ledger
    from jobs.stream.ops import ensure_ops_tables, ops_table

    bucket = "ledger-lake"
    config = load_config(
        None, environ={}, overrides={"lake": {"root": str(spark_lake)}, "group": {"bucket": bucket}}
    )
    ensure_ops_tables(spark, config)
    columns = ", ".join(f"`{n}` {t}" for n, t in TABLE_V1)
    for tenant, zone in (("acme", "silver"), ("acme", "quarantine"), ("globex", "silver")):
        spark.sql(f"CREATE TABLE silverline.`{bucket}`.{tenant}.{zone}.orders ({columns}) USING iceberg")
    now = dt.datetime(2026, 11, 1)
    rows = [
        (bucket, f"{t}/raw/{d}/{i}.csv", t, d, "live", None, now, f"e{i}", None, None, 1, now)
        for i, (t, d) in enumerate(
            [("acme", "orders"), ("acme", "orders"), ("globex", "orders"), ("initech", "clicks")]
        )
    ]
    rows.append(
        ("other-bucket", "zed/raw/orders/1.csv", "zed", "orders", "live", None, now, "z", None, None, 1, now)
    )
    schema = spark.table(ops_table(config, "ledger")).schema
    spark.createDataFrame(rows, schema).writeTo(ops_table(config, "ledger")).append()

    assert tables_in_ledger(spark, config) == [
        ("acme", "silver", "orders"),
        ("acme", "quarantine", "orders"),
        ("globex", "silver", "orders"),
    ]  # initech has ledger rows but no table; zed belongs to another bucket


@pytest.mark.unit
def test_the_check_marker_is_best_effort(tmp_path: Path, caplog: pytest.LogCaptureFixture) -> None:
    """A marker that cannot be read means a full check; one that cannot be written only a warning."""
    from jobs.config import load_config

    config = load_config(None, environ={}, overrides={"lake": {"root": str(tmp_path / "lake")}})
    assert last_check(config) is None  # none yet
    record_check(config, "abc", tables=3, changes=0)
    assert last_check(config) == "abc"
    marker = tmp_path / "lake" / "_ops" / config.group.name / "schema-checks" / "last.json"
    marker.write_text("{not json")
    assert last_check(config) is None
    assert "cannot read" in caplog.text
    blocked = load_config(None, environ={}, overrides={"lake": {"root": str(tmp_path / "file")}})
    (tmp_path / "file").write_text("a file where the ops root's directory would be")
    record_check(blocked, "abc", tables=0, changes=0)  # does not raise
    assert "cannot record it" in caplog.text
    assert last_check(blocked) is None

"""``silverline quality report`` and ``quality check`` on hand-built Iceberg tables and suites.

The ops table ``validation_results`` and the tenants' quarantine tables are written
with pyiceberg alone (hadoop layout), with counts chosen by hand; the report's pass
rates and its choice of examples are checked against numbers worked out by hand.
"""

from __future__ import annotations

import datetime as dt
import shutil
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest
import yaml

from jobs.cli import build_parser, main

pytestmark = pytest.mark.unit

PROJECT = Path(__file__).resolve().parents[2]
AMOUNT = "expect_column_values_to_be_between(amount)"
CURRENCY = "expect_column_values_to_be_in_set(currency)"
PAGE = "expect_column_values_to_match_regex(page)"
T0 = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)

RESULTS_SCHEMA = pa.schema(
    [
        ("batch_id", pa.int64()),
        ("query_id", pa.string()),
        ("dataset", pa.string()),
        ("suite", pa.string()),
        ("tenant", pa.string()),
        ("expectation", pa.string()),
        ("expectation_type", pa.string()),
        ("column_name", pa.string()),
        ("kwargs", pa.string()),
        ("rows_checked", pa.int64()),
        ("rows_failed", pa.int64()),
        ("success", pa.bool_()),
        ("validated_at", pa.timestamp("us", tz="UTC")),
    ]
)
QUARANTINE_SCHEMA = pa.schema(
    [
        ("order_id", pa.int64()),
        ("amount", pa.decimal128(12, 2)),
        ("currency", pa.string()),
        ("_rescued", pa.string()),
        ("_row_number", pa.int32()),
        ("_raw", pa.string()),
        ("_failed_expectations", pa.list_(pa.string())),
        ("_quarantine_reason", pa.string()),
        ("_source_key", pa.string()),
    ]
)


def write_iceberg(table_dir: Path | str, rows: pa.Table, properties: dict[str, str] | None = None) -> None:
    """A table in the hadoop layout (``metadata/vN.metadata.json``), one append, pyiceberg only."""
    from pyiceberg.catalog import Catalog
    from pyiceberg.catalog.noop import NoopCatalog
    from pyiceberg.io import load_file_io
    from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC
    from pyiceberg.serializers import ToOutputFile
    from pyiceberg.table import CommitTableResponse, Table
    from pyiceberg.table.metadata import new_table_metadata
    from pyiceberg.table.sorting import UNSORTED_SORT_ORDER
    from pyiceberg.table.update import update_table_metadata

    class HadoopLayoutCatalog(NoopCatalog):
        def commit_table(self, table: Any, requirements: Any, updates: Any) -> CommitTableResponse:
            metadata = update_table_metadata(table.metadata, updates)
            version = int(Path(table.metadata_location).name.split(".")[0][1:]) + 1
            location = f"{metadata.location}/metadata/v{version}.metadata.json"
            ToOutputFile.table_metadata(metadata, table.io.new_output(location))
            return CommitTableResponse(metadata=metadata, metadata_location=location)

    schema = Catalog._convert_schema_if_needed(rows.schema)
    location = str(table_dir)
    metadata = new_table_metadata(schema, UNPARTITIONED_PARTITION_SPEC, UNSORTED_SORT_ORDER, location, {})
    first = f"{location}/metadata/v1.metadata.json"
    io = load_file_io(properties or {}, location=location)
    ToOutputFile.table_metadata(metadata, io.new_output(first))
    Table(("t",), metadata, first, io, HadoopLayoutCatalog("test")).append(rows)


def result(
    batch: int, tenant: str, dataset: str, expectation: str, checked: int, failed: int, minute: int = 0
) -> dict[str, Any]:
    return {
        "batch_id": batch,
        "query_id": "q1",
        "dataset": dataset,
        "suite": dataset,
        "tenant": tenant,
        "expectation": expectation,
        "expectation_type": expectation.split("(")[0],
        "column_name": expectation.split("(")[1].rstrip(")") if "(" in expectation else None,
        "kwargs": "{}",
        "rows_checked": checked,
        "rows_failed": failed,
        "success": failed == 0,
        "validated_at": T0 + dt.timedelta(minutes=batch + minute),
    }


# Batch 1: acme orders 6 rows, 3 quarantined; globex orders 5 rows, none.
# Batch 2: acme orders 4 rows, 2 quarantined; acme clicks 3 rows, 1; globex orders 3 rows, 1 (conversion).
# Batch 2 of acme orders was replayed (written twice): it counts once.
RESULTS = [
    result(1, "acme", "orders", "*", 6, 3),
    result(1, "acme", "orders", AMOUNT, 6, 2),
    result(1, "acme", "orders", CURRENCY, 6, 2),
    result(1, "globex", "orders", "*", 5, 0),
    result(1, "globex", "orders", AMOUNT, 5, 0),
    result(2, "acme", "orders", "*", 4, 2),
    result(2, "acme", "orders", AMOUNT, 4, 2),
    result(2, "acme", "orders", CURRENCY, 4, 0),
    result(2, "acme", "orders", "*", 4, 2, minute=5),
    result(2, "acme", "orders", AMOUNT, 4, 2, minute=5),
    result(2, "acme", "clicks", "*", 3, 1),
    result(2, "acme", "clicks", PAGE, 3, 1),
    result(2, "globex", "orders", "*", 3, 1),
    result(2, "globex", "orders", "conversion(amount)", 3, 1),
]


def quarantined(
    order_id: int, amount: str | None, currency: str, failed: list[str], row: int, raw: str | None = None
) -> dict[str, Any]:
    from decimal import Decimal

    return {
        "order_id": order_id,
        "amount": None if amount is None else Decimal(amount),
        "currency": currency,
        "_rescued": None,
        "_row_number": row,
        "_raw": raw,
        "_failed_expectations": failed,
        "_quarantine_reason": "bad_rows",
        "_source_key": f"k/{order_id}.csv",
    }


def write_lake(root: str, ops_root: str, properties: dict[str, str] | None = None) -> None:
    """The results table and two quarantine tables under ``root`` (a path or an ``s3://`` URI)."""
    write_iceberg(
        f"{ops_root}tables/ops/validation_results",
        pa.Table.from_pylist(RESULTS, schema=RESULTS_SCHEMA),
        properties,
    )
    acme = [
        quarantined(11, "-3.00", "EUR", [AMOUNT], 4),
        quarantined(12, "-9.00", "ZZZ", [AMOUNT, CURRENCY], 7),
        quarantined(13, "1.00", "QQQ", [CURRENCY], 1),
        quarantined(14, "2000000.00", "EUR", [AMOUNT], 2),
        quarantined(15, "-1.00", "EUR", [AMOUNT], 3),
    ]
    globex = [quarantined(21, None, "EUR", ["conversion(amount)"], 0, raw='{"amount": "12,50"}')]
    for tenant, rows in (("acme", acme), ("globex", globex)):
        write_iceberg(
            f"{root}demo-lake/{tenant}/quarantine/orders",
            pa.Table.from_pylist(rows, schema=QUARANTINE_SCHEMA),
            properties,
        )


@pytest.fixture
def lake(tmp_path: Path) -> tuple[Path, Path]:
    """(config file, lake dir) with the results and quarantine tables in place."""
    lake_dir = tmp_path / "lake"
    write_lake(f"{lake_dir}/", f"{lake_dir}/_ops/demo/")
    config = tmp_path / "quality.yaml"
    config.write_text(
        yaml.safe_dump({"group": {"name": "demo", "bucket": "demo-lake"}, "lake": {"root": str(lake_dir)}})
    )
    return config, lake_dir


def cli(*argv: str) -> int:
    args = build_parser().parse_args(list(argv))
    code: int = args.func(args)
    return code


def table_rows(out: str) -> list[list[str]]:
    """The cells of every rich table row in ``out``."""
    lines = [line.replace("┃", "│").strip() for line in out.splitlines()]
    return [[c.strip() for c in line.strip("│").split("│")] for line in lines if line.count("│") >= 4]


@pytest.fixture
def s3_lake(tmp_path: Path, moto_endpoint: str) -> Path:
    """The same tables in moto's S3 (lake and ops root in two buckets), and a config for them."""
    import boto3

    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    for bucket in ("report-lake", "report-ops"):
        s3.create_bucket(Bucket=bucket)
    properties = {"s3.endpoint": moto_endpoint, "s3.region": "us-east-1"}
    properties |= {"s3.access-key-id": "testing", "s3.secret-access-key": "testing"}
    write_lake("s3://report-lake/", "s3://report-ops/demo/", properties)
    config = tmp_path / "quality-s3.yaml"
    data = {
        "group": {"name": "demo", "bucket": "demo-lake"},
        "lake": {"root": "s3://report-lake/", "ops_root": "s3://report-ops/demo/"},
        "aws": {"endpoint_url": moto_endpoint, "region": "us-east-1"},
    }
    config.write_text(yaml.safe_dump(data))
    return config


@pytest.mark.parametrize("where", ["local", "s3"])
def test_report_prints_exact_pass_rates_top_failures_and_examples(
    where: str,
    request: pytest.FixtureRequest,
    capsys: pytest.CaptureFixture[str],
    monkeypatch: pytest.MonkeyPatch,
) -> None:
    monkeypatch.setenv("COLUMNS", "220")
    config = request.getfixturevalue("lake")[0] if where == "local" else request.getfixturevalue("s3_lake")
    assert cli("quality", "report", "--config", str(config)) == 0
    out = capsys.readouterr().out
    assert table_rows(out) == [
        ["tenant", "dataset", "rows checked", "rows failed", "pass rate"],
        ["acme", "clicks", "3", "1", "66.67%"],
        ["acme", "orders", "10", "5", "50.00%"],
        ["globex", "orders", "8", "1", "87.50%"],
    ]
    ranked = [line for line in out.splitlines() if line[:3] in ("1. ", "2. ", "3. ", "4. ", "5. ")]
    assert ranked == [
        f"1. orders: {AMOUNT} — 4 rows in 1 tenant",
        f"2. orders: {CURRENCY} — 2 rows in 1 tenant",
        f"3. clicks: {PAGE} — 1 row in 1 tenant",
        "4. orders: conversion(amount) — 1 row in 1 tenant",
    ]
    examples = out.split(ranked[0])[1].split(ranked[1])[0]
    assert [line.split()[:4] for line in examples.strip().splitlines()[1:]] == [
        ["acme", "k/11.csv", "4", "amount=-3.00"],
        ["acme", "k/12.csv", "7", "amount=-9.00"],
        ["acme", "k/14.csv", "2", "amount=2000000.00"],
    ]
    assert "(no example found in the quarantine tables)" in out.split(ranked[2])[1].split(ranked[3])[0]
    assert 'amount=∅ raw={"amount": "12,50"}' in out.split(ranked[3])[1]


def test_report_filters_by_tenant_and_dataset_and_limits_the_top(
    lake: tuple[Path, Path], capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv("COLUMNS", "220")
    config, _ = lake
    assert (
        cli(
            "quality",
            "report",
            "--config",
            str(config),
            "--tenant",
            "acme",
            "--dataset",
            "orders",
            "--top",
            "1",
        )
        == 0
    )
    out = capsys.readouterr().out
    assert table_rows(out)[1:] == [["acme", "orders", "10", "5", "50.00%"]]
    assert f"1. orders: {AMOUNT} — 4 rows in 1 tenant" in out and "2. " not in out
    assert cli("quality", "report", "--config", str(config), "--tenant", "nobody") == 0
    assert "No validation results yet for tenant 'nobody' in" in capsys.readouterr().out


def test_report_without_results_and_with_bad_config(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"lake": {"root": str(tmp_path / "empty")}}))
    assert cli("quality", "report", "--config", str(config)) == 0
    out = capsys.readouterr().out
    assert out.startswith("No validation results yet in ") and "validation_results" in out
    config.write_text(yaml.safe_dump({"lake": {"root": str(tmp_path), "nonsense": 1}}))
    assert main(["quality", "report", "--config", str(config)]) == 2
    assert "lake.nonsense" in capsys.readouterr().err


def test_check_loads_every_suite_the_contracts_name(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    doc = yaml.safe_load((PROJECT / "conf" / "datasets.yaml").read_text())
    for name, body in doc["datasets"].items():
        body["expectations"] = name
    (tmp_path / "datasets.yaml").write_text(yaml.safe_dump(doc))
    shutil.copytree(PROJECT / "conf" / "expectations", tmp_path / "expectations")
    config = tmp_path / "c.yaml"
    config.write_text(yaml.safe_dump({"stream": {"datasets_file": str(tmp_path / "datasets.yaml")}}))
    assert cli("quality", "check", "--config", str(config)) == 0
    assert capsys.readouterr().out == (
        f"3 expectation suite(s) in {tmp_path / 'expectations'} load and fit their datasets: "
        "clicks, inventory, orders\n"
    )
    doc["datasets"]["clicks"]["expectations"] = "orders"
    (tmp_path / "datasets.yaml").write_text(yaml.safe_dump(doc))
    assert main(["quality", "check", "--config", str(config)]) == 2
    assert "dataset 'clicks': expectation suite" in capsys.readouterr().err

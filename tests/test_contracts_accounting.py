"""Dataset contracts and batch accounting: validation and the R7 arithmetic."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

import pytest

from jobs.config import ConfigError
from jobs.contracts import load_contracts
from jobs.stream.accounting import BatchCounts, freshness_percentiles

pytestmark = pytest.mark.unit
PROJECT = Path(__file__).resolve().parents[1]


def test_shipped_demo_datasets() -> None:
    contracts = load_contracts(PROJECT / "conf" / "datasets.yaml")
    assert sorted(contracts) == ["clicks", "inventory", "orders"]
    assert contracts["orders"].format == "csv"
    assert contracts["orders"].partition_by == ("days(order_ts)",)
    assert contracts["clicks"].partition_by == ("hours(ts)",)
    assert contracts["inventory"].column_names == ("sku", "warehouse", "qty", "snapshot_date")
    assert "amount decimal(12,2)" in contracts["orders"].ddl_columns()


@pytest.mark.parametrize(
    ("body", "message"),
    [
        ("datasets:\n  x:\n    format: xml\n    columns: [{name: a, type: string}]\n", "format"),
        ("datasets:\n  x:\n    format: csv\n    columns: [{name: a, type: varchar}]\n", "unsupported type"),
        ("datasets:\n  x:\n    format: csv\n    columns: [{name: a, type: int}]\n    partition_by: [days(b)]\n",
         "unknown column 'b'"),
        ("datasets:\n  x:\n    format: csv\n    columns: [{name: a, type: int}, {name: a, type: int}]\n", "duplicate"),
        ("datasets: {}\n", "at least one dataset"),
    ],
)  # fmt: skip
def test_invalid_contracts_are_named(tmp_path: Path, body: str, message: str) -> None:
    path = tmp_path / "d.yaml"
    path.write_text(body, encoding="utf-8")
    with pytest.raises(ConfigError, match=message):
        load_contracts(path)


def counts() -> BatchCounts:
    return BatchCounts(batch_id=3, query_id="q", started_at=dt.datetime(2024, 1, 1, tzinfo=dt.UTC))


def test_balanced_only_when_outcomes_add_up_to_records_in_plus_retried() -> None:
    c = counts()
    c.records_in, c.retried_in = 10, 2
    for outcome, n in (
        ("applied", 4),
        ("duplicate", 2),
        ("stale", 1),
        ("ignored", 1),
        ("rejected", 1),
        ("deferred", 2),
    ):
        c.add(outcome, n)
    assert c.outcomes_total == 11
    assert not c.balanced
    c.add("quarantined", 1)
    assert c.balanced
    assert "[balanced]" in c.summary()


def test_outcomes_named_with_a_tenant_table_are_also_counted_per_table() -> None:
    c = counts()
    c.add("applied", 2, tenant="acme", dataset="orders")
    c.add("stale", 1, tenant="acme", dataset="orders")
    c.add("applied", 1, tenant="globex", dataset="clicks")
    c.add("rejected", 4)  # not tied to a table
    assert (c.applied, c.stale, c.rejected) == (3, 1, 4)
    assert c.tables == {
        "acme/orders": {"files": 0, "rows_read": 0, "rows_written": 0, "status": "planned", "applied": 2, "stale": 1},
        "globex/clicks": {"files": 0, "rows_read": 0, "rows_written": 0, "status": "planned", "applied": 1},
    }  # fmt: skip
    assert c.tenants == 2
    assert "tenants=2" in c.summary()


def test_unknown_outcome_is_refused() -> None:
    with pytest.raises(ValueError, match="unknown outcome"):
        counts().add("lost", 1)


def test_freshness_percentiles_nearest_rank() -> None:
    assert freshness_percentiles([]) == (None, None)
    assert freshness_percentiles([5.0]) == (5.0, 5.0)
    samples = [float(i) for i in range(1, 101)]  # 1..100
    assert freshness_percentiles(samples) == (50.0, 95.0)


def test_metrics_row_has_the_ops_table_column_count() -> None:
    from jobs.stream.ops import TABLES

    columns = [c for c in TABLES["batch_metrics"].split(",") if c.strip()]
    assert len(counts().as_row()) == len(columns)

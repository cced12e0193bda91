"""Validation results merged from Spark tasks equal one great-expectations call over all the rows.

Each task validates its share of a batch; the batch records one result per dataset. The
expectation here is independent of the merge: GE run once over the whole table.
"""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from jobs.quality.merge import merge_verdicts
from jobs.quality.suites import load_suite
from jobs.quality.validate import validate_rows
from jobs.quality.verdicts import TenantCounts
from tests.quality.test_quality import TS, TWO_TENANTS, order_table, write_suite

pytestmark = pytest.mark.unit

RELAXED = [
    {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "page", "regex": "^/"}},
    {
        "type": "expect_column_values_to_be_between",
        "kwargs": {"column": "duration_ms", "min_value": 0, "max_value": 1000, "mostly": 0.6},
    },
    {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1, "max_value": 3}},
]


def clicks(rows: list[tuple[str, str | None, int | None]]) -> pa.Table:
    return pa.table(
        {
            "event_id": [f"e{i}" for i in range(len(rows))],
            "user_id": ["u"] * len(rows),
            "page": [page for _, page, _ in rows],
            "duration_ms": pa.array([ms for _, _, ms in rows], pa.int32()),
            "_tenant": [tenant for tenant, _, _ in rows],
        }
    )


def comparable(results: Any) -> dict[str, tuple[Any, ...]]:
    return {r.expectation: (r.rows_checked, r.rows_failed, r.success, dict(r.by_tenant)) for r in results}


def test_merged_shares_give_the_whole_tables_counts_and_mostly_verdicts(tmp_path: Path) -> None:
    write_suite(tmp_path, "relaxed", RELAXED)
    suite = load_suite("relaxed", tmp_path)
    # Share 1 alone fails `mostly` (1 of 2 values off); with share 2 the table has 1 of 4 off:
    # 0.75 >= 0.6, so the merged verdict must be GE's for the whole table: success.
    share_1 = [("x", "/a", 5), ("x", "b", 5000)]
    share_2 = [("x", "/c", 10), ("y", "/d", 20), ("y", None, None)]
    parts = [
        validate_rows(clicks(rows), suite, primary_key=[], dataset="clicks") for rows in (share_1, share_2)
    ]
    whole = validate_rows(clicks(share_1 + share_2), suite, primary_key=[], dataset="clicks")
    assert not next(r for r in parts[0].results if "duration_ms" in r.expectation).success

    (merged,) = merge_verdicts(parts)

    between = "expect_column_values_to_be_between(duration_ms)"
    table_level = "expect_table_row_count_to_be_between()"
    got, want = comparable(merged.results), comparable(whole.results)
    assert got[between] == want[between]
    assert got[between][:3] == (5, 1, True)
    assert (
        got["expect_column_values_to_match_regex(page)"] == want["expect_column_values_to_match_regex(page)"]
    )
    assert got["*"] == want["*"]
    # A table-level expectation cannot be recomputed from shares: it holds when every share held.
    # The whole table (5 rows) fails the row count; each share (2 and 3 rows) passed it.
    assert (got[table_level][2], want[table_level][2]) == (True, False)
    numbers = ("element_count", "missing_count", "unexpected_count", "unexpected_percent")
    for mine, theirs in zip(merged.result_json["results"], whole.result_json["results"], strict=True):
        if "unexpected_count" in theirs["result"]:
            assert [mine["result"][k] for k in numbers] == [theirs["result"][k] for k in numbers]
            assert mine["success"] == theirs["success"]
    assert merged.result_json["statistics"]["evaluated_expectations"] == 3


def test_built_in_checks_of_one_share_count_every_shares_rows() -> None:
    suite = load_suite("orders", Path(__file__).resolve().parents[2] / "conf" / "expectations")
    rows = [row for row, _ in TWO_TENANTS]
    acme = [r for r in rows if r[0] == "acme"]
    globex = [r for r in rows if r[0] == "globex"] + [("acme", "a9", 5, "1.00", "EUR", TS, None)]
    parts = [
        validate_rows(order_table(share), suite, primary_key=["order_id"], dataset="orders")
        for share in (acme, globex)
    ]
    whole = validate_rows(order_table(acme + globex), suite, primary_key=["order_id"], dataset="orders")

    (merged,) = merge_verdicts(parts)

    assert comparable(merged.results) == comparable(whole.results)
    # conversion(amount) only happened in the second share; acme's rows of both shares count.
    conversion = next(r for r in merged.results if r.expectation == "conversion(amount)")
    assert conversion.by_tenant["acme"] == TenantCounts(6, 0, True)


def test_one_share_is_kept_as_it_is_and_datasets_stay_apart(tmp_path: Path) -> None:
    write_suite(tmp_path, "relaxed", RELAXED)
    suite = load_suite("relaxed", tmp_path)
    one = validate_rows(clicks([("x", "/a", 5)]), suite, primary_key=[], dataset="clicks")
    other = validate_rows(clicks([("x", "/a", 5)]), None, primary_key=[], dataset="clicks_b")
    assert merge_verdicts([one, other]) == [one, other]
    assert merge_verdicts([]) == []

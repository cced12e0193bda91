"""Quality: expectation suites, row verdicts for many tenants in one call, the split, the results.

The verdicts are checked on one hand-built Arrow table of two tenants whose every row
was designed to fail (or pass) specific checks; the expected lists are written out
by hand. great-expectations is imported once for the module (it takes seconds).
"""

from __future__ import annotations

import datetime as dt
import json
import random
import shutil
from decimal import Decimal
from pathlib import Path
from typing import Any

import pyarrow as pa
import pytest

from jobs.config import ConfigError
from jobs.contracts import TenantOverride, load_contracts
from jobs.quality import suites, validate
from jobs.quality.results import result_json_name, result_rows, write_result_json
from jobs.quality.suites import check_suites, expectation_id, load_suite
from jobs.quality.validate import decimal_as_float, validate_rows
from jobs.quality.verdicts import ExpectationResult, RowVerdicts, TenantCounts

PROJECT = Path(__file__).resolve().parents[2]
CONF_EXPECTATIONS = PROJECT / "conf" / "expectations"
NOT_NULL_ID = "expect_column_values_to_not_be_null(order_id)"
AMOUNT = "expect_column_values_to_be_between(amount)"
CURRENCY = "expect_column_values_to_be_in_set(currency)"
NOT_NULL_TS = "expect_column_values_to_not_be_null(order_ts)"
TS = dt.datetime(2026, 11, 23, 9, 0, tzinfo=dt.UTC)

ORDER_SCHEMA = pa.schema(
    [
        ("order_id", pa.int64()),
        ("customer_id", pa.string()),
        ("amount", pa.decimal128(12, 2)),
        ("currency", pa.string()),
        ("order_ts", pa.timestamp("us", tz="UTC")),
        ("_rescued", pa.string()),
        ("_row_number", pa.int32()),
        ("_conversion_errors", pa.list_(pa.string())),
        ("_raw", pa.string()),
        ("_source_bucket", pa.string()),
        ("_source_key", pa.string()),
        ("_tenant", pa.string()),
    ]
)


def order_table(rows: list[tuple[Any, ...]]) -> pa.Table:
    """(tenant, key, order_id, amount, currency, order_ts, conversion errors) -> the writer's layout."""
    return pa.Table.from_pylist(
        [
            {
                "order_id": oid,
                "customer_id": "c1",
                "amount": None if amount is None else Decimal(amount),
                "currency": currency,
                "order_ts": ts,
                "_rescued": None,
                "_row_number": n,
                "_conversion_errors": errors,
                "_raw": None if errors is None else json.dumps({e: "garbage" for e in errors}),
                "_source_bucket": "demo-lake",
                "_source_key": f"{tenant}/raw/orders/{key}.csv",
                "_tenant": tenant,
            }
            for n, (tenant, key, oid, amount, currency, ts, errors) in enumerate(rows)
        ],
        schema=ORDER_SCHEMA,
    )


# Each row: (tenant, object, order_id, amount, currency, order_ts, _conversion_errors) and what it fails.
TWO_TENANTS: list[tuple[tuple[Any, ...], list[str]]] = [
    (("acme", "a1", 1, "10.00", "EUR", TS, None), []),
    (("acme", "a1", 2, "-5.00", "USD", TS, None), [AMOUNT, "primary_key_unique"]),
    (("acme", "a1", 2, "20.00", "XXX", TS, None), [CURRENCY, "primary_key_unique"]),
    (("acme", "a2", 1, "30.00", "GBP", TS, None), []),  # key 1 again, in another object: fine
    (("acme", "a2", None, None, None, None, None), [NOT_NULL_ID, NOT_NULL_TS, "primary_key_not_null"]),
    (("globex", "g1", 7, None, "JPY", TS, ["amount"]), ["conversion(amount)"]),
    (("globex", "g1", 8, "1000000.00", "CHF", None, ["order_ts"]), ["conversion(order_ts)", NOT_NULL_TS]),
    (("globex", "g1", 9, "1000000.01", "chf", TS, None), [AMOUNT, CURRENCY]),
    (("globex", "g2", 8, "0.00", "", TS, None), [CURRENCY]),  # key 8 again, in another object
]


@pytest.fixture(scope="module")
def orders_suite() -> Any:
    return load_suite("orders", CONF_EXPECTATIONS)


@pytest.fixture(scope="module")
def two_tenants(orders_suite: Any) -> RowVerdicts:
    table = order_table([row for row, _ in TWO_TENANTS])
    return validate_rows(table, orders_suite, primary_key=["order_id"], dataset="orders")


def write_suite(directory: Path, name: str, expectations: list[dict[str, Any]], **extra: Any) -> Path:
    directory.mkdir(parents=True, exist_ok=True)
    path = directory / f"{name}.json"
    path.write_text(json.dumps({"name": name, "expectations": expectations, "meta": {}, **extra}))
    return path


# ---- suites ------------------------------------------------------------------------------------------
@pytest.mark.unit
def test_the_demo_suites_load_with_their_expectation_ids() -> None:
    ids = {
        name: [
            expectation_id(e.configuration.type, e.configuration.kwargs, e.configuration.meta)
            for e in load_suite(name, CONF_EXPECTATIONS).expectations
        ]
        for name in ("orders", "clicks", "inventory")
    }
    assert ids == {
        "orders": [NOT_NULL_ID, AMOUNT, CURRENCY, NOT_NULL_TS],
        "clicks": [
            "expect_column_values_to_not_be_null(event_id)",
            "expect_column_values_to_be_between(duration_ms)",
            "expect_column_values_to_match_regex(page)",
        ],
        "inventory": [
            "expect_column_values_to_not_be_null(sku)",
            "expect_column_values_to_be_between(qty)",
        ],
    }
    assert load_suite("orders", CONF_EXPECTATIONS) is load_suite("orders", str(CONF_EXPECTATIONS))  # cached


@pytest.mark.unit
def test_expectation_ids() -> None:
    assert expectation_id(
        "expect_column_pair_values_a_to_be_greater_than_b", {"column_A": "x", "column_B": "y"}, {}
    ) == ("expect_column_pair_values_a_to_be_greater_than_b(x,y)")
    assert expectation_id("expect_table_row_count_to_be_between", {"min_value": 1}, None) == (
        "expect_table_row_count_to_be_between()"
    )
    assert expectation_id(
        "expect_column_values_to_match_regex", {"column": "p"}, {"id": "page_is_a_path"}
    ) == ("page_is_a_path")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("content", "message"),
    [
        ("{not json", "not readable JSON"),
        ('{"name": "s", "expectations": {}}', "expected an object with an 'expectations' list"),
        ('{"name": "other", "expectations": []}', "its name 'other' is not the file name 's'"),
        ('{"expectations": [{"kwargs": {"column": "a"}}]}', "expectation #1 needs a 'type' and 'kwargs'"),
        (
            '{"expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}},'
            ' {"type": "expect_column_values_to_be_fabulous", "kwargs": {"column": "a"}}]}',
            "expectation #2 (expect_column_values_to_be_fabulous): expect_column_values_to_be_fabulous not found",
        ),
        (
            '{"expectations": [{"type": "expect_column_values_to_be_between", "kwargs": {"column": "a"}}]}',
            "expectation #1 (expect_column_values_to_be_between): 1 validation error",
        ),
        (
            '{"expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"},'
            ' "severity": "fatal"}]}',
            "Invalid severity 'fatal'",
        ),
        (
            '{"expectations": [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"},'
            ' "sevrity": "warning", "id": "2f1c"}]}',
            "expectation #1 (expect_column_values_to_not_be_null): unknown keys sevrity (allowed: description,",
        ),
        (
            '{"expectations": [{"type": "expect_column_values_to_match_regex", "kwargs": {"column": "a", "regex": "x"}},'
            ' {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "a", "regex": "y"}}]}',
            "two expectations are both 'expect_column_values_to_match_regex(a)'; give one a distinct meta.id",
        ),
    ],
)
def test_a_bad_suite_file_is_a_clear_error(tmp_path: Path, content: str, message: str) -> None:
    (tmp_path / "s.json").write_text(content)
    with pytest.raises(ConfigError) as caught:
        load_suite("s", tmp_path)
    assert str(caught.value).startswith(f"expectation suite {tmp_path / 's.json'}") and message in str(
        caught.value
    )


@pytest.mark.unit
def test_check_suites_names_the_dataset_tenant_and_unknown_columns(tmp_path: Path) -> None:
    contracts = load_contracts(PROJECT / "conf" / "datasets.yaml")
    shutil.copytree(CONF_EXPECTATIONS, tmp_path, dirs_exist_ok=True)
    wired = {name: c.model_copy(update={"expectations": name}) for name, c in contracts.items()}
    assert sorted(check_suites(wired, tmp_path)) == ["clicks", "inventory", "orders"]

    wrong = {"inventory": contracts["inventory"].model_copy(update={"expectations": "orders"})}
    with pytest.raises(ConfigError) as caught:
        check_suites(wrong, tmp_path)
    assert str(caught.value) == (
        f"dataset 'inventory': expectation suite {tmp_path / 'orders.json'} names columns the dataset does "
        "not declare: amount, currency, order_id, order_ts (declared: sku, warehouse, qty, snapshot_date)"
    )

    override = {"acme": TenantOverride(expectations="clicks_strict")}
    missing = {
        "clicks": contracts["clicks"].model_copy(update={"expectations": "clicks", "tenants": override})
    }
    with pytest.raises(ConfigError) as caught:
        check_suites(missing, tmp_path)
    assert str(caught.value) == (
        f"dataset 'clicks' (tenant 'acme'): expectation suite 'clicks_strict': "
        f"{tmp_path / 'clicks_strict.json'} does not exist"
    )


# ---- row verdicts ------------------------------------------------------------------------------------
@pytest.mark.unit
def test_each_row_carries_exactly_what_it_failed(two_tenants: RowVerdicts) -> None:
    assert two_tenants.failed == [sorted(expected) for _, expected in TWO_TENANTS]
    assert (two_tenants.dataset, two_tenants.suite, two_tenants.rows_failed) == ("orders", "orders", 7)


@pytest.mark.unit
def test_per_tenant_counts_are_exact(two_tenants: RowVerdicts) -> None:
    counts = {
        r.expectation: (r.rows_checked, r.rows_failed, r.success, dict(r.by_tenant))
        for r in two_tenants.results
    }

    def t(checked: int, failed: int) -> TenantCounts:
        return TenantCounts(checked, failed, failed == 0)

    assert counts == {
        NOT_NULL_ID: (9, 1, False, {"acme": t(5, 1), "globex": t(4, 0)}),
        AMOUNT: (9, 2, False, {"acme": t(5, 1), "globex": t(4, 1)}),
        CURRENCY: (9, 3, False, {"acme": t(5, 1), "globex": t(4, 2)}),
        NOT_NULL_TS: (9, 2, False, {"acme": t(5, 1), "globex": t(4, 1)}),
        "conversion(amount)": (9, 1, False, {"acme": t(5, 0), "globex": t(4, 1)}),
        "conversion(order_ts)": (9, 1, False, {"acme": t(5, 0), "globex": t(4, 1)}),
        "primary_key_not_null": (9, 1, False, {"acme": t(5, 1), "globex": t(4, 0)}),
        "primary_key_unique": (9, 2, False, {"acme": t(5, 2), "globex": t(4, 0)}),
        "*": (9, 7, False, {"acme": t(5, 3), "globex": t(4, 4)}),
    }
    amount = next(r for r in two_tenants.results if r.expectation == AMOUNT)
    assert (amount.expectation_type, amount.column, amount.severity) == (
        "expect_column_values_to_be_between",
        "amount",
        "critical",
    )
    assert json.loads(amount.kwargs) == {"column": "amount", "min_value": 0.0, "max_value": 1000000.0}


@pytest.mark.unit
def test_result_json_keeps_counts_and_examples_but_not_per_row_lists(two_tenants: RowVerdicts) -> None:
    doc = two_tenants.result_json
    json.dumps(doc)  # JSON-ready
    assert doc["suite_name"] == "orders" and doc["statistics"]["evaluated_expectations"] == 4
    by_type = {
        (r["expectation_config"]["type"], r["expectation_config"]["kwargs"]["column"]): r
        for r in doc["results"]
    }
    amount = by_type[("expect_column_values_to_be_between", "amount")]["result"]
    assert amount["unexpected_count"] == 2 and amount["partial_unexpected_index_list"] == [1, 7]
    assert sorted(amount["partial_unexpected_list"]) == [-5.0, 1000000.01]
    assert not {"unexpected_list", "unexpected_index_list", "unexpected_index_query"} & set(amount)


@pytest.mark.unit
def test_the_suite_runs_once_for_many_tenants(orders_suite: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    calls: list[int] = []
    real = validate.run_suite

    def counting(frame: Any, suite: Any) -> Any:
        calls.append(len(frame))
        return real(frame, suite)

    monkeypatch.setattr(validate, "run_suite", counting)
    rows = [
        (f"t{i:03d}", "f", i % 7, "-1.00" if i % 10 == 0 else "1.00", "EUR", TS, None) for i in range(400)
    ]
    verdicts = validate_rows(order_table(rows), orders_suite, primary_key=["order_id"], dataset="orders")
    assert calls == [400]
    amount = next(r for r in verdicts.results if r.expectation == AMOUNT)
    assert len(amount.by_tenant) == 400 and amount.rows_failed == 40
    assert amount.by_tenant["t010"] == TenantCounts(1, 1, False)
    assert amount.by_tenant["t011"] == TenantCounts(1, 0, True)


@pytest.mark.unit
def test_severity_mostly_nulls_and_a_table_level_expectation(tmp_path: Path) -> None:
    write_suite(
        tmp_path,
        "clicks_relaxed",
        [
            {"type": "expect_column_values_to_match_regex", "kwargs": {"column": "page", "regex": "^/"}},
            {
                "type": "expect_column_values_to_be_between",
                "kwargs": {"column": "duration_ms", "min_value": 0, "max_value": 1000, "mostly": 0.5},
            },
            {
                "type": "expect_column_values_to_not_be_null",
                "kwargs": {"column": "user_id"},
                "severity": "warning",
            },
            {"type": "expect_table_row_count_to_be_between", "kwargs": {"min_value": 1, "max_value": 3}},
        ],
    )
    suite = load_suite("clicks_relaxed", tmp_path)
    table = pa.table(
        {
            "event_id": ["e1", "e2", "e3", "e4"],
            "user_id": [None, "u", "u", "u"],
            "page": ["/a", "b", None, "/c"],
            "duration_ms": pa.array([5, 5000, None, 10], pa.int32()),
            "_tenant": ["x", "x", "y", "y"],
        }
    )
    verdicts = validate_rows(table, suite, primary_key=[], dataset="clicks")
    regex, between = (
        "expect_column_values_to_match_regex(page)",
        "expect_column_values_to_be_between(duration_ms)",
    )
    assert verdicts.failed == [[], [between, regex], [], []]  # the warning on row 0 is only counted
    results = {r.expectation: r for r in verdicts.results}
    assert (results[between].success, dict(results[between].by_tenant)) == (
        True,  # 1 of 3 non-null values is off: mostly 0.5 holds for the table
        {"x": TenantCounts(2, 1, True), "y": TenantCounts(2, 0, True)},
    )
    warning = results["expect_column_values_to_not_be_null(user_id)"]
    assert (warning.severity, warning.rows_failed, warning.by_tenant["x"]) == (
        "warning",
        1,
        TenantCounts(2, 1, False),
    )
    rows = results["expect_table_row_count_to_be_between()"]
    assert (rows.success, rows.rows_failed, dict(rows.by_tenant)) == (
        False,
        0,
        {"x": TenantCounts(2, 0, False), "y": TenantCounts(2, 0, False)},
    )
    assert "primary_key_unique" not in results and results["*"].rows_failed == 1


@pytest.mark.unit
def test_an_expectation_that_cannot_run_fails_every_row(
    tmp_path: Path, caplog: pytest.LogCaptureFixture
) -> None:
    write_suite(
        tmp_path,
        "typo",
        [
            {"type": "expect_column_values_to_be_between", "kwargs": {"column": "page", "min_value": 1}},
            {"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "user_id"}},
        ],
    )
    table = pa.table({"page": ["/a", None], "user_id": ["u", None], "_tenant": ["x", "y"]})
    verdicts = validate_rows(table, load_suite("typo", tmp_path), primary_key=[], dataset="clicks")
    between = "expect_column_values_to_be_between(page)"
    assert verdicts.failed == [[between], [between, "expect_column_values_to_not_be_null(user_id)"]]
    assert f"expectation {between} of suite failed to run, every row fails it: Column values" in caplog.text


@pytest.mark.unit
def test_without_a_suite_only_conversion_and_key_checks_run(monkeypatch: pytest.MonkeyPatch) -> None:
    monkeypatch.setattr(validate, "run_suite", lambda *_: pytest.fail("GE must not run"))
    rows = [("a", "k", 1, "1", "EUR", TS, None), ("a", "k", 1, None, "EUR", TS, ["amount", "amount"])]
    verdicts = validate_rows(order_table(rows), None, primary_key=["order_id"], dataset="orders")
    assert verdicts.failed == [["primary_key_unique"], ["conversion(amount)", "primary_key_unique"]]
    assert (verdicts.suite, verdicts.result_json) == ("", {})
    empty = validate_rows(order_table([]), None, primary_key=["order_id"], dataset="orders")
    assert (empty.failed, [r.expectation for r in empty.results]) == (
        [],
        ["primary_key_not_null", "primary_key_unique", "*"],
    )


@pytest.mark.unit
def test_decimals_become_the_nearest_double() -> None:
    rng = random.Random(7)
    for precision, scale in ((12, 2), (15, 4), (15, 15), (9, 0)):
        values = [
            Decimal(rng.randint(-(10**precision) + 1, 10**precision - 1)).scaleb(-scale) for _ in range(2000)
        ]
        array = pa.chunked_array([pa.array([None, *values], pa.decimal128(precision, scale))]).slice(1)
        assert decimal_as_float(array).to_pylist() == [float(v) for v in values]
    assert decimal_as_float(pa.array([Decimal("0.10"), None], pa.decimal128(4, 2))).to_pylist() == [0.1, None]
    with pytest.raises(ValueError, match="precision <= 15"):
        decimal_as_float(pa.array([Decimal("1")], pa.decimal128(16, 0)))


# ---- results -----------------------------------------------------------------------------------------
class MemoryStore:
    def __init__(self) -> None:
        self.files: dict[str, bytes] = {}

    def write(self, name: str, data: bytes) -> str:
        self.files[name] = data
        return f"mem://{name}"


@pytest.mark.unit
def test_result_rows_one_per_tenant_and_expectation() -> None:
    counts = {"b": TenantCounts(2, 1, False), "a": TenantCounts(3, 0, True)}
    verdicts = RowVerdicts(
        dataset="orders",
        suite="orders",
        failed=[[], ["x"], [], [], []],
        results=[
            ExpectationResult(
                "x", "expect_x", "amount", '{"column": "amount"}', 5, 1, False, "critical", counts
            ),
            ExpectationResult("*", "all_expectations", None, "{}", 5, 1, False, "critical", counts),
        ],
        result_json={"success": False},
        seconds=0.1,
    )
    rows = result_rows(verdicts, batch_id=7, query_id="q1", validated_at=TS)
    assert [tuple(r) for r in rows] == [
        (7, "q1", "orders", "orders", "a", "x", "expect_x", "amount", '{"column": "amount"}', 3, 0, True, TS),
        (7, "q1", "orders", "orders", "a", "*", "all_expectations", None, "{}", 3, 0, True, TS),
        (
            7,
            "q1",
            "orders",
            "orders",
            "b",
            "x",
            "expect_x",
            "amount",
            '{"column": "amount"}',
            2,
            1,
            False,
            TS,
        ),
        (7, "q1", "orders", "orders", "b", "*", "all_expectations", None, "{}", 2, 1, False, TS),
    ]
    store = MemoryStore()
    assert write_result_json(store, verdicts, query_id="q1", batch_id=7) == (
        "mem://query=q1/batch-00000000000000000007-orders-orders.json"
    )
    assert json.loads(store.files["query=q1/batch-00000000000000000007-orders-orders.json"]) == {
        "success": False
    }
    assert result_json_name(query_id="q", batch_id=-3, dataset="clicks", suite="") == (
        "query=q/retry-00000000000000000003-clicks-none.json"
    )


@pytest.mark.unit
def test_result_json_lands_under_the_ops_root(two_tenants: RowVerdicts, tmp_path: Path) -> None:
    from jobs.bridge.landing import open_store
    from jobs.config import load_config
    from jobs.quality.results import results_uri

    config = load_config(None, environ={}, overrides={"lake": {"root": str(tmp_path)}})
    uri = results_uri(config)
    assert uri == f"{tmp_path.as_uri()}/_ops/demo/quality/results/"
    written = write_result_json(open_store(uri, config), two_tenants, query_id="q9", batch_id=12)
    path = tmp_path / "_ops/demo/quality/results/query=q9/batch-00000000000000000012-orders-orders.json"
    assert written == path.as_uri()
    assert json.loads(path.read_text())["statistics"]["unsuccessful_expectations"] == 4


@pytest.mark.unit
def test_the_suite_cache_can_be_cleared(tmp_path: Path) -> None:
    write_suite(tmp_path, "s", [])
    first = load_suite("s", tmp_path)
    write_suite(tmp_path, "s", [{"type": "expect_column_values_to_not_be_null", "kwargs": {"column": "a"}}])
    assert load_suite("s", tmp_path) is first
    suites.clear_cache()
    assert len(load_suite("s", tmp_path).expectations) == 1


# ---- the split ----------------------------------------------------------------------------------------
@pytest.mark.spark
def test_split_verdicts_keeps_good_rows_and_quarantines_the_rest(spark: Any) -> None:
    from chispa import assert_df_equality

    from jobs.quality.split import split_verdicts

    schema = "id INT, amount STRING, _failed ARRAY<STRING>, _source_key STRING"
    df = spark.createDataFrame(
        [
            (1, "1.00", None, "k1"),
            (2, "-1.00", ["expect_column_values_to_be_between(amount)"], "k1"),
            (3, "2.00", [], "k2"),
            (4, None, ["conversion(amount)", "primary_key_unique"], "k2"),
            (None, None, None, None),
        ],
        schema,
    )
    good_df, quarantine_df = split_verdicts(df)
    expected_good = spark.createDataFrame(
        [(1, "1.00", "k1"), (3, "2.00", "k2"), (None, None, None)],
        "id INT, amount STRING, _source_key STRING",
    )
    expected_quarantine = spark.createDataFrame(
        [
            (2, "-1.00", ["expect_column_values_to_be_between(amount)"], "k1"),
            (4, None, ["conversion(amount)", "primary_key_unique"], "k2"),
        ],
        "id INT, amount STRING, _failed_expectations ARRAY<STRING>, _source_key STRING",
    )
    assert_df_equality(good_df, expected_good, ignore_row_order=True)
    assert_df_equality(quarantine_df, expected_quarantine, ignore_row_order=True)

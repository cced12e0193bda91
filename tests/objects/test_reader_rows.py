"""ObjectReader row-level columns: values that do not convert, _rescued, _row_number, _raw."""

from __future__ import annotations

import gzip
import io
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import pyarrow as pa
import pyarrow.parquet as pq
import pytest

from jobs.contracts import DatasetContract, load_contracts
from jobs.objects.formats import ContractDecoder
from jobs.objects.reader import ObjectReader, ObjectRef, ReadOutcome, silver_arrow_schema

PROJECT = Path(__file__).resolve().parents[2]
CONTRACTS = load_contracts(PROJECT / "conf" / "datasets.yaml")
ORDERS, CLICKS, INVENTORY = CONTRACTS["orders"], CONTRACTS["clicks"], CONTRACTS["inventory"]
BUCKET = "acme-lake"
UTC_US = pa.timestamp("us", tz="UTC")
HEADER = "order_id,customer_id,amount,currency,order_ts\n"


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    path = tmp_path / "lake"
    path.mkdir()
    return path


def put(lake: Path, key: str, data: bytes | str, *, gz: bool = False) -> str:
    body = data.encode() if isinstance(data, str) else data
    path = lake / BUCKET / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(gzip.compress(body) if gz else body)
    return key


def ref(key: str) -> ObjectRef:
    parts = key.split("/")
    return ObjectRef(BUCKET, key, parts[0], parts[2], None, None, "0055AED6DCD90281E5", None, None)


def read_one(lake: Path, contract: DatasetContract, key: str) -> tuple[pa.Table, ReadOutcome]:
    table, outcomes = ObjectReader(lake.as_uri() + "/").read([ref(key)], contract)
    assert table.schema == silver_arrow_schema(contract)
    return table, outcomes[0]


def declared(table: pa.Table, contract: DatasetContract) -> list[tuple[object, ...]]:
    return [tuple(row[name] for name in contract.column_names) for row in table.to_pylist()]


def column(table: pa.Table, name: str) -> list[object]:
    return table.column(name).to_pylist()


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.mark.unit
@pytest.mark.parametrize("gz", [False, True], ids=["csv", "csv.gz"])
def test_csv_values_that_do_not_convert_cost_their_row_only(lake: Path, gz: bool) -> None:
    body = (
        HEADER
        + "1,c1,12.50,EUR,2024-03-01T10:00:00Z\n"
        + "not-a-number,c2,1.00,EUR,2024-03-01T10:00:00Z\n"
        + ",,,,\n"  # a row of nulls is not an error
        + "4,c4,twelve,USD,2024-03-01 11:00:00\n"  # no zone: UTC, also on the slow path
        + '5,"",1,,2024-03-01T23:59:59.5+01:00\n'  # a quoted "" stays "" in a string column
        + "x6,c6,1.00,EUR,yesterday\n"
        + '"",c7,1.00,EUR,\n'  # a quoted "" is null in other columns, not an error
    )
    key = put(lake, "t1/raw/orders/bad" + (".csv.gz" if gz else ".csv"), body, gz=gz)

    table, outcome = read_one(lake, ORDERS, key)

    assert (outcome.status, outcome.reason, outcome.rows, outcome.rows_with_errors) == ("ok", None, 7, 3)
    assert declared(table, ORDERS) == [
        (1, "c1", Decimal("12.50"), "EUR", datetime(2024, 3, 1, 10, tzinfo=UTC)),
        (None, "c2", Decimal("1.00"), "EUR", datetime(2024, 3, 1, 10, tzinfo=UTC)),
        (None, None, None, None, None),
        (4, "c4", None, "USD", datetime(2024, 3, 1, 11, tzinfo=UTC)),
        (5, "", Decimal("1.00"), None, datetime(2024, 3, 1, 22, 59, 59, 500000, tzinfo=UTC)),
        (None, "c6", Decimal("1.00"), "EUR", None),
        (None, "c7", Decimal("1.00"), "EUR", None),
    ]
    assert column(table, "_conversion_errors") == [
        None,
        ["order_id"],
        None,
        ["amount"],
        None,
        ["order_id", "order_ts"],
        None,
    ]
    assert column(table, "_raw") == [
        None,
        '{"order_id":"not-a-number","customer_id":"c2","amount":"1.00","currency":"EUR",'
        '"order_ts":"2024-03-01T10:00:00Z"}',
        None,
        '{"order_id":"4","customer_id":"c4","amount":"twelve","currency":"USD",'
        '"order_ts":"2024-03-01 11:00:00"}',
        None,
        '{"order_id":"x6","customer_id":"c6","amount":"1.00","currency":"EUR","order_ts":"yesterday"}',
        None,
    ]
    assert column(table, "_row_number") == [1, 2, 3, 4, 5, 6, 7]
    assert column(table, "_rescued") == [None] * 7


@pytest.mark.unit
@pytest.mark.parametrize("with_bad_row", [False, True], ids=["fast_path", "slow_path"])
def test_csv_undeclared_header_columns_are_rescued_as_text(lake: Path, with_bad_row: bool) -> None:
    body = (
        "order_id,note,customer_id,amount,currency,order_ts,Extra Col\n"
        '1,"say ""hi"" \\ ü",c1,1.00,EUR,,7\n'
        "2,,c2,1.00,EUR,,\n"
        '3,"",c3,1.00,EUR,,007\n'
        '4,"tab\there",c4,1.00,EUR,,\n'
    )
    if with_bad_row:
        body += "5,n5,c5,1.0.0,EUR,,x\n"
    key = put(lake, "t1/raw/orders/extra.csv", body)

    table, outcome = read_one(lake, ORDERS, key)

    assert (outcome.status, outcome.rows_with_errors) == ("ok", 1 if with_bad_row else 0)
    assert declared(table, ORDERS)[:4] == [
        (1, "c1", Decimal("1.00"), "EUR", None),
        (2, "c2", Decimal("1.00"), "EUR", None),
        (3, "c3", Decimal("1.00"), "EUR", None),
        (4, "c4", Decimal("1.00"), "EUR", None),
    ]
    expected_rescued = [
        r'{"note":"say \"hi\" \\ ü","Extra Col":"7"}',
        None,  # both undeclared values are empty
        '{"note":"","Extra Col":"007"}',  # text as written: a quoted "" and a leading zero
        r'{"note":"tab\there"}',
    ]
    expected_errors: list[object] = [None] * 4
    expected_raw: list[object] = [None] * 4
    if with_bad_row:
        expected_rescued.append('{"note":"n5","Extra Col":"x"}')
        expected_errors.append(["amount"])
        expected_raw.append(
            '{"order_id":"5","note":"n5","customer_id":"c5","amount":"1.0.0","currency":"EUR",'
            '"order_ts":null,"Extra Col":"x"}'
        )
    assert column(table, "_rescued") == expected_rescued
    assert column(table, "_conversion_errors") == expected_errors
    assert column(table, "_raw") == expected_raw


@pytest.mark.unit
def test_csv_row_numbers_count_data_rows(lake: Path) -> None:
    contract = ORDERS.model_copy(update={"options": {"header": "false"}})
    put(lake, "t1/raw/orders/h.csv", HEADER + "1,a,,,\n\n2,b,,,\n3,c,,,\n")
    put(lake, "t1/raw/orders/n.csv", "7,a,,,\n8,b,,,\n")

    with_header, _ = read_one(lake, ORDERS, "t1/raw/orders/h.csv")
    without_header, _ = read_one(lake, contract, "t1/raw/orders/n.csv")

    assert column(with_header, "_row_number") == [1, 2, 3]  # the header and blank lines do not count
    assert column(without_header, "_row_number") == [1, 2]


@pytest.mark.unit
def test_many_bad_values_are_found_exactly(lake: Path) -> None:
    bad_ids = {1, 333, 512, 1000}
    lines = [
        f"{'x' if i in bad_ids else ''}{i},c{i},{'9999999999999.99' if i == 777 else '1.00'},EUR,\n"
        for i in range(1, 1001)
    ]
    put(lake, "t1/raw/orders/big.csv", HEADER + "".join(lines))
    put(lake, "t1/raw/orders/all_bad.csv", HEADER + "".join(f"{i},c,n/a,EUR,\n" for i in range(1, 501)))

    big, big_outcome = read_one(lake, ORDERS, "t1/raw/orders/big.csv")
    all_bad, all_bad_outcome = read_one(lake, ORDERS, "t1/raw/orders/all_bad.csv")

    assert (big_outcome.rows, big_outcome.rows_with_errors) == (1000, 5)
    assert column(big, "order_id") == [None if i in bad_ids else i for i in range(1, 1001)]
    assert column(big, "amount") == [None if i == 777 else Decimal("1.00") for i in range(1, 1001)]
    errors = {i + 1: e for i, e in enumerate(column(big, "_conversion_errors")) if e is not None}
    assert errors == {
        1: ["order_id"],
        333: ["order_id"],
        512: ["order_id"],
        777: ["amount"],
        1000: ["order_id"],
    }
    assert (all_bad_outcome.rows, all_bad_outcome.rows_with_errors) == (500, 500)
    assert column(all_bad, "amount") == [None] * 500
    assert column(all_bad, "order_id") == list(range(1, 501))


@pytest.mark.unit
def test_mixed_timestamp_zones_in_one_file_all_convert(lake: Path) -> None:
    put(lake, "t1/raw/orders/z.csv", HEADER + "1,a,,,2024-03-01T10:00:00Z\n2,b,,,2024-03-01 11:00:00\n")

    table, outcome = read_one(lake, ORDERS, "t1/raw/orders/z.csv")

    assert (outcome.status, outcome.rows_with_errors) == ("ok", 0)
    assert column(table, "order_ts") == [
        datetime(2024, 3, 1, 10, tzinfo=UTC),
        datetime(2024, 3, 1, 11, tzinfo=UTC),
    ]


@pytest.mark.unit
def test_parquet_undeclared_columns_are_rescued_and_bad_values_marked(lake: Path) -> None:
    source = pa.table(
        {
            "sku": ["A-1", "B-2", None],
            "price": pa.array([Decimal("1.50"), None, Decimal("2.00")], pa.decimal128(5, 2)),
            "warehouse": ["w1", "w2", "w3"],
            "qty": pa.array([5, 3_000_000_000, None], pa.int64()),  # int64 -> int: one overflows
            "snapshot_date": pa.array([date(2024, 3, 1), date(2024, 3, 2), None], pa.date32()),
            "seen_at": pa.array([datetime(2024, 3, 1, 10, tzinfo=UTC), None, None], UTC_US),
            "flags": [["a"], [], None],
        }
    )
    put(lake, "t1/raw/inventory/i.parquet", parquet_bytes(source))

    table, outcome = read_one(lake, INVENTORY, "t1/raw/inventory/i.parquet")

    assert (outcome.status, outcome.rows, outcome.rows_with_errors) == ("ok", 3, 1)
    assert declared(table, INVENTORY) == [
        ("A-1", "w1", 5, date(2024, 3, 1)),
        ("B-2", "w2", None, date(2024, 3, 2)),
        (None, "w3", None, None),
    ]
    assert column(table, "_rescued") == [
        '{"price":"1.50","seen_at":"2024-03-01T10:00:00+00:00","flags":["a"]}',
        '{"flags":[]}',
        '{"price":"2.00"}',
    ]
    assert column(table, "_conversion_errors") == [None, ["qty"], None]
    assert column(table, "_raw") == [
        None,
        '{"sku":"B-2","price":null,"warehouse":"w2","qty":3000000000,"snapshot_date":"2024-03-02",'
        '"seen_at":null,"flags":[]}',
        None,
    ]
    assert column(table, "_row_number") == [1, 2, 3]


@pytest.mark.unit
def test_parquet_text_columns_are_parsed_value_by_value(lake: Path) -> None:
    source = pa.table(
        {
            "sku": ["a", "b", "c"],
            "warehouse": ["w", "w", "w"],
            "qty": ["5", "five", ""],
            "snapshot_date": ["2024-03-01", "2024-02-30", None],
        }
    )
    put(lake, "t1/raw/inventory/t.parquet", parquet_bytes(source))

    table, outcome = read_one(lake, INVENTORY, "t1/raw/inventory/t.parquet")

    assert (outcome.status, outcome.rows_with_errors) == ("ok", 1)
    assert declared(table, INVENTORY) == [
        ("a", "w", 5, date(2024, 3, 1)),
        ("b", "w", None, None),
        ("c", "w", None, None),  # empty text is null, not an error
    ]
    assert column(table, "_conversion_errors") == [None, ["qty", "snapshot_date"], None]
    assert column(table, "_raw") == [
        None,
        '{"sku":"b","warehouse":"w","qty":"five","snapshot_date":"2024-02-30"}',
        None,
    ]


@pytest.mark.unit
@pytest.mark.parametrize("fmt", ["csv", "jsonl", "parquet"])
def test_clean_files_have_no_row_level_values(lake: Path, fmt: str) -> None:
    if fmt == "csv":
        contract = ORDERS
        key = put(lake, "t1/raw/orders/ok.csv", HEADER + "1,c,1.00,EUR,2024-03-01T10:00:00Z\n,,,,\n")
    elif fmt == "jsonl":
        contract = CLICKS
        key = put(lake, "t1/raw/clicks/ok.jsonl", '{"event_id":"e1","duration_ms":1}\n{}\n{"page":null}\n')
    else:
        contract = INVENTORY
        rows = {"sku": ["a", None], "warehouse": ["w", None], "qty": [1, None], "snapshot_date": [None, None]}
        key = put(lake, "t1/raw/inventory/ok.parquet", parquet_bytes(pa.table(rows)))

    table, outcome = read_one(lake, contract, key)

    assert (outcome.status, outcome.rows_with_errors) == ("ok", 0)
    n = table.num_rows
    assert n == outcome.rows and n >= 2
    assert column(table, "_rescued") == [None] * n
    assert column(table, "_conversion_errors") == [None] * n
    assert column(table, "_raw") == [None] * n
    assert column(table, "_row_number") == list(range(1, n + 1))


@pytest.mark.unit
def test_row_numbers_restart_per_object_in_one_read(lake: Path) -> None:
    keys = [
        put(lake, "t1/raw/orders/a.csv", HEADER + "1,a,,,\n2,a,,,\n"),
        put(lake, "t1/raw/orders/b.csv", HEADER),
        put(lake, "t1/raw/orders/c.csv", HEADER + "x,c,,,\n4,c,,,\n5,c,,,\n"),
    ]

    table, outcomes = ObjectReader(lake.as_uri() + "/", max_workers=3).read([ref(k) for k in keys], ORDERS)

    assert [(o.rows, o.rows_with_errors) for o in outcomes] == [(2, 0), (0, 0), (3, 1)]
    assert column(table, "_row_number") == [1, 2, 1, 2, 3]
    assert column(table, "order_id") == [1, 2, None, 4, 5]
    assert column(table, "_conversion_errors") == [None, None, ["order_id"], None, None]


@pytest.mark.unit
def test_decoder_table_has_declared_then_row_level_columns() -> None:
    table = ContractDecoder(ORDERS).decode((HEADER + "x,c,1.00,EUR,\n").encode(), "t1/raw/orders/a.csv")

    assert table.schema == pa.schema(
        [
            ("order_id", pa.int64()),
            ("customer_id", pa.string()),
            ("amount", pa.decimal128(12, 2)),
            ("currency", pa.string()),
            ("order_ts", UTC_US),
            ("_rescued", pa.string()),
            ("_row_number", pa.int32()),
            ("_conversion_errors", pa.list_(pa.string())),
            ("_raw", pa.string()),
        ]
    )
    assert table.to_pylist() == [
        {
            "order_id": None,
            "customer_id": "c",
            "amount": Decimal("1.00"),
            "currency": "EUR",
            "order_ts": None,
            "_rescued": None,
            "_row_number": 1,
            "_conversion_errors": ["order_id"],
            "_raw": '{"order_id":"x","customer_id":"c","amount":"1.00","currency":"EUR","order_ts":null}',
        }
    ]


@pytest.mark.unit
@pytest.mark.parametrize("suffix", [".jsonl", ".json.gz"])
def test_jsonl_bad_values_and_lines_cost_their_row_only(lake: Path, suffix: str) -> None:
    body = (
        b'{"event_id":"e1","duration_ms":"slow","page":"/a"}\n'  # a string where an int is declared
        b"\n"  # blank lines are not counted
        b'{"event_id":"e2","duration_ms":7,"page":42,"ts":"2024-03-01T10:00:00Z"}\n'  # a number for a string
        b'{"event_id":"e3", oops\n'  # not JSON
        b'  {"event_id":"e4","duration_ms":3000000000,"ts":"2024-03-01 10:00:00"}  \n'  # int overflow
        b"[1,2]\n"  # JSON, not an object
        b'{"event_id":"e6","duration_ms":1.0,"user_id":null,"ts":"yesterday"}\n'
        b'{"event_id":"e7","duration_ms":-5,"user_id":"u7","ts":"2024-03-01T12:00:00+02:00"}\n'
        b'{"event_id":null,"duration_ms":null,"ts":""}\n'  # nulls and empty text are not errors
    )
    key = put(lake, f"t1/raw/clicks/bad{suffix}", body, gz=suffix.endswith(".gz"))

    table, outcome = read_one(lake, CLICKS, key)

    assert (outcome.status, outcome.reason, outcome.rows, outcome.rows_with_errors) == ("ok", None, 8, 6)
    noon_utc = datetime(2024, 3, 1, 10, tzinfo=UTC)
    assert declared(table, CLICKS) == [
        ("e1", None, "/a", None, None),
        ("e2", None, None, noon_utc, 7),
        (None, None, None, None, None),
        ("e4", None, None, noon_utc, None),  # no zone: UTC
        (None, None, None, None, None),
        ("e6", None, None, None, None),
        ("e7", "u7", None, noon_utc, -5),
        (None, None, None, None, None),
    ]
    assert table.column("_row_number").to_pylist() == [1, 2, 3, 4, 5, 6, 7, 8]
    assert table.column("_conversion_errors").to_pylist() == [
        ["duration_ms"],
        ["page"],
        ["_line"],
        ["duration_ms"],
        ["_line"],
        ["ts", "duration_ms"],
        None,
        None,
    ]
    assert table.column("_raw").to_pylist() == [
        '{"event_id":"e1","duration_ms":"slow","page":"/a"}',
        '{"event_id":"e2","duration_ms":7,"page":42,"ts":"2024-03-01T10:00:00Z"}',
        '{"event_id":"e3", oops',
        '{"event_id":"e4","duration_ms":3000000000,"ts":"2024-03-01 10:00:00"}',
        "[1,2]",
        '{"event_id":"e6","duration_ms":1.0,"user_id":null,"ts":"yesterday"}',
        None,
        None,
    ]
    assert table.column("_rescued").to_pylist() == [None] * 8


@pytest.mark.unit
def test_jsonl_undeclared_keys_are_rescued_as_json_values(lake: Path) -> None:
    body = (
        '{"event_id":"e1","ts":"2024-03-01T10:00:00Z","ref":"https://x","tags":["a","b"],"n":1.50}\n'
        '{"event_id":"e2","ref":null,"geo":{"lat":1,"cc":"ü"}}\n'
        '{"event_id":"e3"}\n'
    )
    put(lake, "t1/raw/clicks/extra.jsonl", body)

    table, outcome = read_one(lake, CLICKS, "t1/raw/clicks/extra.jsonl")

    assert (outcome.status, outcome.rows, outcome.rows_with_errors) == ("ok", 3, 0)
    assert declared(table, CLICKS) == [
        ("e1", None, None, datetime(2024, 3, 1, 10, tzinfo=UTC), None),
        ("e2", None, None, None, None),
        ("e3", None, None, None, None),
    ]
    assert table.column("_rescued").to_pylist() == [
        '{"ref":"https://x","tags":["a","b"],"n":1.5}',
        '{"geo":{"lat":1,"cc":"ü"}}',  # a null value is left out
        None,
    ]
    assert table.column("_conversion_errors").to_pylist() == [None, None, None]
    assert table.column("_raw").to_pylist() == [None, None, None]


@pytest.mark.unit
def test_jsonl_with_no_json_object_at_all_is_unparseable(lake: Path) -> None:
    put(lake, "t1/raw/clicks/a.jsonl", "order_id,customer_id\n1,c\n")
    put(lake, "t1/raw/clicks/b.jsonl", '"just a string"\n[1]\n')

    table, outcomes = ObjectReader(lake.as_uri() + "/").read(
        [ref("t1/raw/clicks/a.jsonl"), ref("t1/raw/clicks/b.jsonl")], CLICKS
    )

    assert table.num_rows == 0
    assert [(o.status, o.reason) for o in outcomes] == [("quarantined", "unparseable")] * 2

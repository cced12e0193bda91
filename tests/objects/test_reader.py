"""ObjectReader: raw objects named by winning created-events -> one Arrow table + one outcome per ref."""

from __future__ import annotations

import gzip
import hashlib
import io
import time
from datetime import UTC, date, datetime
from decimal import Decimal
from pathlib import Path

import boto3
import pyarrow as pa
import pyarrow.parquet as pq
import pytest
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError, EndpointConnectionError

from jobs.contracts import DatasetContract, load_contracts
from jobs.objects.reader import ObjectReader, ObjectRef, silver_arrow_schema

PROJECT = Path(__file__).resolve().parents[2]
CONTRACTS = load_contracts(PROJECT / "conf" / "datasets.yaml")
ORDERS, CLICKS, INVENTORY = CONTRACTS["orders"], CONTRACTS["clicks"], CONTRACTS["inventory"]
BUCKET = "acme-lake"
EVENT_TIME = datetime(2024, 3, 1, 10, 0, 1, tzinfo=UTC)
UTC_US = pa.timestamp("us", tz="UTC")

ORDERS_CSV = (
    "order_id,customer_id,currency,amount,order_ts,note\n"  # by name, not position; extra column ignored
    "1,c-1,EUR,12.50,2024-03-01T10:00:00Z,first\n"
    "2,,,,,\n"
    '3,"c,3",USD,0.99,2024-03-01T23:59:59.5+01:00,x\n'
)
ORDERS_ROWS = [
    (1, "c-1", Decimal("12.50"), "EUR", datetime(2024, 3, 1, 10, 0, tzinfo=UTC)),
    (2, None, None, None, None),  # an empty field is null, whatever the column type
    (3, "c,3", Decimal("0.99"), "USD", datetime(2024, 3, 1, 22, 59, 59, 500000, tzinfo=UTC)),
]


@pytest.fixture
def lake(tmp_path: Path) -> Path:
    path = tmp_path / "lake"
    path.mkdir()
    return path


def root_of(lake: Path) -> str:
    return lake.as_uri() + "/"


def put(lake: Path, key: str, data: bytes | str, bucket: str = BUCKET) -> Path:
    path = lake / bucket / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data.encode() if isinstance(data, str) else data)
    return path


def ref(key: str, **overrides: object) -> ObjectRef:
    fields: dict[str, object] = {
        "bucket": BUCKET,
        "key": key,
        "tenant": key.split("/")[0],
        "dataset": key.split("/")[2],
        "version_id": None,
        "etag": None,
        "sequencer": "0055AED6DCD90281E5",
        "event_time": EVENT_TIME,
        "size": None,
    }
    fields.update(overrides)
    return ObjectRef(**fields)


def declared(table: pa.Table, contract: DatasetContract) -> list[tuple[object, ...]]:
    return [tuple(row[name] for name in contract.column_names) for row in table.to_pylist()]


def statuses(outcomes: list) -> list[tuple[str, str | None, int]]:
    return [(o.status, o.reason, o.rows) for o in outcomes]


def read_one(lake: Path, contract: DatasetContract, key: str, **overrides: object):
    table, outcomes = ObjectReader(root_of(lake)).read([ref(key, **overrides)], contract)
    assert len(outcomes) == 1
    assert table.schema == silver_arrow_schema(contract)
    return table, outcomes[0]


@pytest.mark.unit
def test_silver_schema_is_declared_columns_then_row_columns_then_lineage() -> None:
    assert silver_arrow_schema(ORDERS) == pa.schema(
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
            ("_source_bucket", pa.string()),
            ("_source_key", pa.string()),
            ("_source_version_id", pa.string()),
            ("_source_etag", pa.string()),
            ("_source_sequencer", pa.string()),
            ("_event_time", UTC_US),
        ]
    )


@pytest.mark.unit
@pytest.mark.parametrize("suffix", [".csv", ".csv.gz"])
def test_csv_rows_and_lineage(lake: Path, suffix: str) -> None:
    key = f"t1/raw/orders/2024/03/01/part{suffix}"
    body = ORDERS_CSV.encode()
    put(lake, key, gzip.compress(body) if suffix.endswith(".gz") else body)

    table, outcome = read_one(lake, ORDERS, key, version_id="v1", etag="abc-2")

    assert (outcome.status, outcome.reason, outcome.rows, outcome.rows_with_errors) == ("ok", None, 3, 0)
    assert declared(table, ORDERS) == ORDERS_ROWS
    assert table.column("_rescued").to_pylist() == ['{"note":"first"}', None, '{"note":"x"}']
    lineage = {k: v for k, v in table.to_pylist()[1].items() if k.startswith("_")}
    assert lineage == {
        "_rescued": None,  # the row's only undeclared value is empty
        "_row_number": 2,
        "_conversion_errors": None,
        "_raw": None,
        "_source_bucket": BUCKET,
        "_source_key": key,
        "_source_version_id": "v1",
        "_source_etag": "abc-2",
        "_source_sequencer": "0055AED6DCD90281E5",
        "_event_time": EVENT_TIME,
    }


@pytest.mark.unit
def test_every_declared_type_from_csv_and_jsonl(lake: Path) -> None:
    contract = DatasetContract.model_validate(
        {
            "name": "types",
            "format": "csv",
            "columns": [
                {"name": "s", "type": "smallint"},
                {"name": "d", "type": "double"},
                {"name": "f", "type": "float"},
                {"name": "b", "type": "boolean"},
                {"name": "day", "type": "date"},
                {"name": "ts", "type": "timestamp"},
            ],
        }
    )
    put(
        lake, "t1/raw/types/a.csv", "s,d,f,b,day,ts\n-7,2.5,0.25,true,2024-02-29,2024-03-01 10:00:00\n,,,,,\n"
    )
    put(
        lake,
        "t1/raw/types/a.jsonl",
        '{"s":-7,"d":2.5,"f":0.25,"b":true,"day":"2024-02-29","ts":"2024-03-01T10:00:00Z"}\n{"s":null}\n',
    )
    expected = [
        (-7, 2.5, 0.25, True, date(2024, 2, 29), datetime(2024, 3, 1, 10, tzinfo=UTC)),  # no zone = UTC
        (None, None, None, None, None, None),
    ]

    csv_table, csv_outcome = read_one(lake, contract, "t1/raw/types/a.csv")
    json_contract = contract.model_copy(update={"format": "jsonl"})
    json_table, json_outcome = read_one(lake, json_contract, "t1/raw/types/a.jsonl")

    assert (csv_outcome.status, json_outcome.status) == ("ok", "ok")
    assert declared(csv_table, contract) == expected
    assert declared(json_table, contract) == expected


@pytest.mark.unit
@pytest.mark.parametrize("suffix", [".jsonl", ".json.gz"])
def test_jsonl_rows(lake: Path, suffix: str) -> None:
    body = (
        b'{"event_id":"e1","user_id":"u1","page":"/home","ts":"2024-03-01T10:00:00Z","duration_ms":120,"extra":{"a":1}}\n'
        b'{"event_id":"e2","user_id":null}\n'
        b"\n"
        b'{"duration_ms":-1,"page":"","event_id":"e3","ts":"2024-03-01T12:30:00.25+02:00"}'
    )
    key = f"t1/raw/clicks/c{suffix}"
    put(lake, key, gzip.compress(body) if suffix.endswith(".gz") else body)

    table, outcome = read_one(lake, CLICKS, key)

    assert (outcome.status, outcome.rows) == ("ok", 3)
    assert declared(table, CLICKS) == [
        ("e1", "u1", "/home", datetime(2024, 3, 1, 10, tzinfo=UTC), 120),
        ("e2", None, None, None, None),
        ("e3", None, "", datetime(2024, 3, 1, 10, 30, 0, 250000, tzinfo=UTC), -1),
    ]


def parquet_bytes(table: pa.Table) -> bytes:
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()


@pytest.mark.unit
def test_parquet_is_cast_to_contract_types(lake: Path) -> None:
    source = pa.table(
        {
            "qty": pa.array([5, None], pa.int64()),  # int64 -> int
            "extra": ["x", "y"],
            "snapshot_date": pa.array([datetime(2024, 3, 1), None], pa.timestamp("ns")),
            "sku": pa.array(["A-1", None]).dictionary_encode(),
            "warehouse": pa.array(["", "w2"], pa.large_string()),
        }
    )
    put(lake, "t1/raw/inventory/i.parquet", parquet_bytes(source))

    table, outcome = read_one(lake, INVENTORY, "t1/raw/inventory/i.parquet")

    assert (outcome.status, outcome.rows) == ("ok", 2)
    assert declared(table, INVENTORY) == [("A-1", "", 5, date(2024, 3, 1)), (None, "w2", None, None)]


@pytest.mark.unit
def test_parquet_missing_column_uncastable_type_and_garbage_are_quarantined(lake: Path) -> None:
    put(lake, "t1/raw/inventory/missing.parquet", parquet_bytes(pa.table({"sku": ["a"], "qty": [1]})))
    nested = pa.table({"sku": ["a"], "warehouse": ["w"], "qty": [{"n": 1}], "snapshot_date": [None]})
    put(lake, "t1/raw/inventory/nested.parquet", parquet_bytes(nested))
    put(lake, "t1/raw/inventory/garbage.parquet", b"not parquet at all")
    keys = ["missing", "nested", "garbage"]

    table, outcomes = ObjectReader(root_of(lake)).read(
        [ref(f"t1/raw/inventory/{k}.parquet") for k in keys], INVENTORY
    )

    assert table.num_rows == 0
    assert statuses(outcomes) == [
        ("quarantined", "schema_mismatch", 0),
        ("quarantined", "schema_mismatch", 0),
        ("quarantined", "unparseable", 0),
    ]
    assert "['warehouse', 'snapshot_date']" in (outcomes[0].detail or "")
    assert "column qty: struct<n: int64> is not int32" in (outcomes[1].detail or "")


@pytest.mark.unit
@pytest.mark.parametrize(
    "name",
    ["with space.csv", "a+b.csv", "ünïcødé 東京.csv", "100%#?x.csv", "sub dir/x+y z.csv"],
)
def test_keys_are_decoded_paths(lake: Path, name: str) -> None:
    key = f"t1/raw/orders/{name}"
    put(lake, key, ORDERS_CSV)

    table, outcome = read_one(lake, ORDERS, key)

    assert outcome.status == "ok"
    assert table.column("_source_key").to_pylist() == [key] * 3


@pytest.mark.unit
def test_missing_file_is_superseded(lake: Path) -> None:
    (lake / BUCKET).mkdir()
    table, outcome = read_one(lake, ORDERS, "t1/raw/orders/gone.csv")
    assert (outcome.status, outcome.reason, outcome.rows, table.num_rows) == (
        "superseded",
        "object_gone",
        0,
        0,
    )


@pytest.mark.unit
def test_missing_bucket_directory_raises(lake: Path) -> None:
    # A wrong objects root must fail loudly, not make every event "superseded".
    with pytest.raises(FileNotFoundError, match="bucket directory"):
        ObjectReader(root_of(lake / "nowhere")).read([ref("t1/raw/orders/a.csv")], ORDERS)


@pytest.mark.unit
def test_etag_is_checked_when_it_is_a_plain_md5(lake: Path) -> None:
    key = "t1/raw/orders/e.csv"
    md5 = hashlib.md5(put(lake, key, ORDERS_CSV).read_bytes()).hexdigest()
    refs = [
        ref(key, etag=md5),
        ref(key, etag=f'"{md5.upper()}"'),
        ref(key, etag="0" * 32),
        ref(key, etag="0" * 32 + "-3"),  # multipart: cannot be checked locally
    ]

    table, outcomes = ObjectReader(root_of(lake)).read(refs, ORDERS)

    assert statuses(outcomes) == [
        ("ok", None, 3),
        ("ok", None, 3),
        ("superseded", "etag_changed", 0),
        ("ok", None, 3),
    ]
    assert table.num_rows == 9


@pytest.mark.unit
def test_bad_objects_become_outcomes(lake: Path) -> None:
    header = "order_id,customer_id,amount,currency,order_ts\n"
    good_gz = gzip.compress(ORDERS_CSV.encode())
    files: dict[str, bytes | str] = {
        "wrong_header.csv": "order_id,customer,amount\n1,c,2.00\n",
        "wrong_header_and_bad_value.csv": "order_id,customer,amount\nx,c,2.00\n",
        "doubled_header.csv": header.strip() + ",amount\n1,c,1.00,EUR,,2.00\n",
        "not_utf8.csv": header.encode() + b"1,\xff\xfe,1.00,EUR,\n",
        "zero.csv": b"",
        "header_only.csv": header,
        "truncated.csv.gz": good_gz[: len(good_gz) // 2],
        "not_gzip.csv.gz": ORDERS_CSV,
        "ragged.csv": header + "1,c\n",
        "archive.csv.bz2": b"BZh9",
    }
    for name, body in files.items():
        put(lake, f"t1/raw/orders/{name}", body)

    table, outcomes = ObjectReader(root_of(lake)).read([ref(f"t1/raw/orders/{n}") for n in files], ORDERS)

    assert table.num_rows == 0
    assert table.schema == silver_arrow_schema(ORDERS)
    assert statuses(outcomes) == [
        ("quarantined", "wrong_header", 0),
        ("quarantined", "wrong_header", 0),
        ("quarantined", "wrong_header", 0),
        ("quarantined", "unparseable", 0),
        ("quarantined", "empty_file", 0),
        ("ok", None, 0),
        ("quarantined", "corrupt_compression", 0),
        ("quarantined", "corrupt_compression", 0),
        ("quarantined", "unparseable", 0),
        ("quarantined", "unsupported_format", 0),
    ]
    assert "missing columns ['customer_id', 'currency', 'order_ts']" in (outcomes[0].detail or "")
    assert "missing columns ['customer_id', 'currency', 'order_ts']" in (outcomes[1].detail or "")
    assert "columns ['amount'] appear more than once" in (outcomes[2].detail or "")


@pytest.mark.unit
def test_csv_options_and_unsafe_keys(lake: Path) -> None:
    contract = ORDERS.model_copy(update={"options": {"header": "false", "sep": ";"}})
    put(lake, "t1/raw/orders/semi.csv", "7;c7;3.10;EUR;2024-03-01T00:00:00Z\n8;;;;\n")
    put(lake, "t1/escape.csv", ORDERS_CSV)

    table, outcomes = ObjectReader(root_of(lake)).read(
        [ref("t1/raw/orders/semi.csv"), ref("t1/raw/orders/../../escape.csv", dataset="orders")], contract
    )

    assert statuses(outcomes) == [("ok", None, 2), ("quarantined", "unsafe_key", 0)]
    assert declared(table, ORDERS) == [
        (7, "c7", Decimal("3.10"), "EUR", datetime(2024, 3, 1, tzinfo=UTC)),
        (8, None, None, None, None),
    ]


@pytest.mark.unit
def test_many_objects_keep_ref_order_and_per_row_lineage(lake: Path) -> None:
    refs = []
    for i in range(50):  # every 7th object is ragged; i % 4 rows each (0 rows: header only)
        key = f"t1/raw/orders/batch/{i:02d}.csv"
        rows = "1,c\n" if i % 7 == 3 else "".join(f"{i * 10 + j},c{i},1.00,EUR,\n" for j in range(i % 4))
        put(lake, key, "order_id,customer_id,amount,currency,order_ts\n" + rows)
        refs.append(ref(key, sequencer=f"{i:018X}", version_id=f"v{i}"))

    table, outcomes = ObjectReader(root_of(lake), max_workers=8).read(refs, ORDERS)

    assert [o.ref for o in outcomes] == refs
    assert [o.status for o in outcomes] == ["quarantined" if i % 7 == 3 else "ok" for i in range(50)]
    assert [o.rows for o in outcomes] == [0 if i % 7 == 3 else i % 4 for i in range(50)]
    expected = [
        (i * 10 + j, f"t1/raw/orders/batch/{i:02d}.csv", f"v{i}", f"{i:018X}")
        for i in range(50)
        if i % 7 != 3
        for j in range(i % 4)
    ]
    got = [
        (r["order_id"], r["_source_key"], r["_source_version_id"], r["_source_sequencer"])
        for r in table.to_pylist()
    ]
    assert got == expected


@pytest.mark.unit
def test_empty_reads_keep_the_schema(lake: Path) -> None:
    table, outcomes = ObjectReader(root_of(lake)).read([], CLICKS)
    assert (table.num_rows, outcomes) == (0, [])
    assert table.schema == silver_arrow_schema(CLICKS)


@pytest.mark.unit
def test_refs_of_other_tables_are_refused(lake: Path) -> None:
    reader = ObjectReader(root_of(lake))
    with pytest.raises(ValueError, match="share bucket, tenant and dataset"):
        reader.read([ref("t1/raw/orders/a.csv"), ref("t2/raw/orders/a.csv")], ORDERS)
    with pytest.raises(ValueError, match="contract is 'orders'"):
        reader.read([ref("t1/raw/clicks/a.jsonl")], ORDERS)
    with pytest.raises(ValueError, match="outside tenant"):
        reader.read([ref("t2/raw/orders/a.csv", tenant="t1")], ORDERS)


@pytest.mark.unit
def test_unreachable_s3_raises() -> None:
    client = boto3.client(
        "s3",
        endpoint_url="http://127.0.0.1:9",
        config=BotoConfig(retries={"max_attempts": 1, "mode": "standard"}, connect_timeout=1),
    )
    with pytest.raises(EndpointConnectionError):
        ObjectReader("s3://", s3_client=client).read([ref("t1/raw/orders/a.csv")], ORDERS)


@pytest.mark.integration
def test_s3_reads_the_version_the_event_names(moto_endpoint: str) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    bucket = "silverline-reader-test"
    s3.create_bucket(Bucket=bucket)
    s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    key = "t1/raw/orders/2024/a b+ü.csv"
    header = "order_id,customer_id,amount,currency,order_ts\n"
    v1 = s3.put_object(Bucket=bucket, Key=key, Body=header + "1,c1,1.00,EUR,\n")
    v2 = s3.put_object(Bucket=bucket, Key=key, Body=header + "2,c2,2.00,EUR,\n3,,,,\n")
    gone = "t1/raw/orders/gone.csv"
    g1 = s3.put_object(Bucket=bucket, Key=gone, Body=header)
    s3.delete_object(Bucket=bucket, Key=gone)  # a delete marker on top
    dropped = "t1/raw/orders/dropped.csv"
    d1 = s3.put_object(Bucket=bucket, Key=dropped, Body=header)
    s3.delete_object(Bucket=bucket, Key=dropped, VersionId=d1["VersionId"])
    refs = [
        ref(key, bucket=bucket, version_id=v1["VersionId"]),
        ref(key, bucket=bucket, etag=v1["ETag"]),  # stale
        ref(key, bucket=bucket, etag=v2["ETag"].strip('"')),
        ref(gone, bucket=bucket, etag=g1["ETag"]),
        ref(dropped, bucket=bucket, version_id=d1["VersionId"]),
        ref(key, bucket=bucket),
    ]

    table, outcomes = ObjectReader("s3://", s3_client=s3, max_workers=4).read(refs, ORDERS)

    assert statuses(outcomes) == [
        ("ok", None, 1),
        ("superseded", "etag_changed", 0),
        ("ok", None, 2),
        ("superseded", "object_gone", 0),
        ("superseded", "version_gone", 0),
        ("ok", None, 2),
    ]
    got = [(r["order_id"], r["customer_id"], r["_source_version_id"]) for r in table.to_pylist()]
    assert got == [
        (1, "c1", v1["VersionId"]),
        (2, "c2", None),
        (3, None, None),
        (2, "c2", v2["VersionId"]),  # a ref naming no version: lineage names the one S3 served
        (3, None, v2["VersionId"]),
    ]
    assert outcomes[5].ref.etag == v2["ETag"] and outcomes[2].ref.version_id is None
    with pytest.raises(ClientError, match="NoSuchBucket"):  # not "superseded": storage is misconfigured
        ObjectReader("s3://", s3_client=s3).read([ref(key, bucket="no-such-bucket-here")], ORDERS)


@pytest.mark.unit
def test_throughput_of_small_csv_files(lake: Path) -> None:
    header = "order_id,customer_id,amount,currency,order_ts\n"
    body = header + "".join(f"{i},c{i},{i}.25,EUR,2024-03-01T10:00:{i:02d}Z\n" for i in range(50))
    refs = []
    for i in range(1000):
        key = f"t1/raw/orders/bench/{i:04d}.csv"
        put(lake, key, body)
        refs.append(ref(key))
    reader = ObjectReader(root_of(lake), max_workers=8)

    started = time.perf_counter()
    table, outcomes = reader.read(refs, ORDERS)
    elapsed = time.perf_counter() - started

    assert table.num_rows == 50_000
    assert {o.status for o in outcomes} == {"ok"}
    print(f"\nObjectReader: {len(refs) / elapsed:,.0f} files/s (1,000 CSVs x 50 rows, max_workers=8)")


def test_quoted_empty_string_stays_empty_and_unquoted_empty_is_null(lake: Path) -> None:
    put(lake, "t1/raw/orders/q.csv", 'order_id,customer_id,amount,currency,order_ts\n4,"",1,,\n')
    table, outcomes = ObjectReader(root_of(lake)).read([ref("t1/raw/orders/q.csv")], ORDERS)
    assert [o.status for o in outcomes] == ["ok"]
    assert declared(table, ORDERS) == [(4, "", Decimal("1.00"), None, None)]


# ---- limits (R11): past a limit the object is quarantined with the limit as its reason ---------------


def gzip_bomb(expanded_mb: int) -> bytes:
    """A few hundred KB of gzip that expands to ``expanded_mb`` MB of one endless CSV line."""
    out = io.BytesIO()
    with gzip.GzipFile(fileobj=out, mode="wb", compresslevel=9) as gz:
        gz.write(b"order_id,customer_id,amount,currency,order_ts\n")
        chunk = b"9" * (1 << 20)
        for _ in range(expanded_mb):
            gz.write(chunk)
    return out.getvalue()


@pytest.mark.unit
def test_a_gzip_bomb_is_quarantined_at_the_decompressed_limit_without_expanding_it_all(lake: Path) -> None:
    bomb = gzip_bomb(200)
    assert len(bomb) < 1 << 20  # well under a MB stored
    good = "t1/raw/orders/good.csv.gz"
    put(lake, "t1/raw/orders/bomb.csv.gz", bomb)
    put(lake, good, gzip.compress(ORDERS_CSV.encode()))
    reader = ObjectReader(root_of(lake), max_decompressed_bytes=16 << 20)

    table, outcomes = reader.read([ref("t1/raw/orders/bomb.csv.gz"), ref(good)], ORDERS)

    assert statuses(outcomes) == [
        ("quarantined", "decompressed_bytes_limit", 0),
        ("ok", None, len(ORDERS_ROWS)),
    ]
    assert "16,777,216" in (outcomes[0].detail or "")  # the limit it hit, by name and size
    assert "stream.max_decompressed_bytes" in (outcomes[0].detail or "")
    assert table.num_rows == len(ORDERS_ROWS)


@pytest.mark.unit
def test_an_object_over_the_byte_limit_is_quarantined_before_it_is_read(lake: Path) -> None:
    big = "t1/raw/orders/big.csv"
    put(lake, big, ORDERS_CSV + "9," * (1 << 19) + "\n")
    put(lake, "t1/raw/orders/small.csv", ORDERS_CSV)
    reader = ObjectReader(root_of(lake), max_object_bytes=1 << 20)

    table, outcomes = reader.read([ref(big), ref("t1/raw/orders/small.csv")], ORDERS)

    assert statuses(outcomes) == [("quarantined", "object_bytes_limit", 0), ("ok", None, len(ORDERS_ROWS))]
    assert "stream.max_object_bytes" in (outcomes[0].detail or "")
    assert table.num_rows == len(ORDERS_ROWS)


@pytest.mark.unit
def test_the_default_limits_leave_ordinary_objects_alone(lake: Path) -> None:
    from jobs.config import load_config

    stream = load_config(None, environ={}).stream
    assert stream.max_object_bytes == 1 << 34 and stream.max_decompressed_bytes == 1 << 30
    assert stream.read_block_bytes == 1 << 26
    put(lake, "t1/raw/orders/a.csv.gz", gzip.compress(ORDERS_CSV.encode()))
    _, outcome = read_one(lake, ORDERS, "t1/raw/orders/a.csv.gz")
    assert (outcome.status, outcome.rows) == ("ok", len(ORDERS_ROWS))


@pytest.mark.unit
@pytest.mark.parametrize("contract", [ORDERS, CLICKS], ids=["csv", "jsonl"])
def test_a_line_over_the_row_limit_quarantines_its_object_and_one_at_the_limit_does_not(
    lake: Path, contract: DatasetContract
) -> None:
    limit = 4096
    if contract is ORDERS:
        header = ORDERS_CSV.splitlines(keepends=True)[0]
        at_limit = "4,c-4,EUR,1.00,2024-03-01T10:00:00Z," + "n" * limit
        at_limit = at_limit[:limit] + "\n"
        over = "5,c-5,EUR,1.00,2024-03-01T10:00:00Z," + "n" * limit + "\n"
        good, bad = ORDERS_CSV + at_limit, header + over + "6,c-6,EUR,1.00,2024-03-01T10:00:00Z,\n"
    else:
        row = '{"event_id":"e1","page":"' + "p" * limit
        at_limit = row[: limit - 2] + '"}'
        good, bad = '{"event_id":"e0"}\n' + at_limit + "\n", '{"event_id":"e0"}\n' + row + '"}\n'
    suffix = ".csv" if contract is ORDERS else ".jsonl"
    put(lake, f"t1/raw/{contract.name}/good{suffix}", good)
    put(lake, f"t1/raw/{contract.name}/bad{suffix}.gz", gzip.compress(bad.encode()))
    reader = ObjectReader(root_of(lake), max_row_bytes=limit)

    _, outcomes = reader.read(
        [ref(f"t1/raw/{contract.name}/good{suffix}"),
         ref(f"t1/raw/{contract.name}/bad{suffix}.gz")],
        contract,
    )  # fmt: skip

    assert [(o.status, o.reason) for o in outcomes] == [("ok", None), ("quarantined", "row_bytes_limit")]
    assert "stream.max_row_bytes" in (outcomes[1].detail or "")
    assert "line 2" in (outcomes[1].detail or "")


@pytest.mark.unit
def test_the_longest_line_is_found_across_block_boundaries() -> None:
    from jobs.objects.formats import longest_line

    assert longest_line(b"", block=4) == (0, 0)
    assert longest_line(b"abc", block=4) == (3, 1)
    assert longest_line(b"ab\nabcdefghij\nabc\n", block=4) == (10, 2)
    assert longest_line(b"ab\r\nabc", block=2) == (3, 1)  # the \r counts
    assert longest_line(b"\n\n\nabcdefg", block=3) == (7, 4)

"""The traffic simulator: bodies, ground truth, verifier, SQS publishing and S3-API mode.

Expectations are computed from the spec and from the files the simulator wrote
(decoded with the job's own contract decoder), never from the simulator's
counters alone.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import json
import uuid
from collections import Counter
from decimal import Decimal
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pytest

from jobs.cli import build_parser
from jobs.contracts import load_contracts
from jobs.events.parse import normalize_sequencer, parse_message
from jobs.objects.formats import ContractDecoder, DecodeError
from jobs.simulate import (
    GroundTruth,
    SimulationSpec,
    create_group,
    normalise_value,
    publish,
    run,
    run_s3_api,
    verify,
)
from jobs.simulate.truth import row_tuples

PROJECT = Path(__file__).resolve().parents[2]
SPEC = SimulationSpec(bad_row_rate=0.0)  # bad rows: see test_bad_rows_are_marked_in_the_truth
ODD = (" ", "+", "ä", "é", "東", "(", "&", "=")


@pytest.fixture(scope="module")
def simulated(tmp_path_factory: pytest.TempPathFactory) -> tuple[Path, list[str], GroundTruth]:
    lake = tmp_path_factory.mktemp("simlake")
    bodies, truth = run(SPEC, lake)
    return lake, bodies, truth


def parsed(bodies: list[str]) -> list[Any]:
    return [record for body in bodies for record in parse_message(body)]


def exact(spec: SimulationSpec) -> dict[str, int]:
    """Every counter computed from the spec's documented rules, independently of the simulator."""
    overwrites = min(round(spec.objects * spec.overwrite_rate), spec.objects - 1)
    new_keys = spec.objects - overwrites
    deletes = round(new_keys * spec.delete_rate)
    bad = round(spec.objects * spec.bad_rate)
    raw_records = spec.objects + bad + deletes
    pairs = min(round(raw_records * spec.pair_rate / 2), raw_records // 2)
    raw_messages = raw_records - pairs
    dups = round(raw_messages * spec.dup_rate)
    malformed = round(spec.objects * spec.malformed_rate)
    return {
        "uploads": spec.objects,
        "overwrites": overwrites,
        "new_keys": new_keys,
        "deletes": deletes,
        "bad_files": bad,
        "multi_record_messages": pairs,
        "duplicates": dups,
        "reordered": round(raw_messages * spec.reorder_rate),
        "delayed": round(raw_messages * spec.delay_rate),
        "sns_wrapped": round(raw_messages * spec.sns_rate),
        "malformed": malformed,
        "test_events": spec.test_events,
        "non_raw_events": spec.non_raw_events,
        "messages": raw_messages + dups + malformed + spec.test_events + spec.non_raw_events,
    }


# ---- spec ------------------------------------------------------------------------------------------
@pytest.mark.unit
@pytest.mark.parametrize(
    ("field", "value", "message"),
    [
        ("dup_rate", 1.5, "dup_rate must be a number between 0 and 1"),
        ("reorder_rate", -0.1, "reorder_rate must be"),
        ("bad_rate", "0.1", "bad_rate must be"),
        ("tenants", 0, "tenants must be an integer >= 1"),
        ("rows_per_object", (5, 2), "rows_per_object must be"),
        ("bucket", "Bad_Bucket", "bucket must be a valid S3 bucket name"),
    ],
)
def test_spec_rejects_bad_values_with_clear_errors(field: str, value: Any, message: str) -> None:
    with pytest.raises(ValueError, match=message):
        SimulationSpec(**{field: value})


@pytest.mark.unit
def test_spec_round_trips_through_its_dict() -> None:
    spec = SimulationSpec(tenants=3, objects=9, rows_per_object=(1, 2), seed=3)
    assert SimulationSpec.from_dict(json.loads(json.dumps(spec.to_dict()))) == spec


# ---- determinism and bodies -------------------------------------------------------------------------
@pytest.mark.unit
def test_same_seed_gives_identical_bodies_truth_and_files(
    simulated: tuple[Path, list[str], GroundTruth], tmp_path: Path
) -> None:
    lake, bodies, truth = simulated
    again_bodies, again_truth = run(SPEC, tmp_path)
    assert again_bodies == bodies
    assert again_truth.to_dict() == truth.to_dict()
    for op in truth.operations:
        if op["kind"] == "put":
            assert (tmp_path / SPEC.bucket / op["key"]).exists() == (lake / SPEC.bucket / op["key"]).exists()
    other_bodies, _ = run(SimulationSpec(seed=8), tmp_path / "other")
    assert other_bodies != bodies


@pytest.mark.unit
def test_every_raw_record_parses_to_its_operation(simulated: tuple[Path, list[str], GroundTruth]) -> None:
    _, bodies, truth = simulated
    by_identity = {(op["key"], normalize_sequencer(op["sequencer"])[0]): op for op in truth.operations}
    events = [r for r in parsed(bodies) if r.outcome == "event"]
    assert {(r.key, r.sequencer) for r in events} == set(by_identity)
    for record in events:
        op = by_identity[(record.key, record.sequencer)]
        assert (record.tenant, record.zone, record.dataset) == (op["tenant"], "raw", op["dataset"])
        assert record.bucket == SPEC.bucket
        assert record.event_name == op["event_name"]
        assert record.event_kind == ("removed" if op["kind"] == "delete" else "created")
        assert record.event_time is not None and record.event_time.microsecond % 1000 == 0
        if op["kind"] == "put":
            assert record.size == op["size"]
            assert record.etag is not None and len(record.etag) == 32  # plain MD5 hex, never "-<n>"
        else:
            assert record.etag is None and record.size is None
    odd_keys = {r.key for r in events if any(c in (r.key or "") for c in ODD)}
    assert len(odd_keys) >= 3, "no keys with spaces, '+' or unicode"
    assert any("+" in k for k in odd_keys) and any(not k.isascii() for k in odd_keys)


@pytest.mark.unit
def test_etag_of_the_live_version_is_the_md5_of_the_file(
    simulated: tuple[Path, list[str], GroundTruth],
) -> None:
    lake, bodies, _ = simulated
    latest: dict[str, Any] = {}
    for record in parsed(bodies):
        if record.outcome != "event" or record.event_kind != "created":
            continue
        if record.key not in latest or record.sequencer > latest[record.key].sequencer:
            latest[record.key] = record
    for key, record in latest.items():
        path = lake / SPEC.bucket / key
        if path.exists():
            assert hashlib.md5(path.read_bytes()).hexdigest() == record.etag, key


@pytest.mark.unit
def test_sequencers_are_upper_hex_and_strictly_increase_per_key(
    simulated: tuple[Path, list[str], GroundTruth],
) -> None:
    _, _, truth = simulated
    per_key: dict[str, list[str]] = {}
    for op in truth.operations:
        per_key.setdefault(op["key"], []).append(op["sequencer"])
    assert any(len(s) > 1 for s in per_key.values())
    for key, sequencers in per_key.items():
        for seq in sequencers:
            assert 16 <= len(seq) <= 18 and seq == seq.upper() and int(seq, 16) > 0
        values = [int(s, 16) for s in sequencers]
        assert values == sorted(set(values)), key
    assert {len(op["sequencer"]) for op in truth.operations} == {16, 18}


@pytest.mark.unit
def test_duplicates_share_identity_and_every_event_is_there_once_or_more(
    simulated: tuple[Path, list[str], GroundTruth],
) -> None:
    _, bodies, truth = simulated
    copies = Counter(bodies)
    duplicated = [b for b, n in copies.items() if n > 1]
    assert all(copies[b] == 2 for b in duplicated)
    assert len(duplicated) == exact(SPEC)["duplicates"]
    ids = Counter(r.event_id for r in parsed(bodies) if r.outcome == "event")
    assert len(ids) == len(truth.operations)
    extra_records = sum(len(parse_message(b)) for b in duplicated)
    assert sum(n - 1 for n in ids.values()) == extra_records


@pytest.mark.unit
def test_some_key_arrives_out_of_sequencer_order(simulated: tuple[Path, list[str], GroundTruth]) -> None:
    _, bodies, _ = simulated
    seen: dict[str, list[str]] = {}
    for record in parsed(bodies):
        if record.outcome == "event":
            seen.setdefault(record.key, []).append(record.sequencer)
    assert any(seqs != sorted(seqs) for seqs in seen.values())


@pytest.mark.unit
def test_malformed_test_and_non_raw_messages(simulated: tuple[Path, list[str], GroundTruth]) -> None:
    _, bodies, _ = simulated
    records = parsed(bodies)
    rejected = [r for r in records if r.outcome == "rejected"]
    assert len(rejected) == exact(SPEC)["malformed"]
    assert {r.reason for r in rejected} == {"invalid_json", "unknown_envelope", "key_traversal"}
    assert sum(r.outcome == "test" for r in records) == SPEC.test_events
    ignored = [r for r in records if r.outcome == "ignored"]
    assert len(ignored) == SPEC.non_raw_events
    assert {(r.reason, r.zone) for r in ignored} == {("not_raw_zone", "silver")}
    assert sum(r.envelope == "sns" for r in records) >= exact(SPEC)["sns_wrapped"]


@pytest.mark.unit
def test_counters_equal_what_the_spec_asks_for(simulated: tuple[Path, list[str], GroundTruth]) -> None:
    _, bodies, truth = simulated
    counters = truth.injected
    for name, value in exact(SPEC).items():
        assert getattr(counters, name) == value, name
    assert counters.messages == len(bodies)
    assert counters.records == sum(len(parse_message(b)) for b in bodies)
    assert len(truth.operations) == SPEC.objects + counters.bad_files + counters.deletes


# ---- truth --------------------------------------------------------------------------------------------
def decode(lake: Path, key: str, dataset: str) -> list[tuple[Any, ...]]:
    contract = load_contracts(PROJECT / "conf" / "datasets.yaml")[dataset]
    table = ContractDecoder(contract).decode((lake / SPEC.bucket / key).read_bytes(), key)
    return row_tuples(table.to_pylist(), list(contract.column_names))


@pytest.mark.unit
def test_truth_holds_exactly_the_last_version_of_every_live_key(
    simulated: tuple[Path, list[str], GroundTruth],
) -> None:
    lake, _, truth = simulated
    last: dict[str, dict[str, Any]] = {}
    for op in truth.operations:
        last[op["key"]] = op
    overwritten = {op["key"] for op in truth.operations if op["overwrite"]}
    assert overwritten
    for key, op in last.items():
        live = key in truth.live_keys(op["tenant"], op["dataset"])
        if op["kind"] == "delete":
            assert not live and not (lake / SPEC.bucket / key).exists()
        elif op["bad_reason"] is None:
            assert live
            rows = truth.tables[op["tenant"]][op["dataset"]][key]
            assert len(rows) == op["rows"]
            assert row_tuples(rows, truth.columns[op["dataset"]]) == decode(lake, key, op["dataset"])
    deleted = {k for k, op in last.items() if op["kind"] == "delete"}
    assert len(deleted) == exact(SPEC)["deletes"]
    expected_total = sum(op["rows"] for op in last.values() if op["kind"] == "put" and op["rows"] is not None)
    assert sum(len(truth.expected_rows(t, d)) for t, d in truth.table_pairs()) == expected_total


@pytest.mark.unit
def test_bad_files_are_listed_with_the_reason_the_decoder_gives(
    simulated: tuple[Path, list[str], GroundTruth],
) -> None:
    lake, _, truth = simulated
    assert len(truth.quarantined) == exact(SPEC)["bad_files"]
    assert set(truth.quarantined.values()) == {
        "wrong_header",
        "corrupt_compression",
        "empty_file",
        "unknown_dataset",
    }
    contracts = load_contracts(PROJECT / "conf" / "datasets.yaml")
    for key, reason in truth.quarantined.items():
        dataset = key.split("/")[2]
        if reason == "unknown_dataset":
            assert dataset not in contracts
            continue
        with pytest.raises(DecodeError) as info:
            ContractDecoder(contracts[dataset]).decode((lake / SPEC.bucket / key).read_bytes(), key)
        assert info.value.reason == reason


@pytest.mark.unit
def test_truth_saves_and_loads(simulated: tuple[Path, list[str], GroundTruth], tmp_path: Path) -> None:
    _, _, truth = simulated
    loaded = GroundTruth.load(truth.save(tmp_path / "deep" / "truth.json"))
    assert loaded.to_dict() == truth.to_dict()
    tenant, dataset = loaded.table_pairs()[0]
    assert loaded.expected_rows(tenant, dataset) == truth.expected_rows(tenant, dataset)


@pytest.mark.unit
def test_normalise_value() -> None:
    cet = dt.timezone(dt.timedelta(hours=1))
    assert normalise_value(Decimal("12.30")) == "12.30"
    assert normalise_value(Decimal("-0.50")) == "-0.50"
    assert normalise_value(dt.datetime(2024, 3, 1, 10, 5)) == "2024-03-01T10:05:00Z"
    assert normalise_value(dt.datetime(2024, 3, 1, 11, 5, tzinfo=cet)) == "2024-03-01T10:05:00Z"
    assert (
        normalise_value(dt.datetime(2024, 3, 1, 10, 5, 0, 1500, tzinfo=dt.UTC))
        == "2024-03-01T10:05:00.001500Z"
    )
    assert normalise_value(dt.date(2024, 3, 1)) == "2024-03-01"
    assert [normalise_value(v) for v in (None, "x", 3, 1.5, True)] == [None, "x", 3, 1.5, True]
    with pytest.raises(TypeError):
        normalise_value(b"bytes")


# ---- verifier on hand-built Iceberg tables --------------------------------------------------------------
def write_table(table_dir: Path, rows: list[dict[str, Any]], *, appends: int = 1) -> None:
    """An orders table in the hadoop layout (vN.metadata.json), written by pyiceberg alone."""
    from pyiceberg.catalog.noop import NoopCatalog
    from pyiceberg.io import load_file_io
    from pyiceberg.partitioning import UNPARTITIONED_PARTITION_SPEC
    from pyiceberg.schema import Schema
    from pyiceberg.serializers import ToOutputFile
    from pyiceberg.table import CommitTableResponse, Table
    from pyiceberg.table.metadata import new_table_metadata
    from pyiceberg.table.sorting import UNSORTED_SORT_ORDER
    from pyiceberg.table.update import update_table_metadata
    from pyiceberg.types import DecimalType, LongType, NestedField, StringType, TimestamptzType

    class HadoopLayoutCatalog(NoopCatalog):
        def commit_table(self, table: Any, requirements: Any, updates: Any) -> CommitTableResponse:
            for requirement in requirements:
                requirement.validate(table.metadata)
            metadata = update_table_metadata(table.metadata, updates)
            version = int(Path(table.metadata_location).name.split(".")[0][1:]) + 1
            location = f"{metadata.location}/metadata/v{version}.metadata.json"
            ToOutputFile.table_metadata(metadata, table.io.new_output(location))
            return CommitTableResponse(metadata=metadata, metadata_location=location)

    schema = Schema(
        NestedField(1, "order_id", LongType()),
        NestedField(2, "customer_id", StringType()),
        NestedField(3, "amount", DecimalType(12, 2)),
        NestedField(4, "currency", StringType()),
        NestedField(5, "order_ts", TimestamptzType()),
        NestedField(6, "_source_key", StringType()),
    )
    location = str(table_dir)
    metadata = new_table_metadata(schema, UNPARTITIONED_PARTITION_SPEC, UNSORTED_SORT_ORDER, location, {})
    first = f"{location}/metadata/v1.metadata.json"
    io = load_file_io(location=location)
    ToOutputFile.table_metadata(metadata, io.new_output(first))
    table = Table(("t",), metadata, first, io, HadoopLayoutCatalog("test"))
    arrow_schema = pa.schema(
        [
            ("order_id", pa.int64()),
            ("customer_id", pa.string()),
            ("amount", pa.decimal128(12, 2)),
            ("currency", pa.string()),
            ("order_ts", pa.timestamp("us", tz="UTC")),
            ("_source_key", pa.string()),
        ]
    )
    for _ in range(appends):
        table.append(pa.Table.from_pylist([{**r, "_source_key": "k"} for r in rows], schema=arrow_schema))


def orders_truth(rows: list[dict[str, Any]]) -> GroundTruth:
    truth = GroundTruth(
        bucket="demo-lake", columns={"orders": ["order_id", "customer_id", "amount", "currency", "order_ts"]}
    )
    truth.record_put("acme", "orders", "acme/raw/orders/a.csv", rows)
    return truth


ROWS = [
    {
        "order_id": 1,
        "customer_id": None,
        "amount": Decimal("9.99"),
        "currency": "EUR",
        "order_ts": dt.datetime(2024, 3, 1, 10, tzinfo=dt.UTC),
    },
    {
        "order_id": 2,
        "customer_id": "c2",
        "amount": Decimal("-1.50"),
        "currency": "USD",
        "order_ts": dt.datetime(2024, 3, 2, 11, 30, tzinfo=dt.UTC),
    },
    {
        "order_id": 3,
        "customer_id": "c3",
        "amount": Decimal("100.00"),
        "currency": "GBP",
        "order_ts": dt.datetime(2024, 3, 3, 0, 0, 1, tzinfo=dt.UTC),
    },
]


@pytest.mark.unit
def test_verifier_passes_on_a_matching_table_and_finds_each_kind_of_difference(tmp_path: Path) -> None:
    silver = tmp_path / "demo-lake" / "acme" / "silver"
    write_table(silver / "orders", ROWS)
    result = verify(tmp_path, orders_truth(ROWS))
    assert result.ok, result.summary()
    (table,) = result.tables
    assert (table.expected_rows, table.actual_rows, table.snapshots) == (3, 3, 1)
    assert table.location == str(silver / "orders")

    extra = {**ROWS[0], "order_id": 99}
    (table,) = verify(tmp_path, orders_truth([*ROWS, extra])).tables
    assert (table.missing, table.unexpected, table.duplicates, table.ok) == (1, 0, 0, False)
    assert table.examples["missing"][0][0] == 99

    (table,) = verify(tmp_path, orders_truth(ROWS[:2])).tables
    assert (table.missing, table.unexpected, table.duplicates) == (0, 1, 0)


@pytest.mark.unit
def test_verifier_finds_duplicate_rows_and_unexpected_tables(tmp_path: Path) -> None:
    silver = tmp_path / "demo-lake"
    write_table(silver / "acme" / "silver" / "orders", ROWS, appends=2)
    write_table(silver / "hooli" / "silver" / "orders", [])
    write_table(silver / "initech" / "silver" / "orders", ROWS[:1])
    result = verify(tmp_path, orders_truth(ROWS))
    by_tenant = {t.tenant: t for t in result.tables}
    acme = by_tenant["acme"]
    assert (acme.actual_rows, acme.snapshots, acme.duplicates, acme.unexpected, acme.missing) == (
        6,
        2,
        3,
        3,
        0,
    )
    assert by_tenant["hooli"].ok and not by_tenant["hooli"].expected  # an empty unexpected table is fine
    assert not by_tenant["initech"].ok and by_tenant["initech"].error == "table not expected by the truth"
    assert not result.ok


@pytest.mark.unit
def test_verifier_reports_a_missing_table(tmp_path: Path) -> None:
    (table,) = verify(tmp_path, orders_truth(ROWS)).tables
    assert (table.location, table.missing, table.ok) == (None, 3, False)


def cli(*argv: str) -> int:
    """Run a command as ``silverline`` does, without reconfiguring logging."""
    args = build_parser().parse_args(list(argv))
    code: int = args.func(args)
    return code


# ---- command line without a server -----------------------------------------------------------------
@pytest.mark.unit
def test_cli_writes_files_truth_and_bodies_without_a_queue(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    truth_file, bodies_file = tmp_path / "truth.json", tmp_path / "bodies.jsonl"
    args = ["simulate", "--lake-root", str(tmp_path / "lake"), "--objects", "12", "--tenants", "2"]
    assert cli(*args, "--truth", str(truth_file), "--bodies", str(bodies_file)) == 0
    truth = GroundTruth.load(truth_file)
    assert truth.injected.uploads == 12 and len(truth.spec) > 0
    assert len(bodies_file.read_text(encoding="utf-8").splitlines()) == truth.injected.messages
    assert str(truth_file) in capsys.readouterr().out
    assert cli(*args, "--dup-rate", "1.5", "--bodies", str(bodies_file)) == 2
    assert "dup_rate must be a number between 0 and 1" in capsys.readouterr().err
    assert cli(*args) == 2  # nowhere to publish
    assert "no queue" in capsys.readouterr().err


@pytest.mark.unit
def test_cli_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit):
        cli("simulate", "--help")
    out = capsys.readouterr().out
    assert "example" in out and "silverline simulate --config" in out and "--mode {files,s3-api}" in out


# ---- against moto's server ---------------------------------------------------------------------------
def receive_all(sqs: Any, url: str, expected: int, tries: int = 40) -> list[str]:
    bodies: list[str] = []
    for _ in range(tries):
        if len(bodies) >= expected:
            break
        got = sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get("Messages", [])
        for message in got:
            bodies.append(message["Body"])
            sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
    return bodies


@pytest.mark.integration
def test_create_group_is_idempotent_and_publish_delivers_every_body(
    moto_endpoint: str, tmp_path: Path
) -> None:
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    name = f"sim-{uuid.uuid4().hex[:8]}"
    group = create_group(sqs, name, max_receive_count=3)
    assert create_group(sqs, name, max_receive_count=3) == group
    attrs = sqs.get_queue_attributes(QueueUrl=group.queue_url, AttributeNames=["All"])["Attributes"]
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"].endswith(f"{name}-dlq") and int(redrive["maxReceiveCount"]) == 3

    bodies, _ = run(SimulationSpec(objects=25, tenants=3, seed=11), tmp_path)
    calls: list[tuple[int, int]] = []
    ids = publish(sqs, group.queue_url, bodies, progress=lambda sent, total: calls.append((sent, total)))
    assert len(ids) == len(set(ids)) == len(bodies)
    assert calls[-1] == (len(bodies), len(bodies)) and len(calls) == -(-len(bodies) // 10)
    assert Counter(receive_all(sqs, group.queue_url, len(bodies))) == Counter(bodies)


@pytest.mark.integration
def test_s3_api_mode_makes_moto_deliver_parseable_notifications(moto_endpoint: str) -> None:
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    group = create_group(sqs, f"sim-{uuid.uuid4().hex[:8]}")
    bucket = f"sim-{uuid.uuid4().hex[:8]}"
    spec = SimulationSpec(tenants=2, objects=12, bad_rate=0.34, multipart_rate=0.3, odd_name_rate=0.5, seed=5)
    truth = run_s3_api(s3, sqs, bucket, group.queue_arn, spec)
    assert truth.mode == "s3-api" and truth.bucket == bucket

    bodies = receive_all(sqs, group.queue_url, truth.injected.messages)
    assert len(bodies) == truth.injected.messages
    records = parsed(bodies)
    assert sum(r.outcome == "test" for r in records) == 1
    assert sum(r.outcome == "ignored" for r in records) == spec.non_raw_events
    events = [r for r in records if r.outcome == "event"]
    ops = [(op["key"], op["event_name"]) for op in truth.operations]
    ops += [(key, "ObjectCreated:Put") for key, name in ops if name.endswith("CompleteMultipartUpload")]
    assert truth.injected.multipart > 0  # moto sends a Put and a CompleteMultipartUpload for each
    assert sorted((r.key, r.event_name) for r in events) == sorted(ops)
    assert all(r.sequencer is None and r.version_id is None and r.bucket == bucket for r in events)
    assert any(
        "%2F" in json.loads(b).get("Records", [{}])[0].get("s3", {}).get("object", {}).get("key", "")
        for b in bodies
    )
    assert any(not (r.key or "").isascii() for r in events)

    listed = s3.list_objects_v2(Bucket=bucket).get("Contents", [])
    raw_keys = {o["Key"] for o in listed if o["Key"].split("/")[1] == "raw"}
    live = {k for t, d in truth.table_pairs() for k in truth.live_keys(t, d)}
    assert raw_keys == live | set(truth.quarantined)


@pytest.mark.integration
def test_cli_creates_the_queue_and_publishes(moto_endpoint: str, tmp_path: Path) -> None:
    name = f"sim-{uuid.uuid4().hex[:8]}"
    args = [
        "simulate",
        "--lake-root",
        str(tmp_path),
        "--sqs-endpoint-url",
        moto_endpoint,
        "--create-queue",
        name,
    ]
    assert cli(*args, "--objects", "10", "--tenants", "2", "--seed", "3") == 0
    truth = GroundTruth.load(tmp_path / "_simulate" / "demo-seed3.json")
    sqs = boto3.client("sqs", endpoint_url=moto_endpoint, region_name="us-east-1")
    url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["ApproximateNumberOfMessages"])[
        "Attributes"
    ]
    assert int(attrs["ApproximateNumberOfMessages"]) == truth.injected.messages


@pytest.mark.unit
def test_bad_rows_are_marked_in_the_truth_and_written_where_it_says(tmp_path: Path) -> None:
    import gzip

    spec = SimulationSpec(
        tenants=2, objects=30, bad_row_rate=0.3, overwrite_rate=0.0, delete_rate=0.0, seed=4
    )
    _, truth = run(spec, tmp_path)
    by_key = {op["key"]: op for op in truth.operations if op["kind"] == "put" and op["bad_reason"] is None}
    kinds = {"orders": {"negative_amount", "unknown_currency", "missing_order_id", "order_id_not_a_number"},
             "clicks": {"negative_duration", "page_not_a_path", "duration_not_a_number"},
             "inventory": {"negative_qty", "missing_sku"}}  # fmt: skip
    assert sum(len(v) for v in truth.bad_rows.values()) > 10
    for key, op in by_key.items():
        bad = truth.bad_rows.get(key, [])
        good = truth.tables[op["tenant"]][op["dataset"]][key]
        assert len(good) + len(bad) == op["rows"]
        assert {kind for _, kind in bad} <= kinds[op["dataset"]]
        if op["dataset"] != "orders":
            continue
        data = (tmp_path / spec.bucket / key).read_bytes()
        lines = (gzip.decompress(data) if key.endswith(".gz") else data).decode().splitlines()
        for number, kind in bad:
            fields = lines[number].split(",")  # line 0 is the header
            assert {
                "negative_amount": fields[2] == "-12.50",
                "unknown_currency": fields[3] == "XXX",
                "missing_order_id": fields[0] == "",
                "order_id_not_a_number": fields[0] == "n/a",
            }[kind], (key, number, kind, lines[number])

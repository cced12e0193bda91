"""The stream's event parsing in Spark tasks against the shared case table and the Python parser.

All bodies (the case table, ~200 random ones, a few for time zones) are parsed in
one Spark job, in ANSI mode and under a session time zone that is not UTC: event
times and ids must not depend on it, no malformed input may fail the job, and the
Arrow hand-over between the tasks and Spark must keep every field as parsed.
"""

from __future__ import annotations

import json
import random
from collections import defaultdict
from collections.abc import Iterator
from datetime import UTC, datetime, timedelta
from typing import Any

import pytest
from pyspark.sql import SparkSession
from pyspark.sql import functions as F
from pyspark.sql.types import IntegerType, LongType, StructType

from jobs.events import parse_message
from jobs.events.spark import PARSED_SCHEMA, parse_events
from tests.event_cases import (
    CASES,
    MOTO_TEST_EVENT,
    TEST_EVENT,
    cloudtrail,
    eb_object,
    eventbridge,
    s3_message,
    s3_record,
    sns_message,
)

pytestmark = pytest.mark.spark

Rows = dict[str, list[dict[str, Any]]]  # message name -> its records, in record order
EPOCH = datetime(1970, 1, 1, tzinfo=UTC)
# The fixture's session: not UTC (02:30 on 2024-03-10 does not exist in New York), and
# ANSI mode, where a bad cast fails the job instead of giving null.
STRICT_SESSION = {"spark.sql.session.timeZone": "America/New_York", "spark.sql.ansi.enabled": "true"}
# Times around New York's spring-forward gap.
ZONE_TIMES = ["2024-03-10T07:30:00Z", "2024-03-10T02:30:00.5-05:00", "2024-12-31T23:59:59.999999999-01:00"]


def iso(moment: datetime) -> str:
    """ISO-8601 UTC text with microseconds and a zero-padded year."""
    return moment.astimezone(UTC).isoformat(timespec="microseconds").replace("+00:00", "Z")


def python_rows(messages: dict[str, str | None]) -> Rows:
    rows: Rows = {}
    for name, body in messages.items():
        rows[name] = []
        for record in parse_message(body):
            row = record.to_json_dict()
            row["event_time"] = iso(record.event_time) if record.event_time else None
            rows[name].append(row)
    return rows


def differences(got: Rows, want: Rows) -> list[str]:
    out = []
    for name, records in want.items():
        if len(got.get(name, [])) != len(records):
            out.append(f"{name}: {len(got.get(name, []))} Spark rows, {len(records)} Python rows")
            continue
        for g, w in zip(got[name], records, strict=True):
            out += [
                f"{name}[{w['record_index']}].{f}: spark={g[f]!r} python={w[f]!r}" for f in w if g[f] != w[f]
            ]
    return out


def random_bodies(count: int, seed: int) -> dict[str, str | None]:
    rng = random.Random(seed)
    return {f"random-{seed}-{i}": random_body(rng) for i in range(count)}


# Inputs that once crashed the Python parser: a time out of datetime's range is invalid, a lone
# surrogate becomes "?" (as Java and str.encode("utf-8", "replace") do), deep nesting is invalid
# JSON. Both parsers must give exactly this.
EDGE_INPUTS: dict[str, tuple[str, dict[str, Any]]] = {
    "time-before-year-1": (
        s3_message(s3_record("t1/raw/orders/a.csv", time="0001-01-01T00:00:00+01:00")),
        {"reason": "invalid_event_time", "event_time": None},
    ),
    "time-after-year-9999": (
        s3_message(s3_record("t1/raw/orders/a.csv", time="9999-12-31T23:59:59-01:00")),
        {"reason": "invalid_event_time", "event_time": None},
    ),
    "key-lone-surrogate": (
        s3_message(s3_record("t1/raw/orders/\ud800.csv")),
        {"outcome": "event", "key": "t1/raw/orders/?.csv"},
    ),
    "deep-nesting": ('{"Records": ' + "[" * 1200 + "]" * 1200 + "}", {"reason": "invalid_json"}),
}
ALL_BODIES: dict[str, str | None] = {
    **{name: body for name, body, _ in CASES},
    **{f"zone-{t}": s3_message(s3_record("t1/raw/orders/a.csv", time=t, sequencer=None)) for t in ZONE_TIMES},
}


@pytest.fixture(scope="module")
def parsed(spark: SparkSession) -> Iterator[tuple[StructType, Rows]]:
    """(output schema, rows by message) of one parse_events run over all bodies."""
    bodies = {
        **ALL_BODIES,
        **random_bodies(200, seed=20240301),
        **{n: b for n, (b, _) in EDGE_INPUTS.items()},
    }
    names = list(bodies)
    df = spark.createDataFrame(
        [(i, i * 10 if i % 3 else None, body) for i, body in enumerate(bodies.values())],
        "message_id long, receive_count int, payload string",
    )
    saved = {key: spark.conf.get(key) or "" for key in STRICT_SESSION}
    try:
        for key, setting in STRICT_SESSION.items():
            spark.conf.set(key, setting)
        out = parse_events(df, body_col="payload")
        collected = out.withColumn("event_time", F.unix_micros("event_time")).collect()
    finally:
        for key, setting in saved.items():
            spark.conf.set(key, setting)
    rows: Rows = defaultdict(list)
    for row in collected:
        record = row.asDict()
        if record["event_time"] is not None:
            record["event_time"] = iso(EPOCH + timedelta(microseconds=record["event_time"]))
        rows[names[record["message_id"]]].append(record)
    yield out.schema, {name: sorted(rs, key=lambda r: r["record_index"]) for name, rs in rows.items()}


def test_spark_matches_case_table(parsed: tuple[StructType, Rows]) -> None:
    _, rows = parsed
    problems = []
    for name, _, expected in CASES:
        got = rows.get(name, [])
        if len(got) != len(expected):
            problems.append(f"{name}: {len(got)} rows, expected {len(expected)}")
            continue
        for row, want in zip(got, expected, strict=True):
            problems += [f"{name}.{k}: {row[k]!r} != {v!r}" for k, v in want.items() if row[k] != v]
    assert problems == []


def test_spark_equals_python_on_all_fields(parsed: tuple[StructType, Rows]) -> None:
    _, rows = parsed
    assert None in ALL_BODIES.values()  # null-aware: a null body is a case too
    assert differences(rows, python_rows(ALL_BODIES)) == []


def test_spark_equals_python_on_random_bodies(parsed: tuple[StructType, Rows]) -> None:
    _, rows = parsed
    want = python_rows(random_bodies(200, seed=20240301))
    assert len({r["reason"] for records in want.values() for r in records}) > 20  # most rules are reached
    assert differences(rows, want) == []


def test_every_message_yields_rows_and_only_events_have_ids(parsed: tuple[StructType, Rows]) -> None:
    _, rows = parsed
    assert len(rows) == len(ALL_BODIES) + 200 + len(EDGE_INPUTS)
    for records in rows.values():
        assert [r["record_index"] for r in records] == list(range(len(records)))
        assert all((r["event_id"] is not None) == (r["outcome"] == "event") for r in records)


def test_other_columns_are_kept_and_repeated_per_record(parsed: tuple[StructType, Rows]) -> None:
    schema, rows = parsed
    assert [(f.name, f.dataType) for f in schema.fields] == [
        ("message_id", LongType()),
        ("receive_count", IntegerType()),
        *[(f.name, f.dataType) for f in PARSED_SCHEMA.fields],
    ]
    assert len(rows["s3-multi-record"]) == 3
    for records in rows.values():
        message_id = records[0]["message_id"]
        want = (message_id, message_id * 10 if message_id % 3 else None)
        assert all((r["message_id"], r["receive_count"]) == want for r in records)


@pytest.mark.parametrize("name", list(EDGE_INPUTS))
def test_edge_inputs_give_the_same_outcome_in_both_parsers(
    parsed: tuple[StructType, Rows], name: str
) -> None:
    body, want = EDGE_INPUTS[name]
    (record,) = parse_message(body)
    assert {k: getattr(record, k) for k in want} == want
    (row,) = parsed[1][name]
    assert {k: row[k] for k in want} == want


def test_clashing_or_missing_columns_are_refused(spark: SparkSession) -> None:
    with pytest.raises(ValueError, match="clash"):
        parse_events(spark.createDataFrame([("k", "{}")], "key string, body string"))
    with pytest.raises(ValueError, match="no column"):
        parse_events(spark.createDataFrame([("{}",)], "message string"))


# ---- random bodies for the property test: mixes of the case table's builders ----------------------

KEY_PIECES = [
    "t1", "acme", "T_2", "tü", "t%C3%BC", "", ".", "..", "raw", "raw", "raw", "silver", "RAW", "orders",
    "or.ders", "a b", "a+b", "a%2Bb", "x%2Fy", "%20", "%E2%82%AC", "%zz", "%", "100%", "%E2%82", "%ED%A0%80",
    "%ed%b0%80x", "%C0%AF", "%FF", "%0A", "%7F", "%00", "ü", "€", "日本", "😀", "x" * 63, "y" * 64, "%25",
    "a%2", "\u2028", "+", "\n", "\x7f", "2024", "a.csv",
]  # fmt: skip
NAMES: list[Any] = [
    "ObjectCreated:Put", "ObjectCreated:Copy", "ObjectCreated:CompleteMultipartUpload", "ObjectRemoved:Delete",
    "ObjectRemoved:DeleteMarkerCreated", "LifecycleExpiration:Delete", "ObjectTagging:Put", "ObjectCreated:",
    "s3:TestEvent", "", None, 7,
]  # fmt: skip
TIMES: list[Any] = [
    "2024-03-01T12:00:00.000Z", "2024-03-01T12:00:00Z", "2024-03-01T13:00:00.123456789+01:00",
    "2024-03-01T12:00:00.1-05:30", "2024-03-01T12:00:00+05:99", "2024-03-01T00:10:00+23:59",
    "2024-03-01T12:00:00+24:00", "2024-03-01T12:00:00-00:00", "2024-02-30T12:00:00Z", "2023-02-29T12:00:00Z",
    "2024-02-29T23:59:59.9999999-00:01", "2024-03-01T24:00:00Z", "2024-03-01T12:60:00Z", "2024-03-01T12:00:60Z",
    "2024-12-31T23:59:59.999999999-01:00", "0999-03-01T12:00:00Z", "0001-01-01T00:00:00-01:00",
    "0000-01-01T00:00:00Z", "2024-03-01 12:00:00Z", "2024-03-01T12:00:00", "2024-03-01T12:00:00.Z", "",
    "2024-03-01T12:00:00Z\n", None, 1709294400,
]  # fmt: skip
SIZES: list[Any] = [1024, 0, None, -1, 2**40, "5", 5.0, True, float("nan")]
ODD_VALUES: list[Any] = [
    None, "", 42, 4.5, True, [], ["x"], {"a": 1}, "null", "123", "true", "{}", float("nan"),
]  # fmt: skip


def random_key(rng: random.Random) -> str:
    if rng.random() < 0.05:
        return "t1/raw/orders/" + "z" * rng.choice([1009, 1010, 1011])
    key = "/".join(
        rng.choice(KEY_PIECES) + rng.choice(["", "", rng.choice(KEY_PIECES)])
        for _ in range(rng.randint(1, 6))
    )
    if rng.random() < 0.35:
        key = f"t{rng.randint(1, 3)}/raw/{rng.choice(['orders', 'clicks'])}/{key}"
    return rng.choice(["", "", "", "/", "%2F"]) + key + rng.choice(["", "", "", "", "/"])


def random_sequencer(rng: random.Random) -> Any:
    roll = rng.random()
    if roll < 0.6:
        digits = "".join(rng.choice("0123456789abcdefABCDEF") for _ in range(rng.randint(1, 40)))
        return rng.choice(["", "", "00", "0" * 20]) + digits
    if roll < 0.7:  # all decimal digits: still a string
        return "".join(rng.choice("0123456789") for _ in range(rng.randint(1, 20)))
    return rng.choice([None, "", "XYZ", "0x1F", " 1A", 123, 0, 1.5, True, {"a": 1}, ["1"], float("nan")])


def pick(rng: random.Random, good: Any, p_odd: float = 0.1) -> Any:
    return rng.choice(ODD_VALUES) if rng.random() < p_odd else good


def random_record(rng: random.Random) -> Any:
    if rng.random() < 0.05:
        return rng.choice([42, "x", None, [], True])
    rec = s3_record(
        random_key(rng),
        name=rng.choice(NAMES),
        bucket=pick(rng, "acme-lake", 0.15),
        time=rng.choice(TIMES),
        sequencer=random_sequencer(rng),
        version=pick(rng, rng.choice([None, "v1", "null", "3HL4kqtJlcpXroDTDmJ"])),
        etag=pick(rng, rng.choice(["d41d8cd98f00b204e9800998ecf8427e", "0123456789", None])),
        size=rng.choice(SIZES),
    )
    if rng.random() < 0.1:
        rec["s3"]["object"]["key"] = pick(rng, rec["s3"]["object"]["key"], 1.0)
    if rng.random() < 0.05:
        rec["s3"][rng.choice(["bucket", "object"])] = rng.choice(ODD_VALUES)
    if rng.random() < 0.05:
        rec[rng.choice(["s3", "eventName", "eventTime"])] = rng.choice(ODD_VALUES)
    return rec


def random_eventbridge(rng: random.Random) -> str:
    kind: Any = rng.choice(
        ["Object Created", "Object Deleted", "Object Created", "Object Restore Completed", 5]
    )
    detail = eb_object(
        random_key(rng).replace("%2F", "/"),
        reason=pick(
            rng,
            rng.choice(["PutObject", "CopyObject", "POST Object", "DeleteObject", "Lifecycle Expiration"]),
        ),
        **{"deletion-type": pick(rng, rng.choice(["Permanently Deleted", "Delete Marker Created"]))},
    )
    detail["object"]["sequencer"] = random_sequencer(rng)
    detail["object"]["size"] = rng.choice([5, None, "5", 2.0])
    if rng.random() < 0.1:
        detail[rng.choice(["bucket", "object"])] = rng.choice(ODD_VALUES)
    return eventbridge(kind, detail, time=rng.choice(TIMES[:8]))


def random_cloudtrail(rng: random.Random) -> str:
    api = rng.choice(
        ["PutObject", "CopyObject", "CompleteMultipartUpload", "DeleteObject", "DeleteObjects"] * 2
    )
    api = pick(rng, api, 0.1)
    params: dict[str, Any] = {"key": random_key(rng).replace("%2F", "/")}
    if api == "DeleteObjects":
        objects = [
            {"Key": random_key(rng), "VersionId": pick(rng, "v1")}
            if rng.random() < 0.85
            else rng.choice(ODD_VALUES)
            for _ in range(rng.randint(0, 3))
        ]
        params = {"delete": {"Quiet": True, "Object": objects if rng.random() < 0.9 else "x"}}
    extra: dict[str, Any] = {
        "responseElements": pick(rng, {"x-amz-version-id": pick(rng, "3HL4kqtJlcpXroDTDmJ")}),
        "additionalEventData": pick(rng, {"bytesTransferredIn": rng.choice([42, "42", None])}),
    }
    if rng.random() < 0.1:
        extra["errorCode"] = rng.choice(["AccessDenied", 0, {}])
    return cloudtrail(api, params, **extra)


def garble(rng: random.Random, body: str) -> str | None:
    return rng.choice(
        [
            body[: rng.randint(0, max(len(body) - 1, 0))],
            body + rng.choice([" x", "]", "}", ",1", "{}", " \n "]),
            "  " + body + "\n",
            body.replace('"', "'", 4),
            body.replace(': "', ': "\t', 1),  # a control character, deep inside
            body.replace(", ", " ", 1),  # a missing comma, deep inside
            "\ufeff" + body,
            json.dumps(body),
            rng.choice(
                ["", None, "null", "[1, 2]", '"text"', "42", "{}", '{"Records": null}', '{"Records": "x"}']
            ),
        ]
    )


def random_s3_message(rng: random.Random) -> str:
    records = [random_record(rng) for _ in range(rng.choice([0, 1, 1, 1, 2, 3]))]
    if not all(isinstance(r, dict) for r in records):  # known gap: NaN in a mixed array reads as "NaN"
        records = json.loads(json.dumps(records).replace("NaN", "null"))
    elif records and rng.random() < 0.05:  # double-encoded records
        records = [json.dumps(r) for r in records]
    return s3_message(*records)


def random_body(rng: random.Random) -> str | None:
    roll = rng.random()
    if roll < 0.35:
        body = random_s3_message(rng)
    elif roll < 0.5:
        inner = rng.choice([random_s3_message(rng), TEST_EVENT])
        body = sns_message(rng.choice([inner, inner, inner[:-1], "hello"]))
        if rng.random() < 0.1:
            doc = json.loads(body)
            doc[rng.choice(["Type", "Message"])] = rng.choice(
                ["SubscriptionConfirmation", {"Records": []}, 5]
            )
            body = json.dumps(doc)
    elif roll < 0.65:
        body = random_eventbridge(rng)
    elif roll < 0.8:
        body = random_cloudtrail(rng)
    elif roll < 0.85:
        body = rng.choice([TEST_EVENT, MOTO_TEST_EVENT, TEST_EVENT.replace("acme-lake", "")])
    else:
        return garble(rng, s3_message(random_record(rng)))
    if rng.random() < 0.3:  # the same document, non-ASCII characters escaped or not
        body = json.dumps(json.loads(body), ensure_ascii=rng.random() < 0.5)
    return body


def test_events_of_another_bucket_are_rejected_and_the_rest_is_untouched(spark: SparkSession) -> None:
    from jobs.events.spark import with_foreign_buckets_rejected

    bodies = [
        ("own", s3_message(s3_record("t1/raw/orders/a.csv", bucket="demo-lake"))),
        ("other", s3_message(s3_record("t1/raw/orders/a.csv", bucket="other-lake"))),
        ("other-silver", s3_message(s3_record("t1/silver/orders/x.parquet", bucket="other-lake"))),
        ("none", None),
    ]
    df = spark.createDataFrame(bodies, "id string, body string")
    out = with_foreign_buckets_rejected(parse_events(df), "demo-lake")
    got = {r["id"]: (r["outcome"], r["reason"]) for r in out.collect()}
    assert got == {
        "own": ("event", None),
        "other": ("rejected", "foreign_bucket"),
        "other-silver": ("ignored", "not_raw_zone"),
        "none": ("rejected", "invalid_json"),
    }

"""Fault injection on the message side (issue #13): near-limit bodies and poison messages.

One queue, one job run: the simulator's good records are repacked into bodies near
SQS's 256 KiB limit (direct S3 and SNS envelopes, padded with silver-zone records the
job must ignore) and into poison messages that mix them with every kind of bad input.
Every poison case names the outcome and reason it must end with, written by hand
from the event model (R1, R2), never taken from the job. The simulator's oracle
judges silver; the ops tables must count every record.
"""

from __future__ import annotations

import copy
import json
from collections import Counter
from typing import Any

import pytest
from botocore.exceptions import ClientError

from tests import faultkit as fk
from tests import streamkit as kit
from tests.stream.test_stream_e2e import assert_conserved, metrics

pytestmark = pytest.mark.integration

SQS_LIMIT = 262_144  # bytes: a queue's MaximumMessageSize before SQS raised the default to 1 MiB in 2025
Record = dict[str, Any]


def good_records(bodies: list[str]) -> list[Record]:
    """Every record of the simulator's direct-S3 and SNS bodies, in publish order."""
    records: list[Record] = []
    for body in bodies:
        message = json.loads(body)
        if message.get("Type") == "Notification":
            message = json.loads(message["Message"])
        records += message["Records"]
    return records


def with_key(template: Record, key: str, **changes: Any) -> Record:
    """A copy of a record for another key (URL-encoded as S3 sends keys) with fields changed."""
    record = copy.deepcopy(template)
    record["s3"]["object"]["key"] = key
    record.update(changes)
    return record


def filled(records: list[Record], template: Record, tag: str, envelope: str) -> tuple[str, int]:
    """A body just under the SQS limit: ``records`` plus silver-zone records (to be ignored).

    Returns:
        (body, number of filler records).
    """
    fillers: list[Record] = []

    def body() -> str:
        message = json.dumps({"Records": [*records, *fillers]})
        if envelope == "sns":
            topic = "arn:aws:sns:us-east-1:123456789012:lake-events"
            return json.dumps({"Type": "Notification", "TopicArn": topic, "Message": message})
        return message

    step = 64
    while step:
        fillers += [
            with_key(template, f"acme/silver/orders/{tag}-{len(fillers) + i:05d}.parquet")
            for i in range(step)
        ]
        if len(body().encode()) > SQS_LIMIT - 256:
            del fillers[-step:]
            step //= 2
    return body(), len(fillers)


def poison_cases(good: list[Record], template: Record) -> list[tuple[str, str, list[tuple[str, str]]]]:
    """(case, body, expected (outcome, reason) per bad record); the good records in a body must apply."""
    raw = "acme/raw/orders"
    missing_bucket = copy.deepcopy(template)
    del missing_bucket["s3"]["bucket"]
    missing_key = copy.deepcopy(template)
    del missing_key["s3"]["object"]["key"]
    typed_key = with_key(template, "x")
    typed_key["s3"]["object"]["key"] = 42
    no_name = with_key(template, f"{raw}/no-name.csv")
    del no_name["eventName"]
    nested: Any = 1
    for _ in range(600):  # deep, but within every JSON parser's limits: the message is fine
        nested = {"n": nested}
    deep_ok = {"Records": [good[2], good[3]], "extra": nested}
    truncated = json.dumps({"Records": [with_key(template, f"{raw}/cut.csv")]})
    huge = "x" * 200_000
    return [
        ("not JSON", "hello, this is not JSON", [("rejected", "invalid_json")]),
        ("truncated JSON", truncated[: len(truncated) // 2], [("rejected", "invalid_json")]),
        ("JSON array", "[1, 2, 3]", [("rejected", "invalid_json")]),
        ("JSON null", "null", [("rejected", "invalid_json")]),
        ("no envelope", json.dumps({"hello": "world"}), [("rejected", "unknown_envelope")]),
        ("Records not a list", json.dumps({"Records": "many"}), [("rejected", "no_records")]),
        ("Records empty", json.dumps({"Records": []}), [("rejected", "no_records")]),
        ("too deep", '{"Records": [' + "[" * 20_000 + "]" * 20_000 + "]}", [("rejected", "invalid_json")]),
        ("deep but valid", json.dumps(deep_ok), []),
        ("huge string in a good message", json.dumps({"Records": [good[4]], "note": huge}), []),
        (
            "bad records among good ones",
            json.dumps(
                {
                    "Records": [
                        good[0],
                        missing_bucket,
                        "not a record",
                        missing_key,
                        typed_key,
                        no_name,
                        good[1],
                    ]
                }
            ),
            [
                ("rejected", "missing_bucket"),
                ("rejected", "invalid_record"),
                ("rejected", "missing_key"),
                ("rejected", "missing_key"),
                ("rejected", "missing_event_name"),
            ],
        ),
        (
            "ill-typed fields",
            json.dumps(
                {
                    "Records": [
                        with_key(template, f"{raw}/when.csv", eventTime="yesterday"),
                        with_key(template, f"{raw}/huge-{huge}.csv"),
                        good[5],
                    ]
                }
            ),
            [("rejected", "invalid_event_time"), ("rejected", "key_too_long")],
        ),
        (
            "bad percent-encoding",
            json.dumps(
                {
                    "Records": [
                        with_key(template, f"{raw}/50%zz.csv"),
                        with_key(template, f"{raw}/%C3%28.csv"),
                        good[6],
                    ]
                }
            ),
            [("rejected", "key_malformed_encoding"), ("rejected", "key_invalid_utf8")],
        ),
        (
            "not for silver",
            json.dumps(
                {
                    "Records": [
                        with_key(template, f"{raw}/lost.csv", eventName="ReducedRedundancyLostObject"),
                        with_key(template, f"{raw}/"),
                        with_key(template, "acme/quarantine/orders/x.csv"),
                        good[7],
                    ]
                }
            ),
            [
                ("ignored", "event_type_not_handled"),
                ("ignored", "folder_marker"),
                ("ignored", "not_raw_zone"),
            ],
        ),
        (
            "s3:TestEvent",
            json.dumps(
                {
                    "Service": "Amazon S3",
                    "Event": "s3:TestEvent",
                    "Time": "2024-03-04T08:00:00.000Z",
                    "Bucket": "demo-lake",
                    "RequestId": "5582815E1AEA5ADF",
                    "HostId": "8cLeGAmw098X5cv4Zkwcmo8",
                }
            ),
            [("test", "s3_test_event")],
        ),
        (
            "SNS not S3",
            json.dumps({"Type": "Notification", "Message": json.dumps({"alarm": "disk"})}),
            [("rejected", "sns_message_not_s3")],
        ),
        (
            "SNS control",
            json.dumps(
                {"Type": "SubscriptionConfirmation", "Message": "confirm", "SubscribeURL": "https://x"}
            ),
            [("ignored", "sns_control_message")],
        ),
    ]


@pytest.fixture(scope="module")
def run(tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, soak: bool) -> dict[str, Any]:
    """Simulate, repack into big and poison messages, send, run the job once."""
    from jobs.simulate import SimulationSpec
    from jobs.simulate import run as simulate

    tmp = tmp_path_factory.mktemp("messages")
    lake = tmp / "lake"
    spec = SimulationSpec(
        tenants=3, objects=120 if soak else 24, malformed_rate=0, test_events=0, non_raw_events=0, seed=17
    )
    bodies, truth = simulate(spec, lake)
    good = good_records(bodies)
    template = good[0]
    cases = poison_cases(good, template)
    rest = good[8:]
    half = len(rest) // 2
    big_s3, fill_s3 = filled(rest[:half], template, "s3", "s3")
    big_sns, fill_sns = filled(rest[half:], template, "sns", "sns")
    messages = [big_s3, big_sns, *(body for _, body, _ in cases)]
    fillers = fill_s3 + fill_sns
    for i in range(8 if soak else 0):  # more near-limit bodies, of fillers only
        body, n = filled([], template, f"more{i}", "sns" if i % 2 else "s3")
        messages.append(body)
        fillers += n
    queue, dlq = kit.make_queue(moto_endpoint)
    limit = {"MaximumMessageSize": str(SQS_LIMIT)}  # SQS's default before 2025 (and moto's since: 1 MiB)
    kit.sqs_client(moto_endpoint).set_queue_attributes(QueueUrl=queue, Attributes=limit)
    over_limit = json.dumps({"Records": [], "pad": "x" * SQS_LIMIT})
    with pytest.raises(ClientError) as refused:
        kit.send_all(moto_endpoint, queue, [over_limit])
    sent = kit.send_all(moto_endpoint, queue, messages)
    config = fk.fault_config(tmp, lake, moto_endpoint, queue)
    code = fk.run_stream(config, tmp / "stream.log")
    return {
        "lake": lake, "truth": truth, "cases": cases, "code": code, "log": tmp / "stream.log", "sent": sent, "messages": messages,
        "fillers": fillers, "refused": refused.value, "endpoint": moto_endpoint, "queue": queue, "dlq": dlq,
    }  # fmt: skip


def test_the_job_keeps_going_and_silver_matches_the_oracle(run: dict[str, Any]) -> None:
    from jobs.simulate import verify

    assert run["code"] == 0, fk.outputs(run["log"])[1][-4000:]
    result = verify(run["lake"], run["truth"])
    assert result.ok, result.summary()  # good records in big and poisoned messages all applied, once
    landed = Counter(kit.bronze_message_ids(run["lake"]))
    assert set(run["sent"]) == set(landed) and kit.queue_counts(run["endpoint"], run["queue"]) == 0
    assert kit.queue_counts(run["endpoint"], run["dlq"]) == 0
    assert_conserved(run["lake"])


def test_near_limit_bodies_land_whole_and_every_record_is_counted(run: dict[str, Any]) -> None:
    sizes = [len(m.encode()) for m in run["messages"][:2]]
    assert all(SQS_LIMIT - 1024 < s <= SQS_LIMIT for s in sizes), sizes
    bronze = run["lake"] / "_ops" / "e2e" / "bronze"
    bodies = {
        json.loads(line)["body"] for p in bronze.rglob("*.jsonl") for line in p.read_text().splitlines()
    }
    assert set(run["messages"]) <= bodies  # byte for byte, escapes and all
    rows = metrics(run["lake"])
    expected_ignored = run["fillers"] + sum(o == "ignored" for _, _, bad in run["cases"] for o, _ in bad)
    assert sum(r["ignored"] for r in rows) == expected_ignored
    # A body over the limit is refused by SQS when it is sent: it never reaches the bridge.
    assert run["refused"].response["Error"]["Code"] in ("InvalidParameterValue", "InvalidMessageContents")


def test_every_poison_record_ends_with_its_outcome_and_reason(run: dict[str, Any]) -> None:
    expected = Counter(
        reason for _, _, bad in run["cases"] for outcome, reason in bad if outcome == "rejected"
    )
    rejected = kit.read_table(kit.ops_dir(run["lake"], "rejected"))
    assert rejected is not None
    assert Counter(r["reason"] for r in rejected.to_pylist()) == expected
    assert all(r["message_id"] in run["sent"] and r["bronze_file"] for r in rejected.to_pylist())
    rows = metrics(run["lake"])
    assert sum(r["rejected"] for r in rows) == sum(expected.values())
    assert sum(r["test"] for r in rows) == sum(o == "test" for _, _, bad in run["cases"] for o, _ in bad)

"""The plain-Python parser against the shared table of cases."""

from __future__ import annotations

from typing import Any

import pytest

from jobs.events import parse_message
from jobs.events.parse import event_id, normalize_sequencer
from tests.event_cases import CASES

pytestmark = pytest.mark.unit


def as_row(record: Any) -> dict[str, Any]:
    return record.to_json_dict()


@pytest.mark.parametrize(("body", "expected"), [c[1:] for c in CASES], ids=[c[0] for c in CASES])
def test_parse_message_matches_case_table(body: str | None, expected: list[dict[str, Any]]) -> None:
    rows = [as_row(r) for r in parse_message(body)]
    assert len(rows) == len(expected)
    for row, want in zip(rows, expected, strict=True):
        got = {k: row[k] for k in want}
        assert got == want


def test_every_event_has_an_id_and_nothing_else_does() -> None:
    for _, body, _ in CASES:
        for rec in parse_message(body):
            assert (rec.event_id is not None) == (rec.outcome == "event")


# Documented ordering examples: equal-length S3 sequencers, and lengths that differ
# (left-padding orders by value; right-padding would put "FF" after "0100").
@pytest.mark.parametrize(
    ("earlier", "later"),
    [
        ("0055AED6DCD90281E5", "0055AED6DCD90281E6"),
        ("0055AED6DCD90281E5", "0055AED6DCD9028200"),
        ("FF", "0100"),
        ("617f08299329d189", "0062E0B6F3CB9C0A7E"),
        ("9", "10"),
    ],
)
def test_normalised_sequencers_order_by_value(earlier: str, later: str) -> None:
    a, _ = normalize_sequencer(earlier)
    b, _ = normalize_sequencer(later)
    assert a is not None and b is not None
    assert a < b
    assert int(earlier, 16) < int(later, 16)


def test_same_value_different_padding_is_the_same_sequencer() -> None:
    assert normalize_sequencer("00ff") == normalize_sequencer("FF") == ("0" * 30 + "FF", False)


def test_sequencer_longer_than_32_digits_is_invalid() -> None:
    assert normalize_sequencer("1" + "0" * 32) == (None, True)


def test_duplicate_notifications_share_identity_and_overwrites_do_not() -> None:
    from tests.event_cases import s3_message, s3_record

    first = parse_message(s3_message(s3_record("t1/raw/orders/a.csv", sequencer="0A")))[0]
    dup = parse_message(
        s3_message(s3_record("t1/raw/orders/a.csv", sequencer="0a", time="2024-03-01T12:00:09Z"))
    )[0]
    newer = parse_message(s3_message(s3_record("t1/raw/orders/a.csv", sequencer="0B")))[0]
    assert event_id(first) == event_id(dup)
    assert event_id(first) != event_id(newer)


def test_without_sequencer_two_uploads_of_one_key_are_distinct() -> None:
    from tests.event_cases import s3_message, s3_record

    a = parse_message(s3_message(s3_record("t1/raw/orders/a.csv", sequencer=None, etag="e1")))[0]
    a_again = parse_message(s3_message(s3_record("t1/raw/orders/a.csv", sequencer=None, etag="e1")))[0]
    b = parse_message(s3_message(s3_record("t1/raw/orders/a.csv", sequencer=None, etag="e2")))[0]
    assert a.event_id == a_again.event_id
    assert a.event_id != b.event_id


def test_two_cloudtrail_puts_of_one_key_in_one_second_are_distinct_and_a_redelivery_is_not() -> None:
    """CloudTrail has no sequencer, no eTag and whole seconds: its request id tells two PUTs apart."""
    from tests.event_cases import cloudtrail

    params = {"key": "t1/raw/orders/a.csv"}
    first = parse_message(cloudtrail("PutObject", params, requestID="R1", eventID="E1"))[0]
    second = parse_message(cloudtrail("PutObject", params, requestID="R2", eventID="E2"))[0]
    redelivered = parse_message(cloudtrail("PutObject", params, requestID="R1", eventID="E1"))[0]
    assert first.outcome == second.outcome == "event"
    assert first.event_time == second.event_time and first.etag is None
    assert first.event_id != second.event_id
    assert first.event_id == redelivered.event_id
    # without a request id (hand-made events) the event id stays the identity of the other fields
    bare = parse_message(cloudtrail("PutObject", params))[0]
    assert bare.event_id not in (first.event_id, second.event_id)

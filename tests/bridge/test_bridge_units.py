"""SQS bridge, pure parts: bronze lines, file names, flush decisions, delete bookkeeping."""

from __future__ import annotations

import json
import threading
import time
from datetime import UTC, datetime, timedelta, timezone
from pathlib import Path
from typing import Any

import pytest
from botocore.exceptions import ClientError, EndpointConnectionError

from jobs.bridge.acks import Acknowledger
from jobs.bridge.flusher import Flusher
from jobs.bridge.holding import HeldMessage, Holding, flush_due
from jobs.bridge.landing import LocalBronzeStore
from jobs.bridge.metrics import BridgeMetrics, MetricsSnapshot
from jobs.bridge.records import (
    BRONZE_FIELDS,
    bronze_file_name,
    bronze_record,
    default_bridge_id,
    encode_line,
    epoch_ms_to_iso,
)
from jobs.bridge.retry import BridgeError, FailureGate, RetryPolicy
from jobs.bridge.sqsapi import split_outcome
from jobs.config import load_config

pytestmark = pytest.mark.unit
QUEUE = "http://sqs.local/123456789012/q"
FAST = RetryPolicy(max_consecutive_errors=5, base_seconds=0.001, cap_seconds=0.01)

GARBAGE_BODIES = [
    "not json at all",
    "",
    "   ",
    "{",
    "null",
    '{"Records": []}',
    "line one\nline two\r\n",
    'quotes " and \\ backslashes',
    "ünïcødé ☃ 🎉 \u2028",
]


def held(n: int, *, start: int = 0, age: float = 0.0) -> list[HeldMessage]:
    now = time.monotonic() - age
    return [
        HeldMessage(f"rh-{i}", f"id-{i}", f'{{"i":{i}}}\n'.encode(), now, now + 60)
        for i in range(start, start + n)
    ]


# ---- bronze lines ---------------------------------------------------------------------------------


@pytest.mark.parametrize("body", GARBAGE_BODIES)
def test_bronze_line_keeps_any_body_verbatim_on_one_line(body: str) -> None:
    message = {
        "MessageId": "m-1",
        "ReceiptHandle": "rh",
        "Body": body,
        "Attributes": {"ApproximateReceiveCount": "3", "SentTimestamp": "1700000000123"},
    }
    record = bronze_record(message, queue_url=QUEUE, received_at="2024-01-01T00:00:00.000Z", bridge_id="b-1")
    line = encode_line(record)
    assert line.endswith(b"\n") and line.count(b"\n") == 1
    assert json.loads(line) == {
        "message_id": "m-1",
        "queue_url": QUEUE,
        "body": body,
        "received_at": "2024-01-01T00:00:00.000Z",
        "receive_count": 3,
        "sent_at": "2023-11-14T22:13:20.123Z",
        "bridge_id": "b-1",
    }
    assert tuple(json.loads(line)) == BRONZE_FIELDS


def test_bronze_record_without_attributes_has_null_sent_at() -> None:
    record = bronze_record({"MessageId": "m", "Body": "x"}, queue_url=QUEUE, received_at="t", bridge_id="b")
    assert (record["sent_at"], record["receive_count"]) == (None, 0)


@pytest.mark.parametrize(
    ("value", "expected"),
    [
        ("0", "1970-01-01T00:00:00.000Z"),
        ("1700000000123", "2023-11-14T22:13:20.123Z"),
        ("1700000000999", "2023-11-14T22:13:20.999Z"),
        (None, None),
        ("", None),
        ("12.5", None),
        ("abc", None),
    ],
)
def test_sent_timestamp_to_iso(value: str | None, expected: str | None) -> None:
    assert epoch_ms_to_iso(value) == expected


def test_file_names_partition_by_utc_date_and_sort_by_time() -> None:
    evening_in_new_york = datetime(2024, 1, 1, 23, 30, tzinfo=timezone(timedelta(hours=-5)))
    name = bronze_file_name(evening_in_new_york, "host-1-abc", 7)
    assert name == "dt=2024-01-02/1704169800000-host-1-abc-000007.jsonl"
    early = bronze_file_name(datetime(2001, 9, 9, 1, 46, 39, tzinfo=UTC), "zzz", 999)
    late = bronze_file_name(datetime(2001, 9, 9, 1, 46, 41, tzinfo=UTC), "aaa", 1)
    assert early.split("/")[1] < late.split("/")[1]  # 13-digit epoch ms first: time order wins


def test_bridge_ids_are_unique_and_safe_in_file_names() -> None:
    ids = {default_bridge_id() for _ in range(50)}
    assert len(ids) == 50
    assert all(all(c.isalnum() or c == "-" for c in i) for i in ids)


# ---- flush decisions ------------------------------------------------------------------------------


@pytest.mark.parametrize(
    ("count", "oldest_age", "draining", "due"),
    [
        (0, None, False, False),
        (0, None, True, False),
        (1, 0.1, False, False),
        (99, 4.9, False, False),
        (100, 0.0, False, True),  # size reached
        (250, 0.0, False, True),
        (1, 5.0, False, True),  # interval reached
        (1, 0.0, True, True),  # receivers stopped: write what is left
    ],
)
def test_flush_due(count: int, oldest_age: float | None, draining: bool, due: bool) -> None:
    assert flush_due(count, oldest_age, max_messages=100, interval=5.0, draining=draining) is due


def test_holding_batches_by_size_then_by_age_then_drains() -> None:
    holding = Holding(receivers=2, capacity=1000)
    holding.add(0, held(25))
    first = holding.next_batch(max_messages=10, interval=60, timeout=0.01)
    assert [m.message_id for m in first or []] == [f"id-{i}" for i in range(10)]
    holding.release(f"rh-{i}" for i in range(10))
    second = holding.next_batch(max_messages=10, interval=60, timeout=0.01)
    assert [m.message_id for m in second or []] == [f"id-{i}" for i in range(10, 20)]
    assert holding.next_batch(max_messages=10, interval=60, timeout=0.01) == []  # 5 left, young
    assert [m.message_id for m in holding.next_batch(10, interval=0.05, timeout=1.0) or []] == [
        f"id-{i}" for i in range(20, 25)
    ]
    holding.start_draining()
    assert holding.next_batch(10, interval=60, timeout=0.01) is None


def test_holding_is_drained_only_when_every_receiver_came_back_empty_and_nothing_is_held() -> None:
    holding = Holding(receivers=2, capacity=1000)
    holding.add(0, [])
    assert not holding.drained()  # receiver 1 has not reported
    holding.add(1, held(1))
    holding.add(0, [])
    assert not holding.drained()
    batch = holding.next_batch(10, interval=0, timeout=0.01) or []
    holding.add(1, [])
    assert not holding.drained() and holding.size() == 1  # in flight until its delete settles
    holding.release(m.receipt_handle for m in batch)
    assert holding.drained()


def test_full_holding_pauses_receivers() -> None:
    holding = Holding(receivers=1, capacity=5)
    holding.add(0, held(5))
    assert not holding.wait_for_room(timeout=0.01)
    holding.next_batch(3, interval=0, timeout=0.01)
    assert holding.wait_for_room(timeout=0.01)


def test_only_messages_held_past_the_margin_are_due_for_extension() -> None:
    holding = Holding(receivers=1, capacity=100)
    fresh, old = held(1, start=0), held(1, start=1, age=40)
    holding.add(0, [*fresh, *old])
    due = holding.due_for_extension(time.monotonic(), margin=30)  # deadline = received + 60
    assert [m.message_id for m in due] == ["id-1"]
    holding.extended(due, time.monotonic() + 60)
    assert holding.due_for_extension(time.monotonic(), margin=30) == []


# ---- batch results and delete bookkeeping ---------------------------------------------------------


def test_split_outcome_sorts_entries() -> None:
    response = {
        "Successful": [{"Id": "0"}, {"Id": "3"}],
        "Failed": [
            {"Id": "1", "SenderFault": True, "Code": "ReceiptHandleIsInvalid"},
            {"Id": "2", "SenderFault": False, "Code": "InternalError"},
        ],
    }
    outcome = split_outcome(["a", "b", "c", "d", "e"], response)
    assert outcome.succeeded == ["a", "d"]
    assert outcome.rejected == [("b", "ReceiptHandleIsInvalid")]
    assert outcome.retryable == [("c", "InternalError"), ("e", "MissingFromResponse")]


class FakeSqs:
    """Records DeleteMessageBatch calls; fails entries as scripted."""

    def __init__(self, fail_server: set[str] | None = None, reject: set[str] | None = None) -> None:
        self.fail_server = set(fail_server or ())  # fail once each, server side
        self.reject = set(reject or ())
        self.calls: list[list[str]] = []
        self.deleted: list[str] = []
        self.events: list[str] = []
        self.lock = threading.Lock()

    def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:  # noqa: N803
        ok, failed = [], []
        with self.lock:
            self.calls.append([e["ReceiptHandle"] for e in Entries])
            self.events.append("delete")
            for entry in Entries:
                handle = entry["ReceiptHandle"]
                if handle in self.reject:
                    failed.append({"Id": entry["Id"], "SenderFault": True, "Code": "ReceiptHandleIsInvalid"})
                elif handle in self.fail_server:
                    self.fail_server.discard(handle)
                    failed.append({"Id": entry["Id"], "SenderFault": False, "Code": "InternalError"})
                else:
                    self.deleted.append(handle)
                    ok.append({"Id": entry["Id"]})
        return {"Successful": ok, "Failed": failed}


def make_acks(
    client: Any, holding: Holding, metrics: BridgeMetrics, policy: RetryPolicy = FAST
) -> Acknowledger:
    gate = FailureGate(policy, metrics, where=f"queue {QUEUE}")
    return Acknowledger(
        client, QUEUE, holding=holding, gate=gate, metrics=metrics, visibility_seconds=60, workers=3
    )


def test_partial_delete_failures_are_retried_and_rejections_given_up() -> None:
    holding, metrics = Holding(1, 1000), BridgeMetrics()
    holding.add(0, held(25))
    batch = holding.next_batch(25, interval=0, timeout=0.01) or []
    fake = FakeSqs(fail_server={"rh-3", "rh-17"}, reject={"rh-20"})
    acks = make_acks(fake, holding, metrics)
    acks.delete_landed(batch)
    acks.close()
    assert all(len(call) <= 10 for call in fake.calls)
    assert sorted(fake.deleted) == sorted(f"rh-{i}" for i in range(25) if i != 20)
    assert len(fake.deleted) == len(set(fake.deleted))
    assert ["rh-3"] in fake.calls and ["rh-17"] in fake.calls  # only the failed entries were retried
    snap = metrics.snapshot()
    assert (snap.deleted, snap.delete_calls) == (24, 5)
    assert snap.errors == {"delete.InternalError": 2, "delete.ReceiptHandleIsInvalid": 1}
    assert holding.size() == 0


def test_deleting_gives_up_with_a_clear_error_when_entries_keep_failing() -> None:
    class AlwaysFailing(FakeSqs):
        def delete_message_batch(self, QueueUrl: str, Entries: list[dict[str, str]]) -> dict[str, Any]:  # noqa: N803
            self.calls.append([e["ReceiptHandle"] for e in Entries])
            return {
                "Successful": [],
                "Failed": [{"Id": e["Id"], "Code": "ServiceUnavailable"} for e in Entries],
            }

    holding, metrics = Holding(1, 100), BridgeMetrics()
    holding.add(0, held(3))
    fake = AlwaysFailing()
    with pytest.raises(BridgeError, match=r"delete after 5 consecutive failures .*queue http://sqs.local"):
        make_acks(fake, holding, metrics).delete_landed(holding.next_batch(3, 0, 0.01) or [])
    assert len(fake.calls) == 5


class FlakyStore:
    def __init__(self, failures: int, events: list[str]) -> None:
        self.failures = failures
        self.events = events
        self.names: list[str] = []
        self.files: dict[str, bytes] = {}

    @property
    def uri(self) -> str:
        return "memory://bronze/"

    def write(self, name: str, data: bytes) -> str:
        self.names.append(name)
        if self.failures:
            self.failures -= 1
            raise OSError(28, "No space left on device")
        self.events.append("write")
        self.files[name] = data
        return self.uri + name


def run_flusher(store: FlakyStore, fake: FakeSqs, n: int, policy: RetryPolicy) -> tuple[Flusher, Holding]:
    config = load_config(None, environ={}, overrides={"bridge": {"flush_max_messages": 10}})
    holding, metrics = Holding(1, 1000), BridgeMetrics()
    gate = FailureGate(policy, metrics, where=f"queue {QUEUE}")
    acks = Acknowledger(
        fake, QUEUE, holding=holding, gate=gate, metrics=metrics, visibility_seconds=60, workers=2
    )
    flusher = Flusher(
        store, acks, settings=config.bridge, bridge_id="b", holding=holding, gate=gate, metrics=metrics
    )
    holding.add(0, held(n))
    holding.start_draining()
    flusher.run()
    return flusher, holding


def test_store_failures_are_retried_under_one_name_and_deletes_follow_the_write() -> None:
    fake = FakeSqs()
    store = FlakyStore(failures=2, events=fake.events)
    run_flusher(store, fake, 25, FAST)
    assert store.names[0] == store.names[1] == store.names[2]  # a retried write reuses its name
    assert len(store.files) == 3  # 10 + 10 + 5
    landed = [json.loads(line)["i"] for data in store.files.values() for line in data.splitlines()]
    assert sorted(landed) == list(range(25))
    assert sorted(fake.deleted) == sorted(f"rh-{i}" for i in range(25))
    assert fake.events[0] == "write"  # nothing was deleted before the first durable write
    assert fake.events.count("write") == 3


def test_nothing_is_deleted_when_landing_keeps_failing() -> None:
    fake = FakeSqs()
    store = FlakyStore(failures=10**6, events=fake.events)
    with pytest.raises(BridgeError, match=r"land after 5 consecutive failures.*ENOSPC"):
        run_flusher(store, fake, 5, FAST)
    assert fake.calls == [] and store.files == {}


# ---- failure gate, backoff, metrics ---------------------------------------------------------------


def test_gate_backs_off_counts_by_kind_and_gives_up_after_the_limit() -> None:
    metrics = BridgeMetrics()
    gate = FailureGate(FAST, metrics, where="queue Q at http://endpoint")
    throttled = ClientError(
        {"Error": {"Code": "ThrottlingException", "Message": "slow down"}}, "ReceiveMessage"
    )
    for _ in range(4):
        assert gate.failure("receive", throttled) is not None
    gate.success("receive")  # a success resets the streak
    for _ in range(4):
        assert gate.failure("receive", EndpointConnectionError(endpoint_url="http://endpoint")) is not None
    assert gate.failure("receive", EndpointConnectionError(endpoint_url="http://endpoint")) is None
    assert gate.aborted.is_set()
    message = str(gate.fatal)
    assert "queue Q at http://endpoint" in message and "EndpointConnectionError" in message
    assert metrics.snapshot().errors == {
        "receive.ThrottlingException": 4,
        "receive.EndpointConnectionError": 5,
    }


def test_a_full_disk_is_named_by_errno_and_the_give_up_names_the_bronze_store(
    caplog: pytest.LogCaptureFixture,
) -> None:
    """A bronze write failing with ENOSPC: counted as land.ENOSPC, logged, and the final error
    points at the store, not at SQS."""
    metrics = BridgeMetrics()
    gate = FailureGate(FAST, metrics, where="queue Q at http://endpoint", store="file:///ops/bronze/")
    full = OSError(28, "No space left on device")
    with caplog.at_level("INFO", logger="jobs.bridge.retry"):
        for _ in range(4):
            assert gate.failure("land", full) is not None
        gate.success("land")
        for _ in range(5):
            gate.failure("land", full)
    assert metrics.snapshot().errors == {"land.ENOSPC": 9}
    message = str(gate.fatal)
    assert "gave up on land after 5 consecutive failures" in message
    assert "bronze store file:///ops/bronze/" in message and "ENOSPC: [Errno 28] No space left" in message
    lines = [(r.levelname, r.getMessage()) for r in caplog.records]
    assert ("INFO", "bridge: land works again after 4 failed attempt(s) "
            "(bronze store file:///ops/bronze/; queue Q at http://endpoint)") in lines  # fmt: skip
    warned = [m for level, m in lines if level == "WARNING"]
    assert len(warned) == 4 and all("land failed (ENOSPC" in m for m in warned)  # attempts 2 and 4, twice


def test_error_kinds_of_connection_failures_keep_their_class_names() -> None:
    from botocore.exceptions import ReadTimeoutError

    from jobs.bridge.retry import error_code

    assert error_code(ReadTimeoutError(endpoint_url="http://e", error="slow")) == "ReadTimeoutError"
    assert error_code(ConnectionResetError()) == "ConnectionResetError"  # no errno: the class name
    assert error_code(OSError(5, "Input/output error")) == "EIO"


def test_a_missing_queue_is_fatal_at_once() -> None:
    gate = FailureGate(FAST, BridgeMetrics(), where="queue Q")
    missing = ClientError({"Error": {"Code": "AWS.SimpleQueueService.NonExistentQueue"}}, "ReceiveMessage")
    assert gate.failure("receive", missing) is None
    assert "permanent error" in str(gate.fatal)


def test_backoff_is_exponential_capped_and_jittered() -> None:
    import random

    policy = RetryPolicy(base_seconds=0.2, cap_seconds=5.0)
    rng = random.Random(7)
    for attempt, ceiling in [(1, 0.2), (2, 0.4), (3, 0.8), (6, 5.0), (60, 5.0)]:
        delays = [policy.delay(attempt, rng) for _ in range(200)]
        assert all(ceiling / 2 <= d <= ceiling for d in delays)
        assert len(set(delays)) > 100  # jittered


def test_metrics_snapshot_reports_requests_per_message() -> None:
    metrics = BridgeMetrics()
    metrics.add(received=100, receive_calls=12, delete_calls=10, visibility_calls=2)
    metrics.flushed(0.25, messages=100, size=5000)
    metrics.error("receive.Throttling")
    snap = metrics.snapshot(held=3)
    assert snap.requests_per_message == pytest.approx(0.24)
    as_dict = snap.as_dict()
    assert (as_dict["landed"], as_dict["files"], as_dict["held"], as_dict["sqs_requests"]) == (100, 1, 3, 24)
    assert json.loads(json.dumps(as_dict))["errors"] == {"receive.Throttling": 1}
    assert "received=100" in snap.log_line() and "receive.Throttling=1" in snap.log_line()
    assert MetricsSnapshot().requests_per_message == 0.0


# ---- local store ------------------------------------------------------------------------------------


def test_local_store_writes_whole_files_and_leaves_no_temp(tmp_path: Path) -> None:
    store = LocalBronzeStore(tmp_path / "bronze")
    uri = store.write("dt=2024-01-02/0001-b-000001.jsonl", b'{"a":1}\n')
    final = tmp_path / "bronze" / "dt=2024-01-02" / "0001-b-000001.jsonl"
    assert uri == final.as_uri() and final.read_bytes() == b'{"a":1}\n'
    assert list((tmp_path / "bronze" / "_tmp").iterdir()) == []


def test_local_store_failure_leaves_neither_file_nor_temp(
    tmp_path: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    store = LocalBronzeStore(tmp_path / "bronze")

    def broken_fsync(fd: int) -> None:
        raise OSError(5, "Input/output error")

    store.write("dt=2024-01-02/warm.jsonl", b"x\n")  # directories exist and are fsynced already
    monkeypatch.setattr("jobs.bridge.landing.os.fsync", broken_fsync)
    with pytest.raises(OSError, match="Input/output"):
        store.write("dt=2024-01-02/0002-b-000002.jsonl", b"y\n")
    assert sorted(p.name for p in (tmp_path / "bronze").rglob("*") if p.is_file()) == ["warm.jsonl"]


# ---- command line ---------------------------------------------------------------------------------


def test_cli_without_queue_url_is_a_clear_config_error(
    capsys: pytest.CaptureFixture[str], tmp_path: Path
) -> None:
    from jobs.cli import main

    assert main(["bridge", "--lake-root", str(tmp_path)]) == 2
    assert "sqs.queue_url is not set: pass --queue-url" in capsys.readouterr().err


def test_cli_help_has_an_example(capsys: pytest.CaptureFixture[str]) -> None:
    from jobs.cli import main

    with pytest.raises(SystemExit) as exit_info:
        main(["bridge", "--help"])
    assert exit_info.value.code == 0
    out = capsys.readouterr().out
    assert "silverline bridge --config conf/local.yaml" in out and "--until-empty" in out


def test_holding_caps_a_bronze_file_by_bytes_and_a_big_message_still_goes_alone() -> None:
    holding = Holding(receivers=1, capacity=1000)
    small = held(6)  # each line is 8 bytes: {"i":N}\n
    big = [HeldMessage("rh-big", "id-big", b"x" * 100 + b"\n", time.monotonic(), time.monotonic() + 60)]
    holding.add(0, small[:3] + big + small[3:])
    assert not flush_due(2, 0.0, 100, 60.0, False, buffered_bytes=16, max_bytes=17)
    assert flush_due(2, 0.0, 100, 60.0, False, buffered_bytes=16, max_bytes=16)
    first = holding.next_batch(100, interval=60, timeout=0.01, max_bytes=20)
    assert [m.message_id for m in first or []] == ["id-0", "id-1"]  # a third would make 24 bytes
    second = holding.next_batch(100, interval=60, timeout=0.01, max_bytes=20)
    assert [m.message_id for m in second or []] == ["id-2"]  # the big one does not fit after it
    third = holding.next_batch(100, interval=60, timeout=0.01, max_bytes=20)
    assert [m.message_id for m in third or []] == ["id-big"]  # alone, over the limit
    rest = holding.next_batch(100, interval=60, timeout=0.01, max_bytes=20)
    assert [m.message_id for m in rest or []] == ["id-3", "id-4"]
    assert holding.next_batch(100, interval=60, timeout=0.01, max_bytes=20) == []  # 8 bytes left, young

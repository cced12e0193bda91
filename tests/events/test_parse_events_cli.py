"""``silverline parse-events``: input shapes, output lines, exit codes."""

from __future__ import annotations

import io
import json
import subprocess
import sys
from pathlib import Path

import pytest

from jobs.events.cli import iter_messages, write_records
from tests.event_cases import TEST_EVENT, s3_message, s3_record

pytestmark = pytest.mark.unit
PROJECT = Path(__file__).resolve().parents[2]
BODY = s3_message(s3_record("t1/raw/orders/a+b.csv"), s3_record("t1/silver/orders/x.parquet"))


def run_lines(text: str) -> list[dict[str, object]]:
    out = io.StringIO()
    write_records(text, out)
    return [json.loads(line) for line in out.getvalue().splitlines()]


def test_json_lines_with_garbage_line_in_the_middle() -> None:
    rows = run_lines(f"{BODY}\nnot json at all\n\n{TEST_EVENT}\n")
    assert [(r["message"], r["outcome"], r["reason"]) for r in rows] == [
        (0, "event", None),
        (0, "ignored", "not_raw_zone"),
        (1, "rejected", "invalid_json"),
        (2, "test", "s3_test_event"),
    ]
    assert rows[0]["key"] == "t1/raw/orders/a b.csv"


def test_sqs_receive_message_dump_is_unwrapped_with_ids() -> None:
    dump = json.dumps({"Messages": [{"MessageId": "m-1", "Body": BODY}, {"MessageId": "m-2", "Body": "{"}]})
    rows = run_lines(dump)
    assert [(r["message_id"], r["outcome"]) for r in rows] == [
        ("m-1", "event"),
        ("m-1", "ignored"),
        ("m-2", "rejected"),
    ]


def test_bronze_lines_are_unwrapped() -> None:
    line = json.dumps(
        {"message_id": "m-9", "queue_url": "q", "body": BODY, "received_at": "2024-01-01T00:00:00Z"}
    )
    assert [r["message_id"] for r in run_lines(line + "\n")] == ["m-9", "m-9"]


def test_a_list_of_bodies_and_a_single_pretty_printed_message() -> None:
    assert len(list(iter_messages(json.dumps([BODY, TEST_EVENT])))) == 2
    pretty = json.dumps(json.loads(BODY), indent=2)
    assert [b for _, b in iter_messages(pretty)] == [json.dumps(json.loads(BODY))]


def test_empty_input_prints_nothing() -> None:
    assert run_lines("") == []


def test_cli_exit_codes_and_summary(tmp_path: Path) -> None:
    sample = PROJECT / "conf" / "samples" / "notifications.jsonl"
    done = subprocess.run(
        [sys.executable, "-m", "jobs", "parse-events", str(sample)],
        capture_output=True,
        text=True,
        check=False,
    )
    assert done.returncode == 0
    assert "13 records: 9 event, 1 test, 1 ignored, 2 rejected" in done.stderr
    assert len(done.stdout.splitlines()) == 13
    missing = subprocess.run(
        [sys.executable, "-m", "jobs", "parse-events", str(tmp_path / "missing.jsonl")],
        capture_output=True,
        text=True,
        check=False,
    )
    assert missing.returncode == 1
    assert "cannot read" in missing.stderr


def test_help_explains_with_an_example() -> None:
    done = subprocess.run(
        [sys.executable, "-m", "jobs", "parse-events", "--help"], capture_output=True, text=True, check=False
    )
    assert done.returncode == 0
    assert "Example:" in done.stdout and "outcome" in done.stdout

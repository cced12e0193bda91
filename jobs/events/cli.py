"""``silverline parse-events``: show how silverline reads notification messages."""

from __future__ import annotations

import argparse
import collections
import json
import logging
import sys
from collections.abc import Iterator
from typing import Any, TextIO

from jobs.events.parse import parse_message

log = logging.getLogger(__name__)

_HELP = """\
Parse S3 event notification messages exactly as the stream does and print one
JSON object per S3 record: outcome (event | test | ignored | rejected), reason,
envelope (s3 | sns | eventbridge | cloudtrail | test | unknown), bucket, decoded
key, tenant / zone / dataset, event kind and name, event time (ISO-8601 UTC),
normalised sequencer, version id, eTag, size and event_id.

Input (a file, or - for stdin):
  * message bodies, one per line (JSON lines; a line that is not JSON is shown
    as a rejected record, it does not stop the run);
  * or one JSON document: a single message, a list of messages, or an SQS
    dump such as `aws sqs receive-message` output ({"Messages": [{"Body": ...}]}).
Bronze landing-log lines (objects with "message_id" and "body") and SQS
messages ({"MessageId", "Body"}) are unwrapped; their id is shown as message_id.

A summary of outcomes goes to stderr. Exit status is 0 even when records are
rejected; 1 only when the input cannot be read.

Example:
  silverline parse-events conf/samples/notifications.jsonl | jq -c '{outcome, reason, key}'
  aws sqs receive-message --queue-url "$DLQ" --max-number-of-messages 10 | silverline parse-events -
"""


def add_parser(subparsers: Any) -> None:
    """Register the ``parse-events`` subcommand.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    parser: argparse.ArgumentParser = subparsers.add_parser(
        "parse-events",
        help="parse notification messages and print one JSON line per S3 record",
        description=_HELP,
        formatter_class=argparse.RawDescriptionHelpFormatter,
    )
    parser.add_argument("input", nargs="?", default="-", metavar="FILE|-", help="messages (default: stdin)")
    parser.set_defaults(func=run)


def _unwrap(item: Any) -> tuple[str | None, str | None]:
    """Return (message_id, body) for one element of the input."""
    if isinstance(item, dict):
        if isinstance(item.get("Body"), str):
            return _str(item.get("MessageId")), item["Body"]
        if "message_id" in item and (item.get("body") is None or isinstance(item.get("body"), str)):
            return _str(item.get("message_id")), item.get("body")
        return None, json.dumps(item)
    if isinstance(item, str):
        return None, item
    return None, json.dumps(item)


def _str(value: Any) -> str | None:
    return value if isinstance(value, str) else None


def iter_messages(text: str) -> Iterator[tuple[str | None, str | None]]:
    """Split the input into (message_id, body) pairs.

    Args:
        text: The whole input.

    Yields:
        One pair per message, in input order.
    """
    try:
        doc = json.loads(text)
    except ValueError:
        doc = None
    else:
        if isinstance(doc, dict) and isinstance(doc.get("Messages"), list):
            doc = doc["Messages"]
        if isinstance(doc, list):
            yield from (_unwrap(item) for item in doc)
            return
        if isinstance(doc, dict):
            yield _unwrap(doc)
            return
    for line in text.splitlines():
        if not line.strip():
            continue
        try:
            parsed = json.loads(line)
        except ValueError:
            yield None, line
            continue
        yield _unwrap(parsed) if isinstance(parsed, dict) else (None, line)


def _read(path: str) -> str:
    if path == "-":
        return sys.stdin.read()
    with open(path, encoding="utf-8") as handle:
        return handle.read()


def write_records(text: str, out: TextIO) -> collections.Counter[str]:
    """Parse every message in ``text`` and write JSON lines to ``out``.

    Args:
        text: The input.
        out: Where the JSON lines go.

    Returns:
        Records per outcome.
    """
    counts: collections.Counter[str] = collections.Counter()
    for position, (message_id, body) in enumerate(iter_messages(text)):
        for record in parse_message(body):
            counts[record.outcome] += 1
            row = {"message": position, "message_id": message_id, **record.to_json_dict()}
            out.write(json.dumps(row, ensure_ascii=False) + "\n")
    return counts


def run(args: argparse.Namespace) -> int:
    """Run ``parse-events``.

    Args:
        args: Parsed arguments.

    Returns:
        0, or 1 when the input cannot be read.
    """
    try:
        text = _read(args.input)
    except (OSError, UnicodeDecodeError) as exc:
        print(f"silverline parse-events: cannot read {args.input}: {exc}", file=sys.stderr)
        return 1
    counts = write_records(text, sys.stdout)
    summary = ", ".join(f"{counts[o]} {o}" for o in ("event", "test", "ignored", "rejected"))
    print(f"parse-events: {sum(counts.values())} records: {summary}", file=sys.stderr)
    return 0

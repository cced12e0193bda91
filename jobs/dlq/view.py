"""How ``silverline dlq`` shows a message: its SQS metadata and the records ``parse-events`` sees.

Pure functions: an SQS message in, text lines or JSON-ready dicts out. Records
come from :func:`jobs.events.parse.parse_message`, the parser the stream uses,
and the JSON rows have the keys of ``silverline parse-events`` plus the receive
metadata.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Mapping
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobs.events.model import OUTCOMES, REJECTED, ParsedRecord
from jobs.events.parse import parse_message

if TYPE_CHECKING:
    from mypy_boto3_sqs.type_defs import MessageTypeDef

BODY_PREVIEW_CHARS = 200


@dataclass(frozen=True)
class MessageView:
    """One received message as ``dlq inspect`` shows it.

    Attributes:
        message_id: SQS message id.
        receive_count: ``ApproximateReceiveCount`` (None when SQS did not send it).
        sent_time: ``SentTimestamp`` as ISO-8601 UTC (None when missing).
        body: The message body.
        records: The parsed records (at least one).
    """

    message_id: str
    receive_count: int | None
    sent_time: str | None
    body: str
    records: list[ParsedRecord]


def _int(value: str | None) -> int | None:
    try:
        return int(value) if value is not None else None
    except ValueError:
        return None


def iso_millis(epoch_millis: str | None) -> str | None:
    """Turn an SQS timestamp (epoch milliseconds) into ISO-8601 UTC, e.g. ``2024-03-01T12:00:00.000Z``."""
    millis = _int(epoch_millis)
    if millis is None:
        return None
    when = datetime.fromtimestamp(millis / 1000, tz=UTC)
    return when.strftime("%Y-%m-%dT%H:%M:%S.") + f"{millis % 1000:03d}Z"


def view_message(message: MessageTypeDef) -> MessageView:
    """Parse a received message.

    Args:
        message: As ReceiveMessage returned it (with ``Attributes``).

    Returns:
        The view.
    """
    attributes = message.get("Attributes", {})
    body = message.get("Body", "")
    return MessageView(
        message_id=message.get("MessageId", ""),
        receive_count=_int(attributes.get("ApproximateReceiveCount")),
        sent_time=iso_millis(attributes.get("SentTimestamp")),
        body=body,
        records=parse_message(body),
    )


def json_rows(position: int, view: MessageView) -> list[dict[str, Any]]:
    """One ``parse-events`` row per record, with the message's receive metadata.

    Args:
        position: The message's position in the output (0-based).
        view: The message.

    Returns:
        JSON-ready dicts.
    """
    meta = {
        "message": position,
        "message_id": view.message_id,
        "receive_count": view.receive_count,
        "sent_time": view.sent_time,
    }
    return [{**meta, **record.to_json_dict()} for record in view.records]


def _cell(value: str | None) -> str:
    """A value as one shell-safe word: ``-`` for none, JSON-quoted when it has spaces or control chars."""
    if value is None:
        return "-"
    if not value or any(ch.isspace() or not ch.isprintable() or ch == '"' for ch in value):
        return json.dumps(value, ensure_ascii=False)
    return value


def text_lines(position: int, view: MessageView) -> list[str]:
    """The message header, one line per record and, when a record was rejected, a body preview.

    Args:
        position: The message's position in the output (0-based).
        view: The message.

    Returns:
        Lines without newlines.
    """
    receives = "-" if view.receive_count is None else str(view.receive_count)
    lines = [
        f"message {position + 1}: id={view.message_id} receives={receives} sent={_cell(view.sent_time)} "
        f"records={len(view.records)}"
    ]
    for record in view.records:
        lines.append(
            f"  {record.outcome:<8} reason={_cell(record.reason)} event={_cell(record.event_name)} "
            f"bucket={_cell(record.bucket)} key={_cell(record.key)} sequencer={_cell(record.sequencer)}"
        )
    if any(record.outcome == REJECTED for record in view.records):
        preview = view.body[:BODY_PREVIEW_CHARS]
        more = f" (+{len(view.body) - len(preview)} chars)" if len(view.body) > len(preview) else ""
        lines.append(f"  body: {json.dumps(preview, ensure_ascii=False)}{more}")
    return lines


def outcome_counts(views: list[MessageView]) -> collections.Counter[str]:
    """Records per outcome over all messages."""
    return collections.Counter(record.outcome for view in views for record in view.records)


def format_outcomes(counts: Mapping[str, int]) -> str:
    """``2 event, 0 test, 0 ignored, 1 rejected`` (every outcome, in the fixed order)."""
    return ", ".join(f"{counts.get(outcome, 0)} {outcome}" for outcome in OUTCOMES)

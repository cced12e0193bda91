"""Bronze records: one JSON line per SQS message, and the names of bronze files.

Pure functions only. The body is copied as the raw string SQS returned: it is
never parsed or judged here (garbage lands too; the stream rejects it later).
"""

from __future__ import annotations

import json
import os
import re
import secrets
import socket
from collections.abc import Iterable, Mapping
from datetime import UTC, datetime
from typing import Any

#: The fields of a bronze line, in order. The stream's schema depends on them.
BRONZE_FIELDS = ("message_id", "queue_url", "body", "received_at", "receive_count", "sent_at", "bridge_id")


def iso_utc_ms(moment: datetime) -> str:
    """Format a moment as ISO-8601 UTC with milliseconds and a ``Z``.

    Args:
        moment: A timezone-aware datetime.

    Returns:
        E.g. ``2026-11-23T05:58:15.957Z``.
    """
    return moment.astimezone(UTC).isoformat(timespec="milliseconds").replace("+00:00", "Z")


def epoch_ms_to_iso(value: str | None) -> str | None:
    """Turn an SQS epoch-milliseconds attribute (e.g. ``SentTimestamp``) into ISO-8601 UTC.

    Args:
        value: The attribute's string value, or ``None``.

    Returns:
        The ISO string, or ``None`` if the value is absent or not an integer.
    """
    if value is None or not value.strip().isdigit():
        return None
    millis = int(value)
    moment = datetime.fromtimestamp(millis // 1000, UTC).replace(microsecond=(millis % 1000) * 1000)
    return iso_utc_ms(moment)


def bronze_record(
    message: Mapping[str, Any], *, queue_url: str, received_at: str, bridge_id: str
) -> dict[str, Any]:
    """Build the bronze record of one received SQS message.

    Args:
        message: One entry of ReceiveMessage's ``Messages``.
        queue_url: The queue it came from.
        received_at: When the receive call returned (ISO-8601 UTC).
        bridge_id: This bridge process.

    Returns:
        A dict with exactly the fields of :data:`BRONZE_FIELDS`.
    """
    attributes: Mapping[str, str] = message.get("Attributes") or {}
    count = attributes.get("ApproximateReceiveCount", "")
    return {
        "message_id": str(message["MessageId"]),
        "queue_url": queue_url,
        "body": message.get("Body", ""),
        "received_at": received_at,
        "receive_count": int(count) if count.isdigit() else 0,
        "sent_at": epoch_ms_to_iso(attributes.get("SentTimestamp")),
        "bridge_id": bridge_id,
    }


def encode_line(record: Mapping[str, Any]) -> bytes:
    """Encode one record as a JSON line (ASCII-safe, so any body round-trips).

    Args:
        record: A bronze record.

    Returns:
        ASCII bytes ending with a newline; newlines inside the body are escaped.
    """
    return (json.dumps(record, ensure_ascii=True, separators=(",", ":")) + "\n").encode("ascii")


def join_lines(lines: Iterable[bytes]) -> bytes:
    """Concatenate encoded lines into the content of one bronze file.

    Args:
        lines: Lines from :func:`encode_line`.

    Returns:
        The file content.
    """
    return b"".join(lines)


def bronze_file_name(moment: datetime, bridge_id: str, seq: int) -> str:
    """Name a bronze file, relative to the bronze directory.

    Names are unique per bridge (``seq``) and across bridges (``bridge_id``), and sort
    by time: the epoch milliseconds come first, zero-padded.

    Args:
        moment: The flush time (timezone-aware).
        bridge_id: This bridge process.
        seq: The bridge's file counter.

    Returns:
        E.g. ``dt=2026-11-23/1795413495957-host-42-a1b2c3-000007.jsonl``.
    """
    utc = moment.astimezone(UTC)
    epoch_ms = int(utc.timestamp() * 1000)
    return f"dt={utc:%Y-%m-%d}/{epoch_ms:013d}-{bridge_id}-{seq:06d}.jsonl"


def default_bridge_id() -> str:
    """Identify this process: host, pid and a random suffix (pids repeat in containers).

    Returns:
        A string of letters, digits and ``-``.
    """
    host = re.sub(r"[^A-Za-z0-9]+", "-", socket.gethostname())[:40].strip("-") or "bridge"
    return f"{host}-{os.getpid()}-{secrets.token_hex(3)}"

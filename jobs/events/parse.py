"""Plain-Python parser: one SQS message body -> one ParsedRecord per S3 record.

Used by the SQS bridge's tools, ``silverline parse-events`` and notebooks, and run
in the stream's Spark tasks by :mod:`jobs.events.spark`; ``tests/event_cases.py``
holds the cases it must get right.
"""

from __future__ import annotations

import dataclasses
import hashlib
import json
import re
from collections.abc import Mapping
from datetime import UTC, datetime
from typing import Any
from urllib.parse import unquote_plus

from jobs.events import model as m
from jobs.events.model import ParsedRecord

_BAD_PERCENT = re.compile(m.BAD_PERCENT_RE)
_CONTROL = re.compile(m.CONTROL_CHARS_RE)
_TRAVERSAL = re.compile(r"(^|/)\.{1,2}(/|$)")
_NAME = re.compile(m.NAME_RE)
_BUCKET = re.compile(m.BUCKET_RE)
_SEQUENCER = re.compile(m.SEQUENCER_RE)
_EVENT_TIME = re.compile(m.EVENT_TIME_RE)
_FRACTION = re.compile(r"\.(\d{6})\d+")


@dataclasses.dataclass(frozen=True)
class _Raw:
    """Fields pulled out of one envelope's record, before the rules run."""

    envelope: str
    index: int
    bucket: Any = None
    key: Any = None
    event_name: Any = None
    event_time: Any = None
    sequencer: Any = None
    version_id: Any = None
    etag: Any = None
    size: Any = None
    encoded_key: bool = False
    request_id: Any = None  # CloudTrail's requestID: tells apart calls its other fields cannot


def _get(obj: Any, *path: str) -> Any:
    for part in path:
        if not isinstance(obj, Mapping):
            return None
        obj = obj.get(part)
    return obj


def _str(value: Any) -> str | None:
    if not isinstance(value, str):
        return None
    try:
        value.encode("utf-8")
    except UnicodeEncodeError:  # a lone surrogate: "?" as Java's UTF-8 encoder writes it
        return value.encode("utf-8", "replace").decode("utf-8")
    return value


def parse_event_time(value: Any) -> datetime | None:
    """Parse an ISO-8601 timestamp with a zone into an aware UTC datetime.

    Args:
        value: The raw field value.

    Returns:
        The time in UTC (microsecond precision), or None when missing or invalid.
    """
    if not isinstance(value, str) or not _EVENT_TIME.fullmatch(value):
        return None
    try:
        parsed = datetime.fromisoformat(_FRACTION.sub(r".\1", value))
    except ValueError:
        return None
    try:
        return parsed.astimezone(UTC)
    except OverflowError:  # e.g. 0001-01-01T00:00:00+01:00 is before year 1 in UTC
        return None


def normalize_sequencer(value: Any) -> tuple[str | None, bool]:
    """Normalise an S3 sequencer so that string order is event order (R4).

    Upper-case hex, leading zeros stripped, then left-padded with zeros to
    32 digits: sequencers of different lengths compare by numeric value.

    Args:
        value: The raw ``sequencer`` field.

    Returns:
        (normalised sequencer or None, whether the value was invalid).
    """
    if value is None or value == "":
        return None, False
    if not isinstance(value, str) or not _SEQUENCER.fullmatch(value):
        return None, True
    digits = value.upper().lstrip("0")
    if len(digits) > m.SEQUENCER_WIDTH:
        return None, True
    return digits.rjust(m.SEQUENCER_WIDTH, "0"), False


def decode_key(raw: str, encoded: bool) -> tuple[str, str | None]:
    """Decode a notification key (URL-encoded in S3 notifications, R2).

    Args:
        raw: The key as it appears in the message.
        encoded: Whether the envelope URL-encodes keys (direct S3 and SNS do).

    Returns:
        (decoded key, or the raw key when it cannot be decoded; reject reason or None).
    """
    if not encoded:
        key = raw
    elif _BAD_PERCENT.search(raw):
        return raw, m.R_KEY_ENCODING
    else:
        key = unquote_plus(raw, encoding="utf-8", errors="replace")
    if "\ufffd" in key:
        return key, m.R_KEY_UTF8
    return key, None


def check_key(key: str) -> str | None:
    """Return the reason a decoded key is unsafe, or None when it is safe (R2)."""
    if len(key.encode("utf-8")) > m.MAX_KEY_BYTES:
        return m.R_KEY_TOO_LONG
    if _CONTROL.search(key):
        return m.R_KEY_CONTROL
    if key.startswith("/"):
        return m.R_KEY_ABSOLUTE
    if _TRAVERSAL.search(key):
        return m.R_KEY_TRAVERSAL
    if "//" in key:
        return m.R_KEY_EMPTY_SEGMENT
    return None


def event_kind(event_name: str | None) -> str | None:
    """Map an S3 event name to ``created``, ``removed`` or None (not handled)."""
    if event_name is None:
        return None
    if event_name.startswith(m.CREATED_PREFIX):
        return m.CREATED
    if event_name.startswith(m.REMOVED_PREFIXES):
        return m.REMOVED
    return None


def event_id(rec: ParsedRecord, request_id: str | None = None) -> str:
    """Identity of an event (R3): (bucket, key, versionId, sequencer) hashed.

    Without a sequencer the event name, event time and eTag join the identity,
    so two uploads of one key are never mistaken for a duplicate; so does the
    API call's request id where the event carries one (CloudTrail: no eTag, times
    in whole seconds), while a redelivery of the same call keeps its identity.
    """
    parts = [rec.bucket or "", rec.key or "", rec.version_id or "", rec.sequencer or ""]
    if rec.sequencer is None:
        when = rec.event_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ") if rec.event_time else ""
        parts += [rec.event_name or "", when, rec.etag or ""]
        if request_id:
            parts.append(request_id)
    return hashlib.sha256(m.ID_SEPARATOR.join(parts).encode("utf-8")).hexdigest()


def _outcome(raw: _Raw) -> ParsedRecord:
    """Apply the rules (in their fixed order) to one extracted record."""
    base = ParsedRecord(
        outcome=m.REJECTED,
        reason=None,
        envelope=raw.envelope,
        record_index=raw.index,
        bucket=_str(raw.bucket),
        key=_str(raw.key),
        event_name=_str(raw.event_name),
        event_kind=event_kind(_str(raw.event_name)),
        event_time=parse_event_time(raw.event_time),
        version_id=_str(raw.version_id),
        etag=_str(raw.etag),
        size=raw.size if isinstance(raw.size, int) and not isinstance(raw.size, bool) else None,
    )
    sequencer, bad_sequencer = normalize_sequencer(raw.sequencer)
    base = dataclasses.replace(base, sequencer=sequencer)

    def reject(reason: str, **changes: Any) -> ParsedRecord:
        return dataclasses.replace(base, reason=reason, **changes)

    if not base.bucket:
        return reject(m.R_MISSING_BUCKET)
    if not _BUCKET.fullmatch(base.bucket):
        return reject(m.R_INVALID_BUCKET)
    if not base.key:
        return reject(m.R_MISSING_KEY)
    if base.event_name is None:
        return reject(m.R_MISSING_EVENT_NAME)
    key, reason = decode_key(base.key, raw.encoded_key)
    reason = reason or check_key(key)
    if reason:
        return reject(reason, key=key)
    segments = key.split("/")
    base = dataclasses.replace(
        base,
        key=key,
        tenant=segments[0],
        zone=segments[1] if len(segments) > 1 else None,
        dataset=segments[2] if len(segments) > 2 else None,
    )
    if base.event_time is None:
        return reject(m.R_INVALID_EVENT_TIME)
    if bad_sequencer:
        return reject(m.R_INVALID_SEQUENCER)
    if base.event_kind is None:
        return dataclasses.replace(base, outcome=m.IGNORED, reason=m.R_EVENT_TYPE)
    if key.endswith("/"):
        return dataclasses.replace(base, outcome=m.IGNORED, reason=m.R_FOLDER_MARKER)
    if base.zone != m.RAW_ZONE:
        return dataclasses.replace(base, outcome=m.IGNORED, reason=m.R_NOT_RAW_ZONE)
    if len(segments) < 4:
        return reject(m.R_KEY_TOO_SHORT)
    if not _NAME.fullmatch(base.tenant or ""):
        return reject(m.R_INVALID_TENANT)
    if not _NAME.fullmatch(base.dataset or ""):
        return reject(m.R_INVALID_DATASET)
    event = dataclasses.replace(base, outcome=m.EVENT)
    return dataclasses.replace(event, event_id=event_id(event, _str(raw.request_id)))


def _message_level(envelope: str, outcome: str, reason: str, **fields: Any) -> list[ParsedRecord]:
    return [ParsedRecord(outcome=outcome, reason=reason, envelope=envelope, record_index=0, **fields)]


def _s3_records(body: Mapping[str, Any], envelope: str) -> list[ParsedRecord]:
    records = body.get("Records")
    if not isinstance(records, list) or not records:
        return _message_level(envelope, m.REJECTED, m.R_NO_RECORDS)
    out = []
    for index, rec in enumerate(records):
        if not isinstance(rec, Mapping):
            out.append(ParsedRecord(m.REJECTED, m.R_INVALID_RECORD, envelope, index))
            continue
        obj = _get(rec, "s3", "object")
        raw = _Raw(
            envelope=envelope,
            index=index,
            bucket=_get(rec, "s3", "bucket", "name"),
            key=_get(obj, "key"),
            event_name=rec.get("eventName"),
            event_time=rec.get("eventTime"),
            sequencer=_get(obj, "sequencer"),
            version_id=_get(obj, "versionId"),
            etag=_get(obj, "eTag"),
            size=_get(obj, "size"),
            encoded_key=True,
        )
        out.append(_outcome(raw))
    return out


def _test_event(body: Mapping[str, Any], envelope: str) -> list[ParsedRecord]:
    return _message_level(
        envelope,
        m.TEST,
        m.R_TEST_EVENT,
        bucket=_str(body.get("Bucket")),
        event_name=_str(body.get("Event")),
        event_time=parse_event_time(body.get("Time")),
    )


def _sns(body: Mapping[str, Any]) -> list[ParsedRecord]:
    if body.get("Type") != "Notification":
        return _message_level(m.ENV_SNS, m.IGNORED, m.R_SNS_CONTROL)
    try:
        inner = json.loads(body["Message"]) if isinstance(body.get("Message"), str) else None
    except (ValueError, RecursionError):
        inner = None
    if isinstance(inner, Mapping) and inner.get("Records") is not None:
        return _s3_records(inner, m.ENV_SNS)
    if isinstance(inner, Mapping) and inner.get("Event") == "s3:TestEvent":
        return _test_event(inner, m.ENV_SNS)
    return _message_level(m.ENV_SNS, m.REJECTED, m.R_SNS_NOT_S3)


def _eventbridge(body: Mapping[str, Any]) -> list[ParsedRecord]:
    detail = body.get("detail")
    kind = body.get("detail-type")
    reason = _str(_get(detail, "reason"))
    if kind == m.EB_OBJECT_CREATED:
        name: Any = m.EB_CREATED_REASONS.get(reason or "", f"{m.CREATED_PREFIX}{reason or ''}")
    elif kind == m.EB_OBJECT_DELETED:
        pair = f"{reason or ''}|{_str(_get(detail, 'deletion-type')) or ''}"
        name = m.EB_DELETED_NAMES.get(pair, m.EB_DELETED_DEFAULT)
    else:
        name = kind
    raw = _Raw(
        envelope=m.ENV_EVENTBRIDGE,
        index=0,
        bucket=_get(detail, "bucket", "name"),
        key=_get(detail, "object", "key"),
        event_name=name,
        event_time=body.get("time"),
        sequencer=_get(detail, "object", "sequencer"),
        version_id=_get(detail, "object", "version-id"),
        etag=_get(detail, "object", "etag"),
        size=_get(detail, "object", "size"),
    )
    return [_outcome(raw)]


def _cloudtrail(body: Mapping[str, Any]) -> list[ParsedRecord]:
    detail = body.get("detail")
    api = _str(_get(detail, "eventName"))
    params = _get(detail, "requestParameters")
    common: dict[str, Any] = {
        "envelope": m.ENV_CLOUDTRAIL,
        "bucket": _get(params, "bucketName"),
        "event_name": m.CLOUDTRAIL_NAMES.get(api or "", api),
        "event_time": _get(detail, "eventTime"),
        "request_id": _get(detail, "requestID") or _get(detail, "eventID"),
    }
    if _get(detail, "errorCode") is not None:
        return _message_level(
            m.ENV_CLOUDTRAIL,
            m.IGNORED,
            m.R_API_FAILED,
            bucket=_str(common["bucket"]),
            event_name=_str(common["event_name"]),
        )
    if api == "DeleteObjects":
        objects = _get(params, "delete", "Object")
        if not isinstance(objects, list) or not objects:
            return _message_level(m.ENV_CLOUDTRAIL, m.REJECTED, m.R_NO_RECORDS)
        return [
            _outcome(_Raw(index=i, key=_get(o, "Key"), version_id=_get(o, "VersionId"), **common))
            for i, o in enumerate(objects)
        ]
    raw = _Raw(
        index=0,
        key=_get(params, "key"),
        version_id=_get(detail, "responseElements", "x-amz-version-id"),
        size=_get(detail, "additionalEventData", "bytesTransferredIn"),
        **common,
    )
    return [_outcome(raw)]


def parse_message(body: str | None) -> list[ParsedRecord]:
    """Parse one SQS message body into records, never raising (R1).

    Args:
        body: The message body as received from SQS.

    Returns:
        At least one record: every S3 record of the message, or one record
        that says why the message is a test, ignored or rejected.
    """
    try:
        doc = json.loads(body) if body else None
    except (ValueError, RecursionError):  # RecursionError: nesting deeper than Python's stack
        doc = None
    if not isinstance(doc, Mapping):
        return _message_level(m.ENV_UNKNOWN, m.REJECTED, m.R_INVALID_JSON)
    if doc.get("Records") is not None:
        return _s3_records(doc, m.ENV_S3)
    if doc.get("Event") == "s3:TestEvent":
        return _test_event(doc, m.ENV_TEST)
    if doc.get("Type") in ("Notification", "SubscriptionConfirmation", "UnsubscribeConfirmation"):
        return _sns(doc)
    if doc.get("source") == "aws.s3":
        if doc.get("detail-type") == m.EB_CLOUDTRAIL:
            return _cloudtrail(doc)
        return _eventbridge(doc)
    return _message_level(m.ENV_UNKNOWN, m.REJECTED, m.R_UNKNOWN_ENVELOPE)

"""The S3 event model: outcomes, reasons and the rules the parser applies.

The parser (:mod:`jobs.events.parse`) implements the rules from the constants here,
and is tested against one table of cases (``tests/event_cases.py``); the stream runs
it in its Spark tasks (:mod:`jobs.events.spark`).
"""

from __future__ import annotations

import dataclasses
from datetime import datetime
from typing import Any, Final

# ---- outcomes of parsing one record --------------------------------------------------------------
EVENT: Final = "event"  # a raw-zone create/remove event for the stream
TEST: Final = "test"  # s3:TestEvent: acknowledged and counted
IGNORED: Final = "ignored"  # valid, but not for silver (other zones, other event types)
REJECTED: Final = "rejected"  # unparseable or unsafe; kept in bronze with the reason
OUTCOMES: Final = (EVENT, TEST, IGNORED, REJECTED)

# ---- envelopes: how the message was delivered -----------------------------------------------------
ENV_S3: Final = "s3"
ENV_SNS: Final = "sns"
ENV_EVENTBRIDGE: Final = "eventbridge"
ENV_CLOUDTRAIL: Final = "cloudtrail"
ENV_TEST: Final = "test"
ENV_UNKNOWN: Final = "unknown"

# ---- reasons (stable codes; outcome in the comment) -----------------------------------------------
R_TEST_EVENT: Final = "s3_test_event"  # test
R_NOT_RAW_ZONE: Final = "not_raw_zone"  # ignored
R_FOLDER_MARKER: Final = "folder_marker"  # ignored
R_EVENT_TYPE: Final = "event_type_not_handled"  # ignored
R_API_FAILED: Final = "api_call_failed"  # ignored: CloudTrail recorded a failed call
R_SNS_CONTROL: Final = "sns_control_message"  # ignored: SubscriptionConfirmation etc.
R_INVALID_JSON: Final = "invalid_json"  # rejected: body is not a JSON object
R_UNKNOWN_ENVELOPE: Final = "unknown_envelope"
R_NO_RECORDS: Final = "no_records"
R_INVALID_RECORD: Final = "invalid_record"
R_SNS_NOT_S3: Final = "sns_message_not_s3"
R_MISSING_BUCKET: Final = "missing_bucket"
R_INVALID_BUCKET: Final = "invalid_bucket"
R_FOREIGN_BUCKET: Final = "foreign_bucket"  # an event of another bucket than the group's (stream only)
R_MISSING_KEY: Final = "missing_key"
R_MISSING_EVENT_NAME: Final = "missing_event_name"
R_KEY_ENCODING: Final = "key_malformed_encoding"
R_KEY_UTF8: Final = "key_invalid_utf8"
R_KEY_TOO_LONG: Final = "key_too_long"
R_KEY_CONTROL: Final = "key_control_characters"
R_KEY_ABSOLUTE: Final = "key_absolute"
R_KEY_TRAVERSAL: Final = "key_traversal"
R_KEY_EMPTY_SEGMENT: Final = "key_empty_segment"
R_KEY_TOO_SHORT: Final = "key_too_short"
R_INVALID_TENANT: Final = "invalid_tenant"
R_INVALID_DATASET: Final = "invalid_dataset"
R_INVALID_EVENT_TIME: Final = "invalid_event_time"
R_INVALID_SEQUENCER: Final = "invalid_sequencer"

# ---- event kinds -----------------------------------------------------------------------------------
CREATED: Final = "created"
REMOVED: Final = "removed"
CREATED_PREFIX: Final = "ObjectCreated:"
REMOVED_PREFIXES: Final = ("ObjectRemoved:", "LifecycleExpiration:")

# ---- keys (R2) -------------------------------------------------------------------------------------
RAW_ZONE: Final = "raw"
MAX_KEY_BYTES: Final = 1024  # S3's limit
# A '%' not followed by two hex digits cannot be URL-decoded.
BAD_PERCENT_RE: Final = r"%(?![0-9A-Fa-f]{2})"
CONTROL_CHARS_RE: Final = r"[\x00-\x1f\x7f]"
# A bucket is one path segment: S3's (legacy-tolerant) name alphabet, never "..", "/" or "%".
BUCKET_RE: Final = r"^(?!.*\.\.)[A-Za-z0-9][A-Za-z0-9._-]{0,254}$"
# tenant and dataset become Iceberg namespace / table names.
NAME_RE: Final = r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$"

# ---- sequencer (R4) --------------------------------------------------------------------------------
SEQUENCER_WIDTH: Final = 32
SEQUENCER_RE: Final = r"^[0-9A-Fa-f]+$"

# ---- event time: ISO-8601 with a zone, as S3, EventBridge and CloudTrail write it ------------------
EVENT_TIME_RE: Final = r"^\d{4}-\d{2}-\d{2}T\d{2}:\d{2}:\d{2}(\.\d{1,9})?(Z|[+-]\d{2}:\d{2})$"

# ---- EventBridge and CloudTrail names mapped to S3 notification event names -------------------------
EB_OBJECT_CREATED: Final = "Object Created"
EB_OBJECT_DELETED: Final = "Object Deleted"
EB_CLOUDTRAIL: Final = "AWS API Call via CloudTrail"
EB_CREATED_REASONS: Final = {
    "PutObject": "ObjectCreated:Put",
    "POST Object": "ObjectCreated:Post",
    "CopyObject": "ObjectCreated:Copy",
    "CompleteMultipartUpload": "ObjectCreated:CompleteMultipartUpload",
}
# "<reason>|<deletion-type>" -> event name; anything else under Object Deleted is ObjectRemoved:Delete
EB_DELETED_NAMES: Final = {
    "DeleteObject|Permanently Deleted": "ObjectRemoved:Delete",
    "DeleteObject|Delete Marker Created": "ObjectRemoved:DeleteMarkerCreated",
    "Lifecycle Expiration|Permanently Deleted": "LifecycleExpiration:Delete",
    "Lifecycle Expiration|Delete Marker Created": "LifecycleExpiration:DeleteMarkerCreated",
}
EB_DELETED_DEFAULT: Final = "ObjectRemoved:Delete"
CLOUDTRAIL_NAMES: Final = {
    "PutObject": "ObjectCreated:Put",
    "CopyObject": "ObjectCreated:Copy",
    "CompleteMultipartUpload": "ObjectCreated:CompleteMultipartUpload",
    "DeleteObject": "ObjectRemoved:Delete",
    "DeleteObjects": "ObjectRemoved:Delete",
}
# Separator of the identity fields hashed into event_id (cannot occur in valid keys).
ID_SEPARATOR: Final = "\x1f"


@dataclasses.dataclass(frozen=True)
class ParsedRecord:
    """One record of one message, as the parser produces it.

    ``key`` is the decoded key (the raw one when it cannot be decoded);
    ``tenant``/``zone``/``dataset`` are set only for keys that passed the
    safety checks; ``sequencer`` is upper-case hex left-padded to 32 digits, so
    string order is event order within one key (None when absent: ordering
    then falls back to ``event_time``).
    """

    outcome: str
    reason: str | None
    envelope: str
    record_index: int
    bucket: str | None = None
    key: str | None = None
    tenant: str | None = None
    zone: str | None = None
    dataset: str | None = None
    event_kind: str | None = None
    event_name: str | None = None
    event_time: datetime | None = None
    sequencer: str | None = None
    version_id: str | None = None
    etag: str | None = None
    size: int | None = None
    event_id: str | None = None

    def to_json_dict(self) -> dict[str, Any]:
        """Return a JSON-ready dict (``event_time`` as ISO-8601 UTC with 'Z')."""
        data = dataclasses.asdict(self)
        if self.event_time is not None:
            data["event_time"] = self.event_time.strftime("%Y-%m-%dT%H:%M:%S.%fZ")
        return data


FIELDS: Final = tuple(f.name for f in dataclasses.fields(ParsedRecord))

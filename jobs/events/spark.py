"""Spark-native S3 event parsing: SQS message bodies -> one row per S3 record.

Applies the rules of the plain-Python parser :func:`jobs.events.parse.parse_message`
(the specification) to whole DataFrames with built-in functions only, from the
constants in :mod:`jobs.events.model`; ``tests/event_cases.py`` holds the cases
both must get right, and the Spark tests check that the two agree on every field.
A message is read with one ``from_json`` pass (plus one per record and, for SNS,
for the inner message); see :mod:`jobs.events.spark_schema`.

Example:
    parsed_df = parse_events(landed_df, body_col="body")
"""

from __future__ import annotations

import re
from functools import reduce
from typing import Final

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.events import model as m
from jobs.events.model import FIELDS
from jobs.events.spark_schema import (
    DELETED_OBJECT,
    ITEM_SCHEMA,
    MESSAGE,
    PARSED_SCHEMA,
    PARTIAL_RESULTS_CONF,
    RAW_SCHEMA,
    S3_RECORD,
    TEST_EVENT,
    CloudTrail,
    Members,
    eventbridge_raw,
    is_present,
    lookup,
    object_items,
    raw_struct,
    read_document,
    read_object,
    s3_record_raw,
)

__all__ = ["PARSED_SCHEMA", "java_regex", "parse_events"]

# Literals that parse.py uses inline (model.py does not name them).
TEST_EVENT_NAME: Final = "s3:TestEvent"
SNS_NOTIFICATION: Final = "Notification"
SNS_TYPES: Final = (SNS_NOTIFICATION, "SubscriptionConfirmation", "UnsubscribeConfirmation")
S3_SOURCE: Final = "aws.s3"
TRAVERSAL_RE: Final = r"(^|/)\.{1,2}(/|$)"  # parse._TRAVERSAL
# Java decodes an encoded surrogate (ED A0-BF ..) to one U+FFFD, Python to one per
# byte; an invalid lead byte (FF) in place of ED gives the same result in both.
_SURROGATE_LEAD_RE: Final = r"(?i)%ED(?=%[AB][0-9A-F])"
_OUTCOME_BY_REASON: Final = {
    m.R_TEST_EVENT: m.TEST,
    m.R_SNS_CONTROL: m.IGNORED,
    m.R_API_FAILED: m.IGNORED,
    m.R_EVENT_TYPE: m.IGNORED,
    m.R_FOLDER_MARKER: m.IGNORED,
    m.R_NOT_RAW_ZONE: m.IGNORED,
}  # every other reason: rejected
_DAY_MICROS: Final = 86_400_000_000

# Working columns (dropped by parse_events' final select).
_BODY, _MSG, _DOC_TEXT, _DOC, _PRESET, _ITEMS, _ITEM, _MSG_RAW, _REC, _DEL, _RAW = (
    f"_ev_{n}"
    for n in ("body", "msg", "doc_text", "doc", "preset", "items", "item", "msg_raw", "rec", "del", "raw")
)
_HAS_RECORDS, _RECORDS, _OBJECTS = (f"_ev_{n}" for n in ("has_records", "records", "objects"))
_KEY, _KEY_REASON, _SEGMENTS, _BAD_SEQ, _KIND, _FRACTION, _ZONE, _WHEN = (
    f"_ev_{n}" for n in ("key", "key_reason", "segments", "bad_seq", "kind", "fraction", "zone", "when")
)


def java_regex(pattern: str) -> str:
    r"""Make a Python pattern's ``$`` mean "end of input" in Java (``\z``), as in ``fullmatch``."""
    return re.sub(r"(?<!\\)\$", r"\\z", pattern)


def parse_events(df: DataFrame, body_col: str = "body") -> DataFrame:
    """Parse SQS message bodies into one row per S3 record (at least one per message).

    Args:
        df: Messages: a string column ``body_col`` (may be null) and any other columns.
        body_col: The name of the body column.

    Returns:
        The input's other columns, repeated for each record, then the
        ParsedRecord fields in FIELDS order (types: PARSED_SCHEMA).

    Raises:
        ValueError: The body column is missing, another column has a ParsedRecord
            field name, or the session has JSON partial results switched off.
    """
    if body_col not in df.columns:
        raise ValueError(f"no column {body_col!r} in {df.columns}")
    passthrough = [c for c in df.columns if c != body_col]
    clash = [c for c in passthrough if c in FIELDS or c.startswith("_ev_")]
    if clash:
        raise ValueError(f"columns {clash} clash with the parsed fields; rename them first")
    if df.sparkSession.conf.get(PARTIAL_RESULTS_CONF) != "true":
        raise ValueError(f"parse_events needs {PARTIAL_RESULTS_CONF}=true (the Spark 3.5 default)")
    return (
        df.withColumn(_BODY, F.col(body_col))
        .transform(with_envelope)
        .transform(with_document)
        .transform(with_record_items)
        .transform(explode_records)
        .transform(with_raw_fields)
        .transform(with_normalized_fields)
        .transform(with_outcome)
        .transform(with_event_id)
        .select(*passthrough, *[F.col(f.name).cast(f.dataType).alias(f.name) for f in PARSED_SCHEMA.fields])
    )


def with_envelope(df: DataFrame) -> DataFrame:
    """Add ``envelope`` (parse_message's order of checks), early reasons and the text holding the records."""
    df = df.withColumn(_MSG, read_document(F.col(_BODY), MESSAGE))
    body, msg = F.col(_BODY), Members(F.col(_MSG), F.col(_BODY))
    envelope = (
        F.when(msg.value.isNull(), F.lit(m.ENV_UNKNOWN))
        .when(is_present(body, ["Records"], msg.any("Records")), m.ENV_S3)
        .when(msg.any("Event") == TEST_EVENT_NAME, m.ENV_TEST)
        .when(msg.any("Type").isin(*SNS_TYPES), m.ENV_SNS)
        .when(
            msg.any("source") == S3_SOURCE,
            F.when(msg.any("detail-type") == m.EB_CLOUDTRAIL, m.ENV_CLOUDTRAIL).otherwise(m.ENV_EVENTBRIDGE),
        )
        .otherwise(m.ENV_UNKNOWN)
    )
    notification = (envelope == m.ENV_SNS) & (msg.any("Type") == SNS_NOTIFICATION)
    return df.withColumns(
        {
            "envelope": envelope,
            _PRESET: F.when(msg.value.isNull(), F.lit(m.R_INVALID_JSON))
            .when(envelope == m.ENV_UNKNOWN, m.R_UNKNOWN_ENVELOPE)
            .when((envelope == m.ENV_SNS) & ~notification, m.R_SNS_CONTROL),
            _DOC_TEXT: F.when(envelope.isin(m.ENV_S3, m.ENV_TEST), body).when(
                notification, msg.string("Message")
            ),
        }
    )


def with_document(df: DataFrame) -> DataFrame:
    """Add the document holding Records or the test event (the message, or the SNS message read as JSON).

    Also its Records and a CloudTrail DeleteObjects request's objects as items (ITEM_SCHEMA).
    """
    env = F.col("envelope")
    df = df.withColumn(
        _DOC, F.when(env == m.ENV_S3, F.col(_MSG)).otherwise(read_document(F.col(_DOC_TEXT), MESSAGE))
    )
    doc, trail = Members(F.col(_DOC), F.col(_DOC_TEXT)), CloudTrail.of(Members(F.col(_MSG), F.col(_BODY)))
    return df.withColumns(
        {
            _HAS_RECORDS: is_present(doc.source, ["Records"], doc.any("Records")),
            _RECORDS: object_items(doc.source, ["Records"], doc.any("Records")),
            _OBJECTS: F.when(env == m.ENV_CLOUDTRAIL, trail.objects),
        }
    )


def _is_empty(array: Column) -> Column:
    return F.coalesce(F.size(array), F.lit(-1)) < 1


def with_record_items(df: DataFrame) -> DataFrame:
    """Add each message's items (S3 records, CloudTrail objects or a placeholder), reasons and fields."""
    env, preset, records, objects = F.col("envelope"), F.col(_PRESET), F.col(_RECORDS), F.col(_OBJECTS)
    doc, msg = Members(F.col(_DOC), F.col(_DOC_TEXT)), Members(F.col(_MSG), F.col(_BODY))
    trail = CloudTrail.of(msg)
    preset = (
        F.when(preset.isNotNull(), preset)
        .when(
            env.isin(m.ENV_S3, m.ENV_SNS, m.ENV_TEST),
            F.when(F.col(_HAS_RECORDS), F.when(_is_empty(records), m.R_NO_RECORDS))
            .when(doc.any("Event") == TEST_EVENT_NAME, m.R_TEST_EVENT)
            .otherwise(m.R_SNS_NOT_S3),
        )
        .when(
            env == m.ENV_CLOUDTRAIL,
            F.when(trail.failed, m.R_API_FAILED).when(
                trail.delete_objects & _is_empty(objects), m.R_NO_RECORDS
            ),
        )
    )
    placeholder = F.array(F.lit(None).cast(ITEM_SCHEMA))
    items = (
        F.when(preset.isNotNull(), placeholder)
        .when(env.isin(m.ENV_S3, m.ENV_SNS), records)
        .when((env == m.ENV_CLOUDTRAIL) & trail.delete_objects, objects)
        .otherwise(placeholder)
    )
    test = Members(read_object(doc.source, TEST_EVENT), doc.source)
    test_raw = raw_struct(
        bucket=test.string("Bucket"), event_name=TEST_EVENT_NAME, event_time=test.any("Time")
    )
    message_raw = (
        F.when(preset == m.R_TEST_EVENT, test_raw)
        .when(preset == m.R_API_FAILED, raw_struct(bucket=trail.bucket, event_name=trail.event_name))
        .when(preset.isNotNull(), F.lit(None).cast(RAW_SCHEMA))
        .when(env == m.ENV_EVENTBRIDGE, eventbridge_raw(msg))
        .when(env == m.ENV_CLOUDTRAIL, trail.raw)
    )
    return df.withColumns({_PRESET: preset, _ITEMS: items, _MSG_RAW: message_raw})


def explode_records(df: DataFrame) -> DataFrame:
    """One row per item, ``record_index`` its position (every message has at least one item)."""
    return df.select("*", F.posexplode_outer(_ITEMS).alias("record_index", _ITEM)).drop(_ITEMS)


def with_raw_fields(df: DataFrame) -> DataFrame:
    """Add the record's fields before the rules (RAW_SCHEMA): from the S3 record, or the message."""
    env, item = F.col("envelope"), F.col(_ITEM)
    is_record = env.isin(m.ENV_S3, m.ENV_SNS) & F.col(_PRESET).isNull()
    rec_text = F.when(is_record & item.is_object, item.text)
    del_text = F.when((env == m.ENV_CLOUDTRAIL) & item.is_object, item.text)
    df = df.withColumns({_REC: read_object(rec_text, S3_RECORD), _DEL: read_object(del_text, DELETED_OBJECT)})
    deleted = Members(F.col(_DEL), item.text)
    raw = (
        F.when(is_record, F.when(item.is_object, s3_record_raw(Members(F.col(_REC), item.text))))
        .when(
            item.is_object.isNotNull(),  # an element of a CloudTrail DeleteObjects request
            F.col(_MSG_RAW)
            .withField("key", deleted.string("Key"))
            .withField("version_id", deleted.string("VersionId")),
        )
        .otherwise(F.col(_MSG_RAW))
    )
    preset = F.when(is_record & ~item.is_object, m.R_INVALID_RECORD).otherwise(F.col(_PRESET))
    return df.withColumns({_PRESET: preset, _RAW: raw})


def with_normalized_fields(df: DataFrame) -> DataFrame:
    """Add the decoded key and its reject reason, the normalised sequencer and the event kind."""
    raw = F.col(_RAW)
    key, key_reason = _decode_key(raw.key, raw.encoded_key)
    sequencer, bad_sequencer = _normalize_sequencer(raw.has_sequencer, raw.sequencer)
    return df.withColumns(
        {
            _KEY: key,
            _KEY_REASON: F.coalesce(key_reason, _check_key(key)),
            _SEGMENTS: F.split(key, "/", -1),
            "sequencer": sequencer,
            _BAD_SEQ: bad_sequencer,
            _KIND: _event_kind(raw.event_name),
        }
    ).transform(with_event_time)


def with_outcome(df: DataFrame) -> DataFrame:
    """Apply parse._outcome's rules, in their fixed order, to the normalised fields."""
    raw, preset, key, key_reason = F.col(_RAW), F.col(_PRESET), F.col(_KEY), F.col(_KEY_REASON)
    segments, name_re = F.col(_SEGMENTS), java_regex(m.NAME_RE)
    tenant, zone, dataset = F.get(segments, 0), F.get(segments, 1), F.get(segments, 2)
    missing = [
        (F.coalesce(raw.bucket, F.lit("")) == "", m.R_MISSING_BUCKET),
        (F.coalesce(raw.key, F.lit("")) == "", m.R_MISSING_KEY),
        (raw.event_name.isNull(), m.R_MISSING_EVENT_NAME),
    ]
    later = [
        (key_reason.isNotNull(), key_reason),
        (F.col("event_time").isNull(), F.lit(m.R_INVALID_EVENT_TIME)),
        (F.col(_BAD_SEQ), F.lit(m.R_INVALID_SEQUENCER)),
        (F.col(_KIND).isNull(), F.lit(m.R_EVENT_TYPE)),
        (key.endswith("/"), F.lit(m.R_FOLDER_MARKER)),
        (F.coalesce(zone, F.lit("")) != m.RAW_ZONE, F.lit(m.R_NOT_RAW_ZONE)),
        (F.size(segments) < 4, F.lit(m.R_KEY_TOO_SHORT)),
        (~tenant.rlike(name_re), F.lit(m.R_INVALID_TENANT)),
        (~dataset.rlike(name_re), F.lit(m.R_INVALID_DATASET)),
    ]
    reason = F.when(preset.isNotNull(), preset)
    for condition, value in [*missing, *later]:  # one CASE WHEN, in the rules' order
        reason = reason.when(condition, value)
    early = preset.isNotNull() | reduce(lambda a, b: a | b, [c for c, _ in missing])
    key_ok = ~early & key_reason.isNull()
    outcome = F.when(reason.isNull(), F.lit(m.EVENT)).otherwise(
        F.coalesce(lookup(_OUTCOME_BY_REASON, reason), F.lit(m.REJECTED))
    )
    return df.withColumns(
        {
            "outcome": outcome,
            "reason": reason,
            "bucket": raw.bucket,
            "key": F.when(early, raw.key).otherwise(key),
            "tenant": F.when(key_ok, tenant),
            "zone": F.when(key_ok, zone),
            "dataset": F.when(key_ok, dataset),
            "event_kind": F.when(preset.isNull(), F.col(_KIND)),
            "event_name": raw.event_name,
            "version_id": raw.version_id,
            "etag": raw.etag,
            "size": raw.size,
        }
    )


def with_event_id(df: DataFrame) -> DataFrame:
    """Add ``event_id`` to events: sha256 of the identity fields (R3), as parse.event_id."""
    identity = [F.coalesce(F.col(c), F.lit("")) for c in ("bucket", "key", "version_id", "sequencer")]
    fallback = [F.coalesce(F.col(c), F.lit("")) for c in ("event_name", _WHEN, "etag")]
    joined = F.when(F.col("sequencer").isNull(), F.concat_ws(m.ID_SEPARATOR, *identity, *fallback)).otherwise(
        F.concat_ws(m.ID_SEPARATOR, *identity)
    )
    return df.withColumn("event_id", F.when(F.col("outcome") == m.EVENT, F.sha2(joined, 256)))


def _decode_key(key: Column, encoded: Column) -> tuple[Column, Column]:
    """parse.decode_key: (decoded key, or the raw one when undecodable; reject reason)."""
    bad = encoded & key.rlike(m.BAD_PERCENT_RE)
    # CASE WHEN evaluates one branch only: url_decode never sees a malformed '%'.
    decoded = F.when(~encoded | bad, key).otherwise(
        F.url_decode(F.regexp_replace(key, _SURROGATE_LEAD_RE, "%FF"))
    )
    return decoded, F.when(bad, F.lit(m.R_KEY_ENCODING)).when(decoded.contains("\ufffd"), m.R_KEY_UTF8)


def _check_key(key: Column) -> Column:
    """parse.check_key: why a decoded key is unsafe, or null."""
    return (
        F.when(F.octet_length(key) > m.MAX_KEY_BYTES, F.lit(m.R_KEY_TOO_LONG))
        .when(key.rlike(java_regex(m.CONTROL_CHARS_RE)), m.R_KEY_CONTROL)
        .when(key.startswith("/"), m.R_KEY_ABSOLUTE)
        .when(key.rlike(java_regex(TRAVERSAL_RE)), m.R_KEY_TRAVERSAL)
        .when(key.contains("//"), m.R_KEY_EMPTY_SEGMENT)
    )


def _normalize_sequencer(present: Column, value: Column) -> tuple[Column, Column]:
    """parse.normalize_sequencer: (upper-case hex left-padded to 32, or null; invalid?).

    ``present``: the member is there and not JSON null; ``value``: its string (null if not a string).
    """
    absent = ~F.coalesce(present, F.lit(False)) | F.coalesce(value == "", F.lit(False))
    digits = F.regexp_replace(F.upper(value), "^0+", "")
    bad = ~absent & F.coalesce(
        ~value.rlike(java_regex(m.SEQUENCER_RE)) | (F.length(digits) > m.SEQUENCER_WIDTH), F.lit(True)
    )
    return F.when(~absent & ~bad, F.lpad(digits, m.SEQUENCER_WIDTH, "0")), bad


def _event_kind(name: Column) -> Column:
    removed = reduce(lambda a, b: a | b, [name.startswith(p) for p in m.REMOVED_PREFIXES])
    return F.when(name.startswith(m.CREATED_PREFIX), F.lit(m.CREATED)).when(removed, m.REMOVED)


def with_event_time(df: DataFrame) -> DataFrame:
    """parse.parse_event_time: add ``event_time`` (UTC) and its ``%Y-%m-%dT%H:%M:%S.%fZ`` text.

    Computed from the text's own zone, never the session time zone. Offsets are
    any hh:mm under 24 h (as Python's; Spark's own parser stops at 18 h), the
    fraction is cut to microseconds, and year 0 is invalid (Python has no year 0).
    """
    text, pattern = F.col(_RAW).event_time, java_regex(m.EVENT_TIME_RE)  # groups: fraction, zone
    df = df.withColumns(
        {_FRACTION: F.regexp_extract(text, pattern, 1), _ZONE: F.regexp_extract(text, pattern, 2)}
    )
    fraction, zone = F.substring(F.col(_FRACTION), 1, 7), F.col(_ZONE)
    sign = F.when(zone.startswith("-"), F.lit(-1)).otherwise(F.lit(1))
    minutes = F.when(zone == "Z", F.lit(0)).otherwise(
        sign * (F.substring(zone, 2, 2).cast("int") * 60 + F.substring(zone, 5, 2).cast("int"))
    )
    local = F.concat(F.substring(text, 1, 19), fraction, F.lit("Z"))
    valid = (zone != "") & (F.abs(minutes) < 24 * 60) & ~text.startswith("0000")
    instant = F.when(valid, local.cast("timestamp") - F.make_dt_interval(mins=minutes))
    # UTC text: the input's own digits when it is UTC with a four-digit year, else from the instant.
    same = F.concat(
        F.substring(text, 1, 19), F.lit("."), F.rpad(F.substring(fraction, 2, 6), 6, "0"), F.lit("Z")
    )
    as_utc = F.when(instant.isNull(), F.lit(None)).when((minutes == 0) & ~text.startswith("0"), same)
    return df.withColumns({"event_time": instant, _WHEN: as_utc.otherwise(_utc_text(instant))})


def _utc_text(instant: Column) -> Column:
    """``%Y-%m-%dT%H:%M:%S.%fZ`` of a timestamp in UTC, whatever the session time zone."""
    micros = F.unix_micros(instant)
    day = F.date_from_unix_date(F.floor(micros / _DAY_MICROS).cast("int"))
    of_day = F.pmod(micros, F.lit(_DAY_MICROS))

    def two(value: Column) -> Column:
        return F.lpad(value.cast("string"), 2, "0")

    return F.concat(
        F.year(day).cast("string"),  # %Y: not zero-padded, as Python's strftime on Linux
        F.lit("-"),
        two(F.month(day)),
        F.lit("-"),
        two(F.dayofmonth(day)),
        F.lit("T"),
        two(F.floor(of_day / 3_600_000_000)),
        F.lit(":"),
        two(F.floor(of_day / 60_000_000) % 60),
        F.lit(":"),
        two(F.floor(of_day / 1_000_000) % 60),
        F.lit("."),
        F.lpad((of_day % 1_000_000).cast("string"), 6, "0"),
        F.lit("Z"),
    )

"""Spark-native S3 event parsing: SQS message bodies -> one row per S3 record.

Applies the rules of the plain-Python parser :func:`jobs.events.parse.parse_message`
(the specification) to whole DataFrames with built-in functions only, from the
constants in :mod:`jobs.events.model`; ``tests/event_cases.py`` holds the cases
both must get right, and the Spark tests check that the two agree on every field.
A message is read with one ``from_json`` pass (two for SNS), see
:mod:`jobs.events.spark_schema`.
"""

from __future__ import annotations

import re
from functools import reduce
from typing import Final

from pyspark.sql import Column, DataFrame
from pyspark.sql import functions as F

from jobs.events import model as m
from jobs.events import spark_schema as js  # JSON schemas and reading
from jobs.events.model import FIELDS
from jobs.events.spark_schema import PARSED_SCHEMA

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
_IGNORED: Final = (m.R_SNS_CONTROL, m.R_API_FAILED, m.R_EVENT_TYPE, m.R_FOLDER_MARKER, m.R_NOT_RAW_ZONE)
_OUTCOME_BY_REASON: Final = {m.R_TEST_EVENT: m.TEST, **dict.fromkeys(_IGNORED, m.IGNORED)}  # else rejected
_DAY_MICROS: Final = 86_400_000_000
_UTC_RANGE: Final = (-62_135_596_800_000_000, 253_402_300_799_999_999)  # 0001-01-01 .. 9999-12-31, in µs

# Working columns, dropped by parse_events' final select.
_BODY, _MSG, _DOC_TEXT, _DOC, _PRESET, _HAS_RECORDS = (f"_ev_{n}" for n in ("b", "m", "t", "d", "p", "h"))
_RECORDS, _OBJECTS, _ITEMS, _ITEM, _MSG_RAW, _REC = (f"_ev_{n}" for n in ("rs", "os", "is", "i", "mr", "r"))
_DEL, _RAW, _KEY, _KEY_REASON, _SEGMENTS = (f"_ev_{n}" for n in ("del", "raw", "key", "why", "seg"))
_BAD_SEQ, _KIND, _FRACTION, _ZONE, _WHEN = (f"_ev_{n}" for n in ("bad", "kind", "frac", "zone", "when"))


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
    if df.sparkSession.conf.get(js.PARTIAL_RESULTS_CONF) != "true":
        raise ValueError(f"parse_events needs {js.PARTIAL_RESULTS_CONF}=true (the Spark 3.5 default)")
    return (
        df.withColumn(_BODY, F.col(body_col))
        .transform(with_envelope)
        .transform(with_document)
        .transform(with_record_items)
        .transform(explode_records)
        .transform(with_raw_fields)
        .transform(with_normalized_fields)
        .transform(with_event_time)
        .transform(with_outcome)
        .transform(with_event_id)
        .select(*passthrough, *[F.col(f.name).cast(f.dataType).alias(f.name) for f in PARSED_SCHEMA.fields])
    )


def with_envelope(df: DataFrame) -> DataFrame:
    """Add ``envelope`` (parse_message's order of checks), early reasons and the text holding records."""
    df = df.withColumn(_MSG, js.read_document(F.col(_BODY), js.MESSAGE))
    body, msg = F.col(_BODY), js.Members(F.col(_MSG), F.col(_BODY))
    kind = F.when(msg.any("detail-type") == m.EB_CLOUDTRAIL, m.ENV_CLOUDTRAIL).otherwise(m.ENV_EVENTBRIDGE)
    envelope = (
        F.when(msg.value.isNull(), F.lit(m.ENV_UNKNOWN))
        .when(js.is_present(body, ["Records"], msg.any("Records")), m.ENV_S3)
        .when(msg.any("Event") == TEST_EVENT_NAME, m.ENV_TEST)
        .when(msg.any("Type").isin(*SNS_TYPES), m.ENV_SNS)
        .when(msg.any("source") == S3_SOURCE, kind)
        .otherwise(m.ENV_UNKNOWN)
    )
    notification = (envelope == m.ENV_SNS) & (msg.any("Type") == SNS_NOTIFICATION)
    preset = (
        F.when(msg.value.isNull(), F.lit(m.R_INVALID_JSON))
        .when(envelope == m.ENV_UNKNOWN, m.R_UNKNOWN_ENVELOPE)
        .when((envelope == m.ENV_SNS) & ~notification, m.R_SNS_CONTROL)
    )
    text = F.when(envelope.isin(m.ENV_S3, m.ENV_TEST), body).when(notification, msg.string("Message"))
    return df.withColumns({"envelope": envelope, _PRESET: preset, _DOC_TEXT: text})


def with_document(df: DataFrame) -> DataFrame:
    """Add the document holding Records or the test event (the message, or an SNS message read as JSON).

    And as items (ITEM_SCHEMA): its Records, a CloudTrail DeleteObjects request's objects.
    """
    env = F.col("envelope")
    inner = js.read_document(F.col(_DOC_TEXT), js.MESSAGE)
    df = df.withColumn(_DOC, F.when(env == m.ENV_S3, F.col(_MSG)).otherwise(inner))
    doc, trail = (
        js.Members(F.col(_DOC), F.col(_DOC_TEXT)),
        js.CloudTrail.of(js.Members(F.col(_MSG), F.col(_BODY))),
    )
    return df.withColumns(
        {
            _HAS_RECORDS: js.is_present(doc.source, ["Records"], doc.any("Records")),
            _RECORDS: F.when(
                env.isin(m.ENV_S3, m.ENV_SNS), js.record_items(doc, "Records", js.s3_record_raw)
            ),
            _OBJECTS: F.when(env == m.ENV_CLOUDTRAIL, trail.objects),
        }
    )


def _is_empty(array: Column) -> Column:
    return F.coalesce(F.size(array), F.lit(-1)) < 1


def with_record_items(df: DataFrame) -> DataFrame:
    """Add message-level reasons, the items to explode (a placeholder when none) and message fields."""
    env, preset, records, objects = F.col("envelope"), F.col(_PRESET), F.col(_RECORDS), F.col(_OBJECTS)
    doc, msg = js.Members(F.col(_DOC), F.col(_DOC_TEXT)), js.Members(F.col(_MSG), F.col(_BODY))
    trail, test = js.CloudTrail.of(msg), js.Members(js.read_object(doc.source, js.TEST_EVENT), doc.source)
    in_document = (
        F.when(F.col(_HAS_RECORDS), F.when(_is_empty(records), m.R_NO_RECORDS))
        .when(doc.any("Event") == TEST_EVENT_NAME, m.R_TEST_EVENT)
        .otherwise(m.R_SNS_NOT_S3)
    )
    in_trail = F.when(trail.failed, m.R_API_FAILED).when(
        trail.delete_objects & _is_empty(objects), m.R_NO_RECORDS
    )
    preset = (
        F.when(preset.isNotNull(), preset)
        .when(env.isin(m.ENV_S3, m.ENV_SNS, m.ENV_TEST), in_document)
        .when(env == m.ENV_CLOUDTRAIL, in_trail)
    )
    placeholder = F.array(F.lit(None).cast(js.ITEM_SCHEMA))
    items = (
        F.when(preset.isNotNull(), placeholder)
        .when(env.isin(m.ENV_S3, m.ENV_SNS), records)
        .when((env == m.ENV_CLOUDTRAIL) & trail.delete_objects, objects)
        .otherwise(placeholder)
    )
    test_raw = js.raw_struct(
        bucket=test.string("Bucket"), event_name=TEST_EVENT_NAME, event_time=test.any("Time")
    )
    message_raw = (
        F.when(preset == m.R_TEST_EVENT, test_raw)
        .when(preset == m.R_API_FAILED, js.raw_struct(bucket=trail.bucket, event_name=trail.event_name))
        .when(preset.isNotNull(), F.lit(None).cast(js.RAW_SCHEMA))
        .when(env == m.ENV_EVENTBRIDGE, js.eventbridge_raw(msg))
        .when(env == m.ENV_CLOUDTRAIL, trail.raw)
    )
    return df.withColumns({_PRESET: preset, _ITEMS: items, _MSG_RAW: message_raw})


def explode_records(df: DataFrame) -> DataFrame:
    """One row per item, ``record_index`` its position (every message has at least one item)."""
    return df.select("*", F.posexplode_outer(_ITEMS).alias("record_index", _ITEM)).drop(_ITEMS)


def with_raw_fields(df: DataFrame) -> DataFrame:
    """Add the record's fields before the rules (RAW_SCHEMA): from its item, or from the message."""
    env, item, message_raw = F.col("envelope"), F.col(_ITEM), F.col(_MSG_RAW)
    is_record = env.isin(m.ENV_S3, m.ENV_SNS) & F.col(_PRESET).isNull()
    # An element of an array that mixes objects and other values is read here, from its text.
    unread = F.when(item.is_object & item.raw.isNull(), item.text)
    df = df.withColumns(
        {_REC: js.read_object(unread, js.S3_RECORD), _DEL: js.read_object(unread, js.DELETED_OBJECT)}
    )
    record = F.coalesce(item.raw, js.s3_record_raw(js.Members(F.col(_REC), item.text)))
    deleted = F.coalesce(item.raw, js.deleted_raw(js.Members(F.col(_DEL), item.text)))
    raw = (
        F.when(is_record, F.when(item.is_object, record))
        .when(
            item.is_object.isNotNull(),  # an element of a CloudTrail DeleteObjects request
            message_raw.withField("key", deleted.key).withField("version_id", deleted.version_id),
        )
        .otherwise(message_raw)
    )
    preset = F.when(is_record & ~item.is_object, m.R_INVALID_RECORD).otherwise(F.col(_PRESET))
    return df.withColumns({_PRESET: preset, _RAW: raw})


def with_normalized_fields(df: DataFrame) -> DataFrame:
    """Add the decoded key and why it is unsafe, the normalised sequencer and the event kind."""
    raw = F.col(_RAW)
    key, key_reason = _decode_key(raw.key, raw.encoded_key)
    sequencer, bad_sequencer = _normalize_sequencer(raw.has_sequencer, raw.sequencer)
    removed = reduce(lambda a, b: a | b, [raw.event_name.startswith(p) for p in m.REMOVED_PREFIXES])
    kind = F.when(raw.event_name.startswith(m.CREATED_PREFIX), F.lit(m.CREATED)).when(removed, m.REMOVED)
    return df.withColumns(
        {
            _KEY: key,
            _KEY_REASON: F.coalesce(key_reason, _check_key(key)),
            _SEGMENTS: F.split(key, "/", -1),
            "sequencer": sequencer,
            _BAD_SEQ: bad_sequencer,
            _KIND: kind,
        }
    )


def with_outcome(df: DataFrame) -> DataFrame:
    """Apply parse._outcome's rules, in their fixed order, to the normalised fields."""
    raw, preset, key, key_reason = F.col(_RAW), F.col(_PRESET), F.col(_KEY), F.col(_KEY_REASON)
    segments, name_re = F.col(_SEGMENTS), java_regex(m.NAME_RE)
    tenant, zone, dataset = F.get(segments, 0), F.get(segments, 1), F.get(segments, 2)
    missing = [
        (F.coalesce(raw.bucket, F.lit("")) == "", m.R_MISSING_BUCKET),
        (~raw.bucket.rlike(java_regex(m.BUCKET_RE)), m.R_INVALID_BUCKET),
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
        F.coalesce(js.lookup(_OUTCOME_BY_REASON, reason), F.lit(m.REJECTED))
    )
    fields = {name: raw[name] for name in ("bucket", "event_name", "version_id", "etag", "size")}
    return df.withColumns(
        {
            "outcome": outcome,
            "reason": reason,
            "key": F.when(early, raw.key).otherwise(key),
            "tenant": F.when(key_ok, tenant),
            "zone": F.when(key_ok, zone),
            "dataset": F.when(key_ok, dataset),
            "event_kind": F.when(preset.isNull(), F.col(_KIND)),
            **fields,
        }
    )


def with_event_id(df: DataFrame) -> DataFrame:
    """Add ``event_id`` to events: sha256 of the identity fields (R3), as parse.event_id."""
    identity = [F.coalesce(F.col(c), F.lit("")) for c in ("bucket", "key", "version_id", "sequencer")]
    fallback = [F.coalesce(F.col(c), F.lit("")) for c in ("event_name", _WHEN, "etag")]
    joined = F.when(F.col("sequencer").isNull(), F.concat_ws(m.ID_SEPARATOR, *identity, *fallback))
    joined = joined.otherwise(F.concat_ws(m.ID_SEPARATOR, *identity))
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
    too_long = F.length(digits) > m.SEQUENCER_WIDTH
    bad = ~absent & F.coalesce(~value.rlike(java_regex(m.SEQUENCER_RE)) | too_long, F.lit(True))
    return F.when(~absent & ~bad, F.lpad(digits, m.SEQUENCER_WIDTH, "0")), bad


def with_event_time(df: DataFrame) -> DataFrame:
    """parse.parse_event_time: add ``event_time`` (UTC) and its ``%Y-%m-%dT%H:%M:%S.%fZ`` text.

    From the text's own zone, never the session time zone. Offsets are any hh:mm
    under 24 h (as Python's; Spark's own parser stops at 18 h), the fraction is
    cut to microseconds, and year 0 is invalid (Python has no year 0).
    """
    text, pattern = F.col(_RAW).event_time, java_regex(m.EVENT_TIME_RE)  # groups: fraction, zone
    df = df.withColumns(
        {_FRACTION: F.regexp_extract(text, pattern, 1), _ZONE: F.regexp_extract(text, pattern, 2)}
    )
    fraction, zone = F.substring(F.col(_FRACTION), 1, 7), F.col(_ZONE)
    hh_mm = F.substring(zone, 2, 2).cast("int") * 60 + F.substring(zone, 5, 2).cast("int")
    minutes = (
        F.when(zone == "Z", F.lit(0)).when(zone.startswith("-"), -hh_mm).when(zone.startswith("+"), hh_mm)
    )
    local = F.try_to_timestamp(
        F.concat(F.substring(text, 1, 19), fraction, F.lit("Z"))
    )  # null if no such day
    valid = (F.abs(minutes) < 24 * 60) & ~text.startswith("0000")
    shifted = local - F.make_dt_interval(mins=minutes)
    # In UTC still within years 1-9999 (Python's datetime cannot go further).
    instant = F.when(valid & F.unix_micros(shifted).between(*_UTC_RANGE), shifted)
    # The UTC text: the input's own digits when it is UTC with a four-digit year.
    same = F.concat(
        F.substring(text, 1, 19), F.lit("."), F.rpad(F.substring(fraction, 2, 6), 6, "0"), F.lit("Z")
    )
    as_utc = F.when(instant.isNull(), F.lit(None)).when((minutes == 0) & ~text.startswith("0"), same)
    return df.withColumns({"event_time": instant, _WHEN: as_utc.otherwise(_utc_text(instant))})


def _utc_text(instant: Column) -> Column:
    """``%Y-%m-%dT%H:%M:%S.%fZ`` of a timestamp in UTC, whatever the session time zone.

    The year is not zero-padded, as with Python's strftime on Linux.
    """
    micros = F.unix_micros(instant)
    day, of_day = (
        F.date_from_unix_date(F.floor(micros / _DAY_MICROS).cast("int")),
        F.pmod(micros, F.lit(_DAY_MICROS)),
    )
    ymd = [F.year(day), F.month(day), F.dayofmonth(day)]
    hms = [
        F.floor(of_day / 3_600_000_000),
        F.floor(of_day / 60_000_000) % 60,
        F.floor(of_day / 1_000_000) % 60,
    ]
    return F.format_string("%d-%02d-%02dT%02d:%02d:%02d.%06dZ", *ymd, *hms, of_day % 1_000_000)


def with_foreign_buckets_rejected(df: DataFrame, bucket: str) -> DataFrame:
    """Reject the events of any bucket but the tenant group's own (``foreign_bucket``).

    A group's queue carries its bucket's notifications only; an event naming another
    bucket (a misrouted subscription, a hand-made message) can never be applied here,
    and reading it would fail the batch on every restart. It is kept and counted like
    any other rejected record, with the message that carried it.

    Args:
        df: Output of :func:`parse_events`.
        bucket: The tenant group's bucket.

    Returns:
        ``df`` with those events' ``outcome`` and ``reason`` replaced.
    """
    foreign = (F.col("outcome") == m.EVENT) & (F.col("bucket") != F.lit(bucket))
    return df.withColumns(
        {
            "outcome": F.when(foreign, F.lit(m.REJECTED)).otherwise(F.col("outcome")),
            "reason": F.when(foreign, F.lit(m.R_FOREIGN_BUCKET)).otherwise(F.col("reason")),
        }
    )

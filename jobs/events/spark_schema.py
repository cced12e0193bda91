"""Schemas and typed JSON reading for the Spark event parser (:mod:`jobs.events.spark`).

``from_json`` with a schema built from a :data:`Layout` reads a whole message in
one pass. With ``spark.sql.json.enablePartialResults`` (on by default in Spark
3.5) a member of the wrong type becomes null and its siblings survive, which is
Python's ``_get`` semantics for objects and integers. Three gaps remain and are
closed here: ``from_json`` accepts text after the value (:func:`read_document`
wraps it with a sentinel), a string field yields the JSON text of a number,
object or array (:func:`json_string` probes suspicious values), and one
non-object element nulls a whole array of structs (arrays are read as element
texts, see :func:`object_items`).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Mapping, Sequence
from functools import reduce
from typing import Final, Literal, Union

from pyspark.sql import Column
from pyspark.sql import functions as F
from pyspark.sql.types import (
    ArrayType,
    BooleanType,
    DataType,
    DoubleType,
    IntegerType,
    LongType,
    StringType,
    StructField,
    StructType,
    TimestampType,
)

from jobs.events import model as m
from jobs.events.model import FIELDS

# json.loads rejects single quotes; Spark's other defaults already match it
# (no comments, no unquoted names or control characters, no leading zeros).
JSON_OPTIONS: Final = {"allowSingleQuotes": "false"}
PARTIAL_RESULTS_CONF: Final = "spark.sql.json.enablePartialResults"

_TYPES: Final[Mapping[str, DataType]] = {
    "record_index": IntegerType(),
    "event_time": TimestampType(),
    "size": LongType(),
}
PARSED_SCHEMA: Final = StructType([StructField(name, _TYPES.get(name, StringType())) for name in FIELDS])
"""The ParsedRecord fields, in FIELDS order, as Spark types (event_time is UTC)."""

# One record's fields before the rules run (cf. parse._Raw).
RAW_SCHEMA: Final = StructType(
    [
        StructField("bucket", StringType()),
        StructField("key", StringType()),
        StructField("event_name", StringType()),
        StructField("event_time", StringType()),
        StructField("has_sequencer", BooleanType()),
        StructField("sequencer", StringType()),
        StructField("version_id", StringType()),
        StructField("etag", StringType()),
        StructField("size", LongType()),
        StructField("encoded_key", BooleanType()),
    ]
)
# An element of a JSON array of records: its text and whether it is a JSON object.
ITEM_SCHEMA: Final = StructType([StructField("text", StringType()), StructField("is_object", BooleanType())])

Kind = Literal["any", "string", "long"]
Layout = Mapping[str, Union[Kind, "Layout", list["Layout"]]]
"""Members to read: ``any`` (JSON text of any type), ``string`` (null unless a JSON
string), ``long`` (null unless a JSON integer), a nested layout (an object), or
``[layout]`` (an array of objects, read as element texts)."""

_SENTINEL: Final = "__silverline_sentinel__"
_EMPTY_OBJECT: Final = StructType([])
# Text that from_json gives a non-string value: object, array, boolean, number
# (NaN and infinities come back quoted). Any other text can only be a string.
_MAYBE_NOT_STRING: Final = r'^(\{|\[|true\z|false\z|-?[0-9][0-9.E+-]*\z|"(NaN|-?Infinity)"\z)'


def typed_schema(layout: Layout) -> StructType:
    """The from_json schema that reads a layout's members."""

    def of(kind: Kind | Layout | list[Layout]) -> DataType:
        if isinstance(kind, list):
            return ArrayType(StringType())
        if isinstance(kind, Mapping):
            return typed_schema(kind)
        return LongType() if kind == "long" else StringType()

    return StructType([StructField(name, of(kind)) for name, kind in layout.items()])


def read_document(text: Column, layout: Layout) -> Column:
    """Read a message body: the layout's members, or null unless ``text`` is one JSON object.

    ``from_json`` ignores text after the first value, so the text is parsed as the
    first element of an array whose second element carries the text's own
    SHA-256: trailing text shows as a missing, different or extra element.

    Args:
        text: A string column (may be null, empty or not JSON).
        layout: The members to read.

    Returns:
        A struct column (``typed_schema(layout)`` plus a sentinel member), null
        when ``json.loads`` would fail or return something other than an object.
    """
    sentinel = F.sha2(text, 256)
    schema = typed_schema(layout).add(_SENTINEL, StringType())
    wrapped = F.concat(F.lit("["), text, F.lit(f',{{"{_SENTINEL}":"'), sentinel, F.lit('"}]'))
    both = F.from_json(wrapped, ArrayType(schema), JSON_OPTIONS)
    single = (F.size(both) == 2) & (F.get(both, 1)[_SENTINEL] == sentinel)
    return F.when(single, F.get(both, 0))  # (its sentinel member is null)


def read_object(text: Column, layout: Layout) -> Column:
    """Read the layout's members from the text of a JSON object (null text: null)."""
    return F.from_json(text, typed_schema(layout), JSON_OPTIONS)


def at(value: Column, path: Sequence[str]) -> Column:
    """The nested field ``path`` of a struct column."""
    return reduce(lambda col, name: col[name], path, value)


def _probe(source: Column, path: Sequence[str], leaf: DataType) -> Column:
    """Member ``path`` of ``source`` read once more, as ``leaf`` (null when it is not one)."""
    schema = StructType([StructField(path[-1], leaf)])
    for name in reversed(path[:-1]):
        schema = StructType([StructField(name, schema)])
    return at(F.from_json(source, schema, JSON_OPTIONS), path)


def json_string(source: Column, path: Sequence[str], value: Column) -> Column:
    """``value`` (a member read as StringType) when it is a JSON string, else null (Python ``_str``).

    Only a value that looks like a number, boolean, object or array is checked,
    by reading ``path`` of ``source`` once more as that type.

    Args:
        source: The JSON text ``value`` was read from.
        path: The member's path in ``source``.
        value: The member's text.

    Returns:
        A string column.
    """

    def parses_as(leaf: DataType) -> Column:
        return _probe(source, path, leaf).isNotNull()

    not_string = (
        F.when(value.startswith("{"), parses_as(_EMPTY_OBJECT))
        .when(value.startswith("["), parses_as(ArrayType(StringType())))
        .when(value.isin("true", "false"), parses_as(BooleanType()))
        .otherwise(parses_as(DoubleType()))
    )
    return F.when(value.isNull() | ~value.rlike(_MAYBE_NOT_STRING), value).when(~not_string, value)


def is_present(source: Column, path: Sequence[str], value: Column) -> Column:
    """Whether member ``path`` of ``source`` is there and not JSON null (``value``: its typed read)."""
    return F.when(value.isNotNull(), F.lit(True)).otherwise(_probe(source, path, StringType()).isNotNull())


def object_items(source: Column, path: Sequence[str], elements: Column) -> Column:
    """The elements of a JSON array as ``array<ITEM_SCHEMA>`` (null when not an array).

    Known gap: in an array that mixes objects with other values, an element that
    is a JSON *string* holding an object's text counts as an object.

    Args:
        source: The JSON text the array was read from.
        path: The array's path in ``source``.
        elements: The array read as ``array<string>``.

    Returns:
        An array column.
    """
    all_objects = _probe(source, path, ArrayType(_EMPTY_OBJECT)).isNotNull()

    def item(element: Column, is_object: Column) -> Column:
        return F.struct(element.alias("text"), F.coalesce(is_object, F.lit(False)).alias("is_object"))

    return F.when(all_objects, F.transform(elements, lambda e: item(e, e.isNotNull()))).otherwise(
        F.transform(elements, lambda e: item(e, F.from_json(e, _EMPTY_OBJECT, JSON_OPTIONS).isNotNull()))
    )


def raw_struct(**fields: Column | str | bool | None) -> Column:
    """Build a RAW_SCHEMA struct; missing fields are null.

    Args:
        **fields: Values by RAW_SCHEMA field name (columns or literals).

    Returns:
        The struct column.
    """
    unknown = set(fields) - set(RAW_SCHEMA.fieldNames())
    if unknown:
        raise ValueError(f"not RAW_SCHEMA fields: {sorted(unknown)}")
    return F.struct(*[F.lit(fields.get(f.name)).cast(f.dataType).alias(f.name) for f in RAW_SCHEMA.fields])


def lookup(mapping: Mapping[str, str], key: Column) -> Column:
    """The value of ``key`` in a constant mapping (null when absent)."""
    return F.try_element_at(F.create_map(*[F.lit(x) for pair in mapping.items() for x in pair]), key)


@dataclasses.dataclass(frozen=True)
class Members:
    """The typed members of one JSON object and the text they were read from."""

    value: Column  # a struct from read_document / read_object
    source: Column  # its JSON text, for json_string / is_present checks

    def any(self, *path: str) -> Column:
        """A member as read (JSON text of any type, a long, a struct or element texts)."""
        return at(self.value, path)

    def string(self, *path: str) -> Column:
        """A member that must be a JSON string (Python ``_str``)."""
        return json_string(self.source, path, at(self.value, path))


# ---- where each envelope keeps its fields (parse._s3_records, _eventbridge, _cloudtrail) ------------
DELETE_OBJECTS: Final = "DeleteObjects"
S3_RECORD: Final[Layout] = {
    "eventName": "string",
    "eventTime": "any",
    "s3": {
        "bucket": {"name": "string"},
        "object": {
            "key": "string",
            "sequencer": "string",
            "versionId": "string",
            "eTag": "string",
            "size": "long",
        },
    },
}
DELETED_OBJECT: Final[Layout] = {"Key": "string", "VersionId": "string"}
TEST_EVENT: Final[Layout] = {"Bucket": "string", "Time": "any"}
_DETAIL: Final[Layout] = {
    # EventBridge "Object Created" / "Object Deleted"
    "reason": "string",
    "deletion-type": "string",
    "bucket": {"name": "string"},
    "object": {
        "key": "string",
        "sequencer": "string",
        "version-id": "string",
        "etag": "string",
        "size": "long",
    },
    # CloudTrail "AWS API Call via CloudTrail"
    "eventName": "string",
    "eventTime": "any",
    "errorCode": "any",
    "requestParameters": {"bucketName": "string", "key": "string", "delete": {"Object": [DELETED_OBJECT]}},
    "responseElements": {"x-amz-version-id": "string"},
    "additionalEventData": {"bytesTransferredIn": "long"},
}
# Also the document an SNS notification carries in "Message". Test events' "Bucket" and
# "Time" are read apart: Spark resolves field names case-insensitively ("time").
MESSAGE: Final[Layout] = {
    "Records": [S3_RECORD],
    "Event": "any",
    "Type": "any",
    "Message": "string",
    "source": "any",
    "detail-type": "string",
    "time": "any",
    "detail": _DETAIL,
}


def s3_record_raw(rec: Members) -> Column:
    """RAW_SCHEMA fields of an S3 notification record (read as S3_RECORD)."""
    obj = ("s3", "object")
    return raw_struct(
        bucket=rec.string("s3", "bucket", "name"),
        key=rec.string(*obj, "key"),
        event_name=rec.string("eventName"),
        event_time=rec.any("eventTime"),
        has_sequencer=rec.any(*obj, "sequencer").isNotNull(),
        sequencer=rec.string(*obj, "sequencer"),
        version_id=rec.string(*obj, "versionId"),
        etag=rec.string(*obj, "eTag"),
        size=rec.any(*obj, "size"),
        encoded_key=True,
    )


def eventbridge_raw(msg: Members) -> Column:
    """RAW_SCHEMA fields of an EventBridge S3 event (read as MESSAGE)."""
    obj = ("detail", "object")
    kind, reason = msg.any("detail-type"), F.coalesce(msg.string("detail", "reason"), F.lit(""))
    pair = F.concat(reason, F.lit("|"), F.coalesce(msg.string("detail", "deletion-type"), F.lit("")))
    name = (
        F.when(
            kind == m.EB_OBJECT_CREATED,
            F.coalesce(lookup(m.EB_CREATED_REASONS, reason), F.concat(F.lit(m.CREATED_PREFIX), reason)),
        )
        .when(
            kind == m.EB_OBJECT_DELETED,
            F.coalesce(lookup(m.EB_DELETED_NAMES, pair), F.lit(m.EB_DELETED_DEFAULT)),
        )
        .otherwise(msg.string("detail-type"))
    )
    return raw_struct(
        bucket=msg.string("detail", "bucket", "name"),
        key=msg.string(*obj, "key"),
        event_name=name,
        event_time=msg.any("time"),
        has_sequencer=msg.any(*obj, "sequencer").isNotNull(),
        sequencer=msg.string(*obj, "sequencer"),
        version_id=msg.string(*obj, "version-id"),
        etag=msg.string(*obj, "etag"),
        size=msg.any(*obj, "size"),
        encoded_key=False,
    )


@dataclasses.dataclass(frozen=True)
class CloudTrail:
    """What parse._cloudtrail reads from a CloudTrail event (read as MESSAGE)."""

    failed: Column  # the API call failed (errorCode present)
    delete_objects: Column  # a DeleteObjects call: one record per element of ``objects``
    objects: Column  # array<ITEM_SCHEMA>
    bucket: Column
    event_name: Column
    raw: Column  # RAW_SCHEMA of a single-object call (key and version come from ``objects`` otherwise)

    @classmethod
    def of(cls, msg: Members) -> CloudTrail:
        """Read the fields of a CloudTrail event."""
        detail, params = ("detail",), ("detail", "requestParameters")
        api = msg.string(*detail, "eventName")
        name = F.coalesce(lookup(m.CLOUDTRAIL_NAMES, F.coalesce(api, F.lit(""))), api)
        single = F.coalesce(api != DELETE_OBJECTS, F.lit(True))
        objects = (*params, "delete", "Object")
        raw = raw_struct(
            bucket=msg.string(*params, "bucketName"),
            key=F.when(single, msg.string(*params, "key")),
            event_name=name,
            event_time=msg.any(*detail, "eventTime"),
            has_sequencer=False,
            version_id=F.when(single, msg.string(*detail, "responseElements", "x-amz-version-id")),
            size=F.when(single, msg.any(*detail, "additionalEventData", "bytesTransferredIn")),
            encoded_key=False,
        )
        return cls(
            failed=msg.any(*detail, "errorCode").isNotNull(),
            delete_objects=~single,
            objects=object_items(msg.source, objects, msg.any(*objects)),
            bucket=msg.string(*params, "bucketName"),
            event_name=name,
            raw=raw,
        )

"""Schemas and typed JSON reading for the Spark event parser (:mod:`jobs.events.spark`).

``from_json`` with a schema built from a :data:`Layout` reads a whole message in
one pass. With ``spark.sql.json.enablePartialResults`` (on by default in Spark
3.5) a member of the wrong type becomes null and its siblings survive: Python's
``_get`` semantics for objects and integers. The gaps that remain are closed
here: ``from_json`` accepts text after the value, and partial results pass over
syntax errors inside a member (:func:`is_json_object` checks the text first); a
string field yields the JSON text of a number, object or array (:func:`json_string`
reads suspicious values once more as those types); one non-object element nulls
a whole array of objects (:func:`record_items` then reads the elements one by one).
"""

from __future__ import annotations

import dataclasses
from collections.abc import Callable, Mapping, Sequence
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


def _struct(names: Sequence[str] | str, types: Mapping[str, DataType]) -> StructType:
    """Fields ``names`` (or space-separated names), strings unless ``types`` says otherwise."""
    names = names.split() if isinstance(names, str) else names
    return StructType([StructField(name, types.get(name, StringType())) for name in names])


PARSED_SCHEMA: Final = _struct(
    FIELDS, {"record_index": IntegerType(), "event_time": TimestampType(), "size": LongType()}
)
"""The ParsedRecord fields, in FIELDS order, as Spark types (event_time is UTC)."""
# One record's fields before the rules run (cf. parse._Raw).
RAW_SCHEMA: Final = _struct(
    "bucket key event_name event_time has_sequencer sequencer version_id etag size encoded_key",
    {"has_sequencer": BooleanType(), "size": LongType(), "encoded_key": BooleanType()},
)
# An element of an array of records: whether it is an object and its RAW_SCHEMA fields,
# or (when the array mixes objects and other values) its text, to be read after the explode.
ITEM_SCHEMA: Final = _struct("is_object raw text", {"is_object": BooleanType(), "raw": RAW_SCHEMA})

Kind = Literal["any", "string", "long"]
Layout = Mapping[str, Union[Kind, "Layout", list["Layout"]]]
"""Members to read: ``any`` (JSON text of any type), ``string`` (null unless a JSON
string), ``long`` (null unless a JSON integer), a layout (an object) or ``[layout]``
(an array of objects)."""
Path = Sequence[str | Column]
"""Member names and (Column) array indexes."""

_SENTINEL: Final = "__silverline_sentinel__"
_EMPTY_OBJECT: Final = StructType([])
_OBJECT: Final = "map<string,string>"  # from_json gives null for any text but an object's
# Text that from_json gives a non-string value: object, array, boolean, number
# (NaN and infinities come back quoted). Any other text can only be a string.
_MAYBE_NOT_STRING: Final = r'^(\{|\[|true\z|false\z|-?[0-9][0-9.E+-]*\z|"(NaN|-?Infinity)"\z)'


def typed_schema(layout: Layout) -> StructType:
    """The from_json schema that reads a layout's members."""

    def of(kind: Kind | Layout | list[Layout]) -> DataType:
        if isinstance(kind, list):
            return ArrayType(typed_schema(kind[0]))
        if isinstance(kind, Mapping):
            return typed_schema(kind)
        return LongType() if kind == "long" else StringType()

    return StructType([StructField(name, of(kind)) for name, kind in layout.items()])


def is_json_object(text: Column) -> Column:
    """Whether ``text`` is exactly one JSON object, as ``json.loads`` reads it (non-null boolean).

    The text is read as the first element of an array whose second element holds
    the text's own SHA-256: text after the object shows as a missing, different or
    extra element (``from_json`` ignores text after a value). The object's members
    are only skipped, and skipping fails on any syntax error, which nulls the whole
    array (reading a member with partial results would pass over such an error).
    """
    sentinel = F.sha2(text, 256)
    wrapped = F.concat(F.lit("["), text, F.lit(f',{{"{_SENTINEL}":"'), sentinel, F.lit('"}]'))
    both = F.from_json(wrapped, ArrayType(_struct(_SENTINEL, {})), JSON_OPTIONS)
    single = (F.size(both) == 2) & (F.get(both, 1)[_SENTINEL] == sentinel) & F.get(both, 0).isNotNull()
    return F.coalesce(single, F.lit(False))


def read_document(text: Column, layout: Layout) -> Column:
    """The layout's members of a message body, null unless ``json.loads`` would give an object."""
    return F.when(is_json_object(text), F.from_json(text, typed_schema(layout), JSON_OPTIONS))


def read_object(text: Column, layout: Layout) -> Column:
    """Read the layout's members from the text of a JSON object (null text: null)."""
    return F.from_json(text, typed_schema(layout), JSON_OPTIONS)


def at(value: Column, path: Path) -> Column:
    """The nested member ``path`` of a struct column."""
    return reduce(lambda col, step: F.get(col, step) if isinstance(step, Column) else col[step], path, value)


def _probe(source: Column, path: Path, leaf: DataType) -> Column:
    """Member ``path`` of ``source`` read once more, as ``leaf`` (null when it is not one)."""
    schema = leaf
    for step in reversed(path):
        schema = ArrayType(schema) if isinstance(step, Column) else StructType([StructField(step, schema)])
    assert isinstance(schema, StructType), "a path starts with a member name"
    return at(F.from_json(source, schema, JSON_OPTIONS), path)


def json_string(source: Column, path: Path, value: Column) -> Column:
    """``value`` (a member read as a string) if it is a JSON string, else null (Python ``_str``).

    Only a value that looks like a number, boolean, object or array is checked,
    by reading ``path`` of ``source`` once more as that type.
    """

    def parses_as(leaf: DataType) -> Column:
        return _probe(source, path, leaf).isNotNull()

    not_string = (
        F.when(value.startswith("{"), parses_as(_EMPTY_OBJECT))
        .when(value.startswith("["), parses_as(ArrayType(StringType())))
        .when(value.isin("true", "false"), parses_as(BooleanType()))
        .otherwise(parses_as(DoubleType()))
    )
    suspicious = value.rlike(_MAYBE_NOT_STRING) & _may_hold(source, path, '"')
    return F.when(value.isNull() | ~suspicious, value).when(~not_string, value)


def is_present(source: Column, path: Path, value: Column) -> Column:
    """Whether member ``path`` of ``source`` is there and not JSON null (``value``: its typed read)."""
    present = _may_hold(source, path, "n") & _probe(source, path, StringType()).isNotNull()
    return F.when(value.isNotNull(), F.lit(True)).otherwise(present)


def _may_hold(source: Column, path: Path, not_first: str) -> Column:
    r"""False when ``source`` surely has no member ``path`` whose value starts with none of ``not_first``.

    A cheap look at the text that spares most second readings: such a member shows
    as its quoted name, a colon and the value, unless the text has ``\u`` escapes.
    """
    name = next(step for step in reversed(path) if isinstance(step, str))
    pattern = rf'"\Q{name}\E"[ \t\n\r]*:[ \t\n\r]*[^{not_first} \t\n\r]'
    return source.rlike(pattern) | source.contains("\\u")


@dataclasses.dataclass(frozen=True)
class Members:
    """The typed members of one JSON object, and where in which text it was read."""

    value: Column  # a struct from read_document / read_object
    source: Column  # the JSON text, for json_string checks
    prefix: tuple[str | Column, ...] = ()  # the object's path in ``source``

    def any(self, *path: str) -> Column:
        """A member as read (JSON text of any type, a long, a struct or an array)."""
        return at(self.value, path)

    def string(self, *path: str) -> Column:
        """A member that must be a JSON string (Python ``_str``)."""
        return json_string(self.source, (*self.prefix, *path), at(self.value, path))


def _all_strings(source: Column, path: Sequence[str]) -> Column:
    """Whether array ``path`` of ``source`` holds only strings and nulls.

    Spark reads a JSON string as an interval without failing (null when it is not
    one) and fails on any other value, which nulls the whole array.
    """
    ddl = "array<interval>"
    for name in reversed(path[1:]):
        ddl = f"struct<`{name}`: {ddl}>"
    return at(F.from_json(source, f"`{path[0]}` {ddl}", JSON_OPTIONS), path).isNotNull()


def record_items(array: Members, name: str, to_raw: Callable[[Members], Column]) -> Column:
    """The elements of the array of objects ``name`` as ``array<ITEM_SCHEMA>`` (null if not an array).

    Known gap: in an array that mixes objects and strings, a string holding an
    object's text counts as an object.

    Args:
        array: The object holding the array.
        name: The array member.
        to_raw: Builds an element's RAW_SCHEMA fields from its members.

    Returns:
        An array column.
    """
    typed, path = array.any(name), (*array.prefix, name)
    no_raw, no_text = F.lit(None).cast(RAW_SCHEMA), F.lit(None).cast(StringType())

    def item(is_object: Column, raw: Column, text: Column) -> Column:
        return F.struct(is_object.alias("is_object"), raw.alias("raw"), text.alias("text"))

    def read(element: Column, index: Column) -> Column:
        raw = to_raw(Members(element, array.source, (*path, index)))
        return item(element.isNotNull(), F.when(element.isNotNull(), raw), no_text)

    # An array of only strings (and nulls) holds no object, e.g. double-encoded records.
    all_strings = _all_strings(array.source, [p for p in path if isinstance(p, str)])

    def unread(text: Column) -> Column:
        is_object = F.coalesce(F.from_json(text, _OBJECT, JSON_OPTIONS).isNotNull(), F.lit(False))
        return item(is_object & ~all_strings, no_raw, text)

    texts = _probe(array.source, path, ArrayType(StringType()))
    return F.when(typed.isNotNull(), F.transform(typed, read)).otherwise(F.transform(texts, unread))


def raw_struct(**fields: Column | str | bool | None) -> Column:
    """A RAW_SCHEMA struct of the given fields (columns or literals); the others are null."""
    unknown = set(fields) - set(RAW_SCHEMA.fieldNames())
    if unknown:
        raise ValueError(f"not RAW_SCHEMA fields: {sorted(unknown)}")
    return F.struct(*[F.lit(fields.get(f.name)).cast(f.dataType).alias(f.name) for f in RAW_SCHEMA.fields])


def lookup(mapping: Mapping[str, str], key: Column) -> Column:
    """The value of ``key`` in a constant mapping (null when absent)."""
    return F.try_element_at(F.create_map(*[F.lit(x) for pair in mapping.items() for x in pair]), key)


# ---- where each envelope keeps its fields (parse._s3_records, _eventbridge, _cloudtrail) ------------
DELETE_OBJECTS: Final = "DeleteObjects"
_OBJ: Final[Layout] = {"key": "string", "sequencer": "string", "size": "long"}
S3_RECORD: Final[Layout] = {
    "eventName": "string",
    "eventTime": "any",
    "s3": {"bucket": {"name": "string"}, "object": {**_OBJ, "versionId": "string", "eTag": "string"}},
}
DELETED_OBJECT: Final[Layout] = {"Key": "string", "VersionId": "string"}
TEST_EVENT: Final[Layout] = {"Bucket": "string", "Time": "any"}
_DETAIL: Final[Layout] = {
    # EventBridge "Object Created" / "Object Deleted"
    "reason": "string",
    "deletion-type": "string",
    "bucket": {"name": "string"},
    "object": {**_OBJ, "version-id": "string", "etag": "string"},
    # CloudTrail "AWS API Call via CloudTrail"
    "eventName": "string",
    "eventTime": "any",
    "errorCode": "any",
    "requestParameters": {"bucketName": "string", "key": "string", "delete": {"Object": [DELETED_OBJECT]}},
    "responseElements": {"x-amz-version-id": "string"},
    "additionalEventData": {"bytesTransferredIn": "long"},
}
# Also the document an SNS notification carries in "Message". A test event's "Bucket" and
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


def deleted_raw(obj: Members) -> Column:
    """RAW_SCHEMA key and version of an object of a DeleteObjects request (read as DELETED_OBJECT)."""
    return raw_struct(key=obj.string("Key"), version_id=obj.string("VersionId"))


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
    obj, kind = ("detail", "object"), msg.any("detail-type")
    reason = F.coalesce(msg.string("detail", "reason"), F.lit(""))
    pair = F.concat(reason, F.lit("|"), F.coalesce(msg.string("detail", "deletion-type"), F.lit("")))
    created = F.coalesce(lookup(m.EB_CREATED_REASONS, reason), F.concat(F.lit(m.CREATED_PREFIX), reason))
    deleted = F.coalesce(lookup(m.EB_DELETED_NAMES, pair), F.lit(m.EB_DELETED_DEFAULT))
    return raw_struct(
        bucket=msg.string("detail", "bucket", "name"),
        key=msg.string(*obj, "key"),
        event_name=F.when(kind == m.EB_OBJECT_CREATED, created)
        .when(kind == m.EB_OBJECT_DELETED, deleted)
        .otherwise(msg.string("detail-type")),
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
    objects: Column  # array<ITEM_SCHEMA> with keys and versions
    bucket: Column
    event_name: Column
    raw: Column  # RAW_SCHEMA of the call (key and version come from ``objects`` for DeleteObjects)

    @classmethod
    def of(cls, msg: Members) -> CloudTrail:
        """Read the fields of a CloudTrail event."""
        detail, params = ("detail",), ("detail", "requestParameters")
        api = msg.string(*detail, "eventName")
        name = F.coalesce(lookup(m.CLOUDTRAIL_NAMES, F.coalesce(api, F.lit(""))), api)
        single = F.coalesce(api != DELETE_OBJECTS, F.lit(True))
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
        delete = Members(msg.any(*params, "delete"), msg.source, (*params, "delete"))
        return cls(
            failed=msg.any(*detail, "errorCode").isNotNull(),
            delete_objects=~single,
            objects=record_items(delete, "Object", deleted_raw),
            bucket=msg.string(*params, "bucketName"),
            event_name=name,
            raw=raw,
        )

"""The one table of S3 message cases the event parser must get right, plain and in Spark tasks.

Each case is (id, body, expected records). Expected values are written by hand
from the S3 / SNS / EventBridge / CloudTrail documentation, never computed by
the code under test. Every listed field of every record is checked; the parser
run in Spark tasks must also agree with the plain call on all fields.
"""

from __future__ import annotations

import json
from typing import Any

SEQ_WIDTH = 32


def pad(seq: str) -> str:
    """Expected normalised form: upper-case, left-padded with zeros to 32."""
    return seq.upper().rjust(SEQ_WIDTH, "0")


def s3_record(
    key: str,
    *,
    name: str = "ObjectCreated:Put",
    bucket: str = "acme-lake",
    time: str | None = "2024-03-01T12:00:00.000Z",
    sequencer: str | None = "0055AED6DCD90281E5",
    version: str | None = None,
    etag: str | None = "d41d8cd98f00b204e9800998ecf8427e",
    size: int | None = 1024,
    event_version: str = "2.1",
) -> dict[str, Any]:
    obj: dict[str, Any] = {"key": key}
    if size is not None:
        obj["size"] = size
    if etag is not None:
        obj["eTag"] = etag
    if version is not None:
        obj["versionId"] = version
    if sequencer is not None:
        obj["sequencer"] = sequencer
    rec: dict[str, Any] = {
        "eventVersion": event_version,
        "eventSource": "aws:s3",
        "awsRegion": "us-east-1",
        "eventName": name,
        "userIdentity": {"principalId": "AWS:AIDAEXAMPLE"},
        "requestParameters": {"sourceIPAddress": "203.0.113.9"},
        "responseElements": {"x-amz-request-id": "C3D13FE58DE4C810", "x-amz-id-2": "FMyUVURIY8"},
        "s3": {
            "s3SchemaVersion": "1.0",
            "configurationId": "silverline",
            "bucket": {
                "name": bucket,
                "ownerIdentity": {"principalId": "A3NL1KOZZKExample"},
                "arn": f"arn:aws:s3:::{bucket}",
            },
            "object": obj,
        },
    }
    if time is not None:
        rec["eventTime"] = time
    return rec


def s3_message(*records: dict[str, Any]) -> str:
    return json.dumps({"Records": list(records)})


def sns_message(inner: str) -> str:
    return json.dumps(
        {
            "Type": "Notification",
            "MessageId": "22b80b92-fdea-4c2c-8f9d-bdfb0c7bf324",
            "TopicArn": "arn:aws:sns:us-east-1:123456789012:acme-events",
            "Subject": "Amazon S3 Notification",
            "Message": inner,
            "Timestamp": "2024-03-01T12:00:01.000Z",
            "SignatureVersion": "1",
        }
    )


def eventbridge(detail_type: str, detail: dict[str, Any], time: str = "2024-03-01T12:00:00Z") -> str:
    return json.dumps(
        {
            "version": "0",
            "id": "17793124-05d4-b198-2fde-7ededc63b103",
            "detail-type": detail_type,
            "source": "aws.s3",
            "account": "123456789012",
            "time": time,
            "region": "us-east-1",
            "resources": ["arn:aws:s3:::acme-lake"],
            "detail": detail,
        }
    )


def eb_object(key: str, **extra: Any) -> dict[str, Any]:
    detail: dict[str, Any] = {
        "version": "0",
        "bucket": {"name": "acme-lake"},
        "object": {
            "key": key,
            "size": 5,
            "etag": "b1946ac92492d2347c6235b4d2611184",
            "sequencer": "617f08299329d189",
        },
        "request-id": "N4N7GDK58NMKJ12R",
        "requester": "123456789012",
        "source-ip-address": "1.2.3.4",
    }
    detail.update(extra)
    return detail


def cloudtrail(api: str, params: dict[str, Any], **extra: Any) -> str:
    detail: dict[str, Any] = {
        "eventVersion": "1.09",
        "eventSource": "s3.amazonaws.com",
        "eventName": api,
        "eventTime": "2024-03-01T12:00:05Z",
        "awsRegion": "us-east-1",
        "requestParameters": {"bucketName": "acme-lake", "Host": "acme-lake.s3.amazonaws.com", **params},
    }
    detail.update(extra)
    return eventbridge("AWS API Call via CloudTrail", detail, time="2024-03-01T12:00:06Z")


TEST_EVENT = json.dumps(
    {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2024-03-01T11:59:00.000Z",
        "Bucket": "acme-lake",
        "RequestId": "5582815E1AEA5ADF",
        "HostId": "8cLeGAmw098X5cv4Zkwcmo8vvZa3eH3eKxsPzbB9wrR+YstdA6Knx4Ip8EXAMPLE",
    }
)
# moto's test event carries only these four fields.
MOTO_TEST_EVENT = json.dumps(
    {
        "Service": "Amazon S3",
        "Event": "s3:TestEvent",
        "Time": "2024-03-01T11:59:00.000Z",
        "Bucket": "acme-lake",
    }
)

T0 = "2024-03-01T12:00:00.000000Z"
ETAG = "d41d8cd98f00b204e9800998ecf8427e"
LONG_NAME = "x" * (1024 - len("t1/raw/orders/"))
TOO_LONG_NAME = LONG_NAME + "y"


def ok(key: str, tenant: str, dataset: str, **fields: Any) -> dict[str, Any]:
    """An expected raw-zone event (fields default to s3_record's defaults)."""
    expected = {
        "outcome": "event",
        "reason": None,
        "envelope": "s3",
        "bucket": "acme-lake",
        "key": key,
        "tenant": tenant,
        "zone": "raw",
        "dataset": dataset,
        "event_kind": "created",
        "event_name": "ObjectCreated:Put",
        "event_time": T0,
        "sequencer": pad("55AED6DCD90281E5"),
        "version_id": None,
        "etag": ETAG,
        "size": 1024,
    }
    expected.update(fields)
    return expected


def rejected(reason: str, envelope: str = "s3", **fields: Any) -> dict[str, Any]:
    return {"outcome": "rejected", "reason": reason, "envelope": envelope, **fields}


def ignored(reason: str, envelope: str = "s3", **fields: Any) -> dict[str, Any]:
    return {"outcome": "ignored", "reason": reason, "envelope": envelope, **fields}


CASES: list[tuple[str, str | None, list[dict[str, Any]]]] = [
    # ---- direct S3 notifications, all event versions ---------------------------------------------
    *[
        (
            f"s3-put-eventversion-{v}",
            s3_message(s3_record("t1/raw/orders/2024/03/a.csv", event_version=v)),
            [ok("t1/raw/orders/2024/03/a.csv", "t1", "orders")],
        )
        for v in ("2.1", "2.2", "2.3", "2.4", "2.5", "2.6")
    ],
    (
        "s3-multi-record",
        s3_message(
            s3_record("t1/raw/orders/a.csv"),
            s3_record("t2/raw/clicks/b.json", name="ObjectRemoved:Delete", size=None, etag=None),
            s3_record("t3/raw/inventory/c.parquet", name="ObjectRemoved:DeleteMarkerCreated", version="v1"),
        ),
        [
            ok("t1/raw/orders/a.csv", "t1", "orders", record_index=0),
            ok(
                "t2/raw/clicks/b.json",
                "t2",
                "clicks",
                record_index=1,
                event_kind="removed",
                event_name="ObjectRemoved:Delete",
                size=None,
                etag=None,
            ),
            ok(
                "t3/raw/inventory/c.parquet",
                "t3",
                "inventory",
                record_index=2,
                event_kind="removed",
                event_name="ObjectRemoved:DeleteMarkerCreated",
                version_id="v1",
            ),
        ],
    ),
    (
        "s3-lifecycle-expiration-is-removed",
        s3_message(s3_record("t1/raw/orders/a.csv", name="LifecycleExpiration:Delete")),
        [
            ok(
                "t1/raw/orders/a.csv",
                "t1",
                "orders",
                event_kind="removed",
                event_name="LifecycleExpiration:Delete",
            )
        ],
    ),
    (
        "s3-copy-and-multipart-are-created",
        s3_message(
            s3_record("t1/raw/orders/a.csv", name="ObjectCreated:Copy"),
            s3_record("t1/raw/orders/b.csv", name="ObjectCreated:CompleteMultipartUpload"),
        ),
        [
            ok("t1/raw/orders/a.csv", "t1", "orders", event_name="ObjectCreated:Copy"),
            ok("t1/raw/orders/b.csv", "t1", "orders", event_name="ObjectCreated:CompleteMultipartUpload"),
        ],
    ),
    # ---- keys (R2) ----------------------------------------------------------------------------------
    (
        "key-plus-is-space-and-2B-is-plus",
        s3_message(s3_record("t1/raw/orders/my+file%2Bv2.csv")),
        [ok("t1/raw/orders/my file+v2.csv", "t1", "orders")],
    ),
    (
        "key-slash-encoded-as-2F-like-moto",
        s3_message(s3_record("t1%2Fraw%2Forders%2Fa.csv")),
        [ok("t1/raw/orders/a.csv", "t1", "orders")],
    ),
    (
        "key-unicode",
        s3_message(s3_record("t1/raw/orders/%C3%BCber%20%E2%82%AC%E6%97%A5%E6%9C%AC.csv")),
        [ok("t1/raw/orders/über €日本.csv", "t1", "orders")],
    ),
    (
        "key-1kb-is-valid",
        s3_message(s3_record("t1/raw/orders/" + LONG_NAME)),
        [ok("t1/raw/orders/" + LONG_NAME, "t1", "orders")],
    ),
    (
        "key-over-1kb-rejected",
        s3_message(s3_record("t1/raw/orders/" + TOO_LONG_NAME)),
        [rejected("key_too_long", key="t1/raw/orders/" + TOO_LONG_NAME, tenant=None)],
    ),
    (
        "key-traversal-rejected",
        s3_message(s3_record("t1/raw/orders/..%2F..%2Ft2%2Fsilver%2Fx.csv")),
        [rejected("key_traversal", key="t1/raw/orders/../../t2/silver/x.csv", tenant=None, zone=None)],
    ),
    (
        "key-dot-segment-rejected",
        s3_message(s3_record("t1/./raw/orders/a.csv")),
        [rejected("key_traversal", key="t1/./raw/orders/a.csv")],
    ),
    (
        "key-absolute-rejected",
        s3_message(s3_record("%2Fetc%2Fpasswd")),
        [rejected("key_absolute", key="/etc/passwd", tenant=None)],
    ),
    (
        "key-empty-segment-rejected",
        s3_message(s3_record("t1//raw/orders/a.csv")),
        [rejected("key_empty_segment", key="t1//raw/orders/a.csv")],
    ),
    (
        "key-control-character-rejected",
        s3_message(s3_record("t1/raw/orders/a%0Ab.csv")),
        [rejected("key_control_characters", key="t1/raw/orders/a\nb.csv")],
    ),
    (
        "key-bad-percent-encoding-rejected",
        s3_message(s3_record("t1/raw/orders/100%.csv")),
        [rejected("key_malformed_encoding", key="t1/raw/orders/100%.csv")],
    ),
    (
        "key-invalid-utf8-rejected",
        s3_message(s3_record("t1/raw/orders/%FF.csv")),
        [rejected("key_invalid_utf8", key="t1/raw/orders/\ufffd.csv")],
    ),
    (
        "key-silver-zone-ignored",
        s3_message(s3_record("t1/silver/orders/data/00000-1.parquet")),
        [ignored("not_raw_zone", key="t1/silver/orders/data/00000-1.parquet", tenant="t1", zone="silver")],
    ),
    (
        "key-top-level-file-ignored",
        s3_message(s3_record("README.txt")),
        [ignored("not_raw_zone", key="README.txt", tenant="README.txt", zone=None, dataset=None)],
    ),
    (
        "key-folder-marker-ignored",
        s3_message(s3_record("t1/raw/orders/", size=0)),
        [ignored("folder_marker", key="t1/raw/orders/", tenant="t1", zone="raw", dataset="orders")],
    ),
    (
        "key-raw-without-dataset-folder-rejected",
        s3_message(s3_record("t1/raw/a.csv")),
        [rejected("key_too_short", key="t1/raw/a.csv", tenant="t1", zone="raw", dataset="a.csv")],
    ),
    (
        "key-bad-tenant-name-rejected",
        s3_message(s3_record("t%C3%BC/raw/orders/a.csv")),
        [rejected("invalid_tenant", key="tü/raw/orders/a.csv", tenant="tü")],
    ),
    (
        "key-bad-dataset-name-rejected",
        s3_message(s3_record("t1/raw/or.ders/a.csv")),
        [rejected("invalid_dataset", key="t1/raw/or.ders/a.csv", dataset="or.ders")],
    ),
    # ---- sequencers (R4) -------------------------------------------------------------------------------
    (
        "sequencer-lower-case-and-short",
        s3_message(s3_record("t1/raw/orders/a.csv", sequencer="617f08299329d189")),
        [ok("t1/raw/orders/a.csv", "t1", "orders", sequencer=pad("617F08299329D189"))],
    ),
    (
        "sequencer-leading-zeros-stripped-then-padded",
        s3_message(s3_record("t1/raw/orders/a.csv", sequencer="0000000000000000000000000000000000FF")),
        [ok("t1/raw/orders/a.csv", "t1", "orders", sequencer=pad("FF"))],
    ),
    (
        "sequencer-missing-falls-back-to-time",
        s3_message(s3_record("t1/raw/orders/a.csv", sequencer=None)),
        [ok("t1/raw/orders/a.csv", "t1", "orders", sequencer=None)],
    ),
    (
        "sequencer-not-hex-rejected",
        s3_message(s3_record("t1/raw/orders/a.csv", sequencer="XYZ")),
        [rejected("invalid_sequencer", key="t1/raw/orders/a.csv", sequencer=None)],
    ),
    (
        "event-time-missing-rejected",
        s3_message(s3_record("t1/raw/orders/a.csv", time=None)),
        [rejected("invalid_event_time", event_time=None)],
    ),
    (
        "event-time-offset-and-nanos",
        s3_message(s3_record("t1/raw/orders/a.csv", time="2024-03-01T13:00:00.123456789+01:00")),
        [ok("t1/raw/orders/a.csv", "t1", "orders", event_time="2024-03-01T12:00:00.123456Z")],
    ),
    (
        "record-missing-bucket-rejected",
        s3_message(s3_record("t1/raw/orders/a.csv", bucket="")),
        [rejected("missing_bucket")],
    ),
    (
        "record-bucket-traversal-rejected",
        s3_message(s3_record("t1/raw/orders/a.csv", bucket="..")),
        [rejected("invalid_bucket", bucket="..")],
    ),
    (
        "record-bucket-with-encoded-slash-rejected",
        s3_message(s3_record("t1/raw/orders/a.csv", bucket="demo-lake%2F..%2F..")),
        [rejected("invalid_bucket", bucket="demo-lake%2F..%2F..")],
    ),
    (
        "object-event-type-not-handled",
        s3_message(s3_record("t1/raw/orders/a.csv", name="ObjectTagging:Put")),
        [ignored("event_type_not_handled", event_kind=None, event_name="ObjectTagging:Put", tenant="t1")],
    ),
    # ---- test events ---------------------------------------------------------------------------------
    (
        "s3-test-event",
        TEST_EVENT,
        [
            {
                "outcome": "test",
                "reason": "s3_test_event",
                "envelope": "test",
                "bucket": "acme-lake",
                "event_name": "s3:TestEvent",
                "event_time": "2024-03-01T11:59:00.000000Z",
                "key": None,
            }
        ],
    ),
    (
        "moto-test-event",
        MOTO_TEST_EVENT,
        [{"outcome": "test", "reason": "s3_test_event", "envelope": "test", "bucket": "acme-lake"}],
    ),
    (
        "sns-wrapped-test-event",
        sns_message(TEST_EVENT),
        [{"outcome": "test", "reason": "s3_test_event", "envelope": "sns", "bucket": "acme-lake"}],
    ),
    # ---- SNS -----------------------------------------------------------------------------------------------
    (
        "sns-wrapped-records",
        sns_message(s3_message(s3_record("t1/raw/clicks/x+y.json"), s3_record("t1/raw/clicks/z.json"))),
        [
            ok("t1/raw/clicks/x y.json", "t1", "clicks", envelope="sns", record_index=0),
            ok("t1/raw/clicks/z.json", "t1", "clicks", envelope="sns", record_index=1),
        ],
    ),
    (
        "sns-carrying-non-s3-message",
        sns_message(json.dumps({"alarm": "CPU high"})),
        [rejected("sns_message_not_s3", envelope="sns")],
    ),
    (
        "sns-carrying-plain-text",
        sns_message("hello world"),
        [rejected("sns_message_not_s3", envelope="sns")],
    ),
    (
        "sns-subscription-confirmation",
        json.dumps(
            {"Type": "SubscriptionConfirmation", "Message": "You have chosen to subscribe", "Token": "x"}
        ),
        [ignored("sns_control_message", envelope="sns")],
    ),
    # ---- EventBridge ---------------------------------------------------------------------------------------
    (
        "eventbridge-object-created",
        eventbridge("Object Created", eb_object("t1/raw/orders/a b+c.csv", reason="PutObject")),
        [
            ok(
                "t1/raw/orders/a b+c.csv",
                "t1",
                "orders",
                envelope="eventbridge",
                event_time="2024-03-01T12:00:00.000000Z",
                sequencer=pad("617F08299329D189"),
                etag="b1946ac92492d2347c6235b4d2611184",
                size=5,
            )
        ],
    ),
    (
        "eventbridge-object-created-multipart-versioned",
        eventbridge(
            "Object Created",
            {
                **eb_object("t1/raw/inventory/x.parquet", reason="CompleteMultipartUpload"),
                "object": {
                    "key": "t1/raw/inventory/x.parquet",
                    "size": 9,
                    "etag": "e9",
                    "version-id": "v9",
                    "sequencer": "00617F08299329D189",
                },
            },
        ),
        [
            ok(
                "t1/raw/inventory/x.parquet",
                "t1",
                "inventory",
                envelope="eventbridge",
                event_name="ObjectCreated:CompleteMultipartUpload",
                sequencer=pad("617F08299329D189"),
                etag="e9",
                size=9,
                version_id="v9",
            )
        ],
    ),
    (
        "eventbridge-object-deleted-marker",
        eventbridge(
            "Object Deleted",
            eb_object(
                "t1/raw/orders/a.csv", reason="DeleteObject", **{"deletion-type": "Delete Marker Created"}
            ),
        ),
        [
            ok(
                "t1/raw/orders/a.csv",
                "t1",
                "orders",
                envelope="eventbridge",
                event_kind="removed",
                event_name="ObjectRemoved:DeleteMarkerCreated",
                sequencer=pad("617F08299329D189"),
                etag="b1946ac92492d2347c6235b4d2611184",
                size=5,
            )
        ],
    ),
    (
        "eventbridge-lifecycle-expiration",
        eventbridge(
            "Object Deleted",
            eb_object(
                "t1/raw/orders/a.csv",
                reason="Lifecycle Expiration",
                **{"deletion-type": "Permanently Deleted"},
            ),
        ),
        [
            ok(
                "t1/raw/orders/a.csv",
                "t1",
                "orders",
                envelope="eventbridge",
                event_kind="removed",
                event_name="LifecycleExpiration:Delete",
                sequencer=pad("617F08299329D189"),
                etag="b1946ac92492d2347c6235b4d2611184",
                size=5,
            )
        ],
    ),
    (
        "eventbridge-other-detail-type-ignored",
        eventbridge("Object Restore Completed", eb_object("t1/raw/orders/a.csv")),
        [ignored("event_type_not_handled", envelope="eventbridge", event_name="Object Restore Completed")],
    ),
    # ---- CloudTrail via EventBridge -----------------------------------------------------------------------
    (
        "cloudtrail-put-object",
        cloudtrail(
            "PutObject",
            {"key": "t1/raw/orders/a b.csv"},
            responseElements={"x-amz-version-id": "3HL4kqtJlcpXroDTDmJ"},
            additionalEventData={"bytesTransferredIn": 42},
        ),
        [
            ok(
                "t1/raw/orders/a b.csv",
                "t1",
                "orders",
                envelope="cloudtrail",
                event_time="2024-03-01T12:00:05.000000Z",
                sequencer=None,
                etag=None,
                size=42,
                version_id="3HL4kqtJlcpXroDTDmJ",
            )
        ],
    ),
    (
        "cloudtrail-copy-and-multipart",
        cloudtrail(
            "CopyObject", {"key": "t1/raw/orders/c.csv", "x-amz-copy-source": "acme-lake/t1/raw/orders/a.csv"}
        ),
        [
            ok(
                "t1/raw/orders/c.csv",
                "t1",
                "orders",
                envelope="cloudtrail",
                event_name="ObjectCreated:Copy",
                event_time="2024-03-01T12:00:05.000000Z",
                sequencer=None,
                etag=None,
                size=None,
            )
        ],
    ),
    (
        "cloudtrail-complete-multipart",
        cloudtrail("CompleteMultipartUpload", {"key": "t1/raw/orders/m.csv", "uploadId": "u1"}),
        [
            ok(
                "t1/raw/orders/m.csv",
                "t1",
                "orders",
                envelope="cloudtrail",
                event_name="ObjectCreated:CompleteMultipartUpload",
                event_time="2024-03-01T12:00:05.000000Z",
                sequencer=None,
                etag=None,
                size=None,
            )
        ],
    ),
    (
        "cloudtrail-delete-object",
        cloudtrail("DeleteObject", {"key": "t1/raw/orders/a.csv"}),
        [
            ok(
                "t1/raw/orders/a.csv",
                "t1",
                "orders",
                envelope="cloudtrail",
                event_kind="removed",
                event_name="ObjectRemoved:Delete",
                event_time="2024-03-01T12:00:05.000000Z",
                sequencer=None,
                etag=None,
                size=None,
            )
        ],
    ),
    (
        "cloudtrail-delete-objects-one-record-per-key",
        cloudtrail(
            "DeleteObjects",
            {
                "delete": {
                    "Quiet": True,
                    "Object": [{"Key": "t1/raw/orders/a.csv"}, {"Key": "t2/raw/clicks/b c.json"}],
                }
            },
        ),
        [
            ok(
                "t1/raw/orders/a.csv",
                "t1",
                "orders",
                envelope="cloudtrail",
                event_kind="removed",
                event_name="ObjectRemoved:Delete",
                event_time="2024-03-01T12:00:05.000000Z",
                sequencer=None,
                etag=None,
                size=None,
                record_index=0,
            ),
            ok(
                "t2/raw/clicks/b c.json",
                "t2",
                "clicks",
                envelope="cloudtrail",
                event_kind="removed",
                event_name="ObjectRemoved:Delete",
                event_time="2024-03-01T12:00:05.000000Z",
                sequencer=None,
                etag=None,
                size=None,
                record_index=1,
            ),
        ],
    ),
    (
        "cloudtrail-failed-call-ignored",
        cloudtrail("PutObject", {"key": "t1/raw/orders/a.csv"}, errorCode="AccessDenied"),
        [
            ignored(
                "api_call_failed", envelope="cloudtrail", bucket="acme-lake", event_name="ObjectCreated:Put"
            )
        ],
    ),
    (
        "cloudtrail-other-api-ignored",
        cloudtrail("PutObjectTagging", {"key": "t1/raw/orders/a.csv"}),
        [ignored("event_type_not_handled", envelope="cloudtrail", event_name="PutObjectTagging")],
    ),
    # ---- garbage (R1: kept and counted, never an error) -------------------------------------------------
    (
        "truncated-json",
        '{"Records": [{"eventName": "ObjectCreated:Put"',
        [rejected("invalid_json", envelope="unknown")],
    ),
    ("not-json", "hello, queue", [rejected("invalid_json", envelope="unknown")]),
    ("empty-body", "", [rejected("invalid_json", envelope="unknown")]),
    ("null-body", None, [rejected("invalid_json", envelope="unknown")]),
    ("json-array", "[1, 2, 3]", [rejected("invalid_json", envelope="unknown")]),
    (
        "json-object-unknown",
        json.dumps({"hello": "world"}),
        [rejected("unknown_envelope", envelope="unknown")],
    ),
    ("empty-records", json.dumps({"Records": []}), [rejected("no_records", envelope="s3")]),
]

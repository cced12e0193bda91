"""S3 event notification bodies as Amazon S3 (and SNS) write them, plus malformed ones.

Format: the S3 User Guide's "Event message structure" (eventVersion 2.1). Keys
are URL-encoded the way S3 does it (``quote_plus(key, safe="/")``: a space is
``+``, a plus ``%2B``). Created events carry size and eTag (the MD5 hex of the
bytes, so the job can check it); removed events carry key and sequencer only.
"""

from __future__ import annotations

import base64
import datetime as dt
import hashlib
import json
import random
import uuid
from typing import Any
from urllib.parse import quote_plus

ACCOUNT_ID = "123456789012"
MALFORMED_KINDS: tuple[str, ...] = ("not_json", "no_records", "traversal")


def event_time_text(moment: dt.datetime) -> str:
    """S3's eventTime: ISO-8601 UTC with milliseconds, e.g. ``2024-03-01T12:00:00.123Z``."""
    moment = moment.astimezone(dt.UTC)
    return moment.strftime("%Y-%m-%dT%H:%M:%S.") + f"{moment.microsecond // 1000:03d}Z"


def encode_key(key: str) -> str:
    """A key as S3 notifications carry it."""
    return quote_plus(key, safe="/")


class NotificationFactory:
    """Builds notification records and bodies with ids drawn from one random generator."""

    def __init__(self, rng: random.Random, bucket: str, region: str) -> None:
        self._rng = rng
        self.bucket = bucket
        self.region = region

    def _hex(self, digits: int) -> str:
        return f"{self._rng.getrandbits(4 * digits):0{digits}X}"

    def _uuid(self) -> str:
        return str(uuid.UUID(int=self._rng.getrandbits(128), version=4))

    def record(
        self, key: str, event_name: str, moment: dt.datetime, sequencer: str, data: bytes | None
    ) -> dict[str, Any]:
        """One S3 record; ``data`` is the object's bytes for created events, None for removed."""
        obj: dict[str, Any] = {"key": encode_key(key)}
        if data is not None:
            obj["size"] = len(data)
            obj["eTag"] = hashlib.md5(data, usedforsecurity=False).hexdigest()
        obj["sequencer"] = sequencer
        host_id = base64.b64encode(self._rng.randbytes(57)).decode("ascii")
        return {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": self.region,
            "eventTime": event_time_text(moment),
            "eventName": event_name,
            "userIdentity": {"principalId": f"AWS:AIDA{self._hex(16)}"},
            "requestParameters": {"sourceIPAddress": f"203.0.113.{self._rng.randint(1, 254)}"},
            "responseElements": {"x-amz-request-id": self._hex(16), "x-amz-id-2": host_id},
            "s3": {
                "s3SchemaVersion": "1.0",
                "configurationId": "silverline-raw",
                "bucket": {
                    "name": self.bucket,
                    "ownerIdentity": {"principalId": "A3NL1KOZZKEXAMPLE"},
                    "arn": f"arn:aws:s3:::{self.bucket}",
                },
                "object": obj,
            },
        }

    @staticmethod
    def message(records: list[dict[str, Any]]) -> str:
        """A direct S3 notification body."""
        return json.dumps({"Records": records}, ensure_ascii=False)

    def sns_envelope(self, body: str, moment: dt.datetime) -> str:
        """``body`` delivered through an SNS topic subscribed by the queue (raw delivery off)."""
        topic = f"arn:aws:sns:{self.region}:{ACCOUNT_ID}:{self.bucket}-events"
        envelope = {
            "Type": "Notification",
            "MessageId": self._uuid(),
            "TopicArn": topic,
            "Subject": "Amazon S3 Notification",
            "Message": body,
            "Timestamp": event_time_text(moment),
            "SignatureVersion": "1",
            "Signature": base64.b64encode(self._rng.randbytes(96)).decode("ascii"),
            "SigningCertURL": f"https://sns.{self.region}.amazonaws.com/SimpleNotificationService-0000.pem",
            "UnsubscribeURL": f"https://sns.{self.region}.amazonaws.com/?Action=Unsubscribe"
            f"&SubscriptionArn={topic}:{self._uuid()}",
        }
        return json.dumps(envelope, ensure_ascii=False)

    def test_event(self, moment: dt.datetime) -> str:
        """The ``s3:TestEvent`` S3 sends when a notification configuration is saved."""
        host_id = base64.b64encode(self._rng.randbytes(57)).decode("ascii")
        return json.dumps(
            {
                "Service": "Amazon S3",
                "Event": "s3:TestEvent",
                "Time": event_time_text(moment),
                "Bucket": self.bucket,
                "RequestId": self._hex(16),
                "HostId": host_id,
            }
        )

    def non_raw(self, tenant: str, dataset: str, moment: dt.datetime, sequencer: str) -> str:
        """An event on a tenant's silver zone (an Iceberg data file): the job must ignore it."""
        key = f"{tenant}/silver/{dataset}/data/00000-{self._rng.randint(0, 99)}-{self._uuid()}.parquet"
        data = self._rng.randbytes(64)
        return self.message([self.record(key, "ObjectCreated:Put", moment, sequencer, data)])

    def malformed(self, kind: str, tenant: str, moment: dt.datetime, sequencer: str) -> str:
        """A body the job must reject: ``not_json``, ``no_records`` or ``traversal``."""
        if kind == "not_json":
            whole = self.message(
                [self.record(f"{tenant}/raw/orders/x.csv", "ObjectCreated:Put", moment, sequencer, b"x")]
            )
            return whole[: len(whole) // 3]
        if kind == "no_records":
            return json.dumps({"eventVersion": "2.1", "eventSource": "aws:s3", "note": "no Records"})
        if kind == "traversal":
            key = f"{tenant}/raw/orders/../../x.csv"
            return self.message([self.record(key, "ObjectCreated:Put", moment, sequencer, b"a,b\n")])
        raise ValueError(f"unknown malformed kind {kind!r}")

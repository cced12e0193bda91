"""S3-API mode: execute the plan through the S3 API and let the store send the notifications.

Against moto's S3 this exercises what moto really emits: no ``sequencer``, no
``versionId``, ``/`` encoded as ``%2F`` in keys, a bare ``s3:TestEvent`` when
the notification configuration is saved. Only the bucket's own behaviour is
simulated here: no duplicates, swaps, delays or malformed bodies (files mode
injects those).
"""

from __future__ import annotations

import datetime as dt
import logging
import random
import time
from dataclasses import replace
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from jobs.simulate.plan import plan_operations
from jobs.simulate.simulator import new_truth, record_operation
from jobs.simulate.spec import DATASETS, SimulationSpec, tenant_names
from jobs.simulate.sqs import allow_bucket_notifications
from jobs.simulate.truth import GroundTruth

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

#: Without sequencers the job orders events of one key by eventTime (milliseconds): keep them apart.
_MIN_GAP_SECONDS = 0.005


def configure_bucket(s3_client: S3Client, bucket: str, queue_arn: str, region: str) -> None:
    """Create ``bucket`` if needed and send its create and remove events to the queue."""
    try:
        if region == "us-east-1":
            s3_client.create_bucket(Bucket=bucket)
        else:
            s3_client.create_bucket(
                Bucket=bucket,
                CreateBucketConfiguration={"LocationConstraint": region},  # type: ignore[typeddict-item]
            )
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in (
            "BucketAlreadyOwnedByYou",
            "BucketAlreadyExists",
        ):
            raise
    s3_client.put_bucket_notification_configuration(
        Bucket=bucket,
        NotificationConfiguration={
            "QueueConfigurations": [
                {
                    "Id": "silverline-raw",
                    "QueueArn": queue_arn,
                    "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
                }
            ]
        },
    )


def run_s3_api(
    s3_client: S3Client, sqs_client: SQSClient, bucket: str, queue_arn: str, spec: SimulationSpec
) -> GroundTruth:
    """Upload, overwrite and delete through the S3 API; the store notifies the queue.

    Args:
        s3_client: A boto3 S3 client (moto's server locally).
        sqs_client: A boto3 SQS client of the queue's endpoint (its policy is set to admit the bucket).
        bucket: The bucket (overrides ``spec.bucket``); created when missing.
        queue_arn: The queue that receives the notifications.
        spec: What to inject (duplicates, swaps, delays and malformed bodies are not used).

    Returns:
        The ground truth. ``injected.messages`` counts what moto sends: one test
        event, one message per operation and per non-raw event, and one more
        (``ObjectCreated:Put``) per multipart upload. Operations carry the store's
        time and no sequencer.
    """
    queue_url = sqs_client.get_queue_url(QueueName=queue_arn.rsplit(":", 1)[-1])["QueueUrl"]
    allow_bucket_notifications(sqs_client, queue_url, bucket)
    configure_bucket(s3_client, bucket, queue_arn, spec.region)
    rng = random.Random(spec.seed)
    truth = new_truth(spec, "s3-api", bucket)
    last_touch: dict[str, float] = {}
    operations = plan_operations(spec, rng)
    for op in operations:
        _keep_apart(last_touch, op.key)
        if op.kind == "delete":
            s3_client.delete_object(Bucket=bucket, Key=op.key)
        elif op.event_name.endswith("CompleteMultipartUpload"):
            _multipart_upload(s3_client, bucket, op.key, op.data or b"")
        else:
            s3_client.put_object(Bucket=bucket, Key=op.key, Body=op.data or b"")
        # The store stamps its own time and sends no sequencer: the truth records what it saw.
        record_operation(truth, replace(op, moment=dt.datetime.now(dt.UTC), sequencer=""))
    tenants = tenant_names(spec.tenants)
    for number in range(spec.non_raw_events):
        tenant, dataset = rng.choice(tenants), rng.choice(DATASETS)
        key = f"{tenant}/silver/{dataset}/data/{number:05d}-{rng.getrandbits(32):08x}.parquet"
        s3_client.put_object(Bucket=bucket, Key=key, Body=rng.randbytes(64))
    counters = truth.injected
    counters.test_events = 1
    counters.non_raw_events = spec.non_raw_events
    # moto also sends an ObjectCreated:Put before each CompleteMultipartUpload event.
    counters.messages = counters.records = 1 + len(operations) + spec.non_raw_events + counters.multipart
    log.info("s3-api simulation of s3://%s: %s", bucket, counters.summary())
    return truth


def _multipart_upload(s3_client: S3Client, bucket: str, key: str, data: bytes) -> None:
    """Upload ``data`` as a one-part multipart upload (eTag ``<md5 of part md5s>-1``)."""
    upload_id = s3_client.create_multipart_upload(Bucket=bucket, Key=key)["UploadId"]
    part = s3_client.upload_part(Bucket=bucket, Key=key, UploadId=upload_id, PartNumber=1, Body=data)
    s3_client.complete_multipart_upload(
        Bucket=bucket,
        Key=key,
        UploadId=upload_id,
        MultipartUpload={"Parts": [{"PartNumber": 1, "ETag": part["ETag"]}]},
    )


def _keep_apart(last_touch: dict[str, float], key: str) -> None:
    """Sleep so that two events of one key never share an eventTime millisecond."""
    now = time.monotonic()
    previous = last_touch.get(key)
    if previous is not None and now - previous < _MIN_GAP_SECONDS:
        time.sleep(_MIN_GAP_SECONDS - (now - previous))
    last_touch[key] = time.monotonic()

"""The tenant group's queue on SQS (moto's server locally): create it, let S3 send to it, publish to it."""

from __future__ import annotations

import json
import logging
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType
    from mypy_boto3_sqs.type_defs import SendMessageBatchRequestEntryTypeDef

log = logging.getLogger(__name__)

BATCH = 10  # SendMessageBatch maximum
_MISSING_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
Progress = Callable[[int, int], None]


class PublishError(RuntimeError):
    """Some messages could not be sent after retries."""


@dataclass(frozen=True)
class GroupQueues:
    """A tenant group's queue and its dead-letter queue."""

    queue_url: str
    dlq_url: str
    queue_arn: str = ""


def queue_arn(sqs_client: SQSClient, queue_url: str) -> str:
    """The ARN of a queue."""
    attrs = sqs_client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["QueueArn"])
    return str(attrs["Attributes"]["QueueArn"])


def _ensure_queue(sqs_client: SQSClient, name: str, attributes: Mapping[QueueAttributeNameType, str]) -> str:
    """URL of queue ``name``, created when missing, else its attributes brought up to date."""
    try:
        url = str(sqs_client.get_queue_url(QueueName=name)["QueueUrl"])
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in _MISSING_QUEUE:
            raise
        return str(sqs_client.create_queue(QueueName=name, Attributes=attributes)["QueueUrl"])
    if attributes:
        sqs_client.set_queue_attributes(QueueUrl=url, Attributes=attributes)
    return url


def create_group(
    sqs_client: SQSClient, queue_name: str, max_receive_count: int = 5, visibility_timeout: int = 120
) -> GroupQueues:
    """Create (or update) a tenant group's queue and its DLQ ``<queue_name>-dlq`` with a redrive policy.

    Idempotent: calling it again returns the same URLs.

    Args:
        sqs_client: A boto3 SQS client (pointing at moto's server locally).
        queue_name: The queue's name.
        max_receive_count: Receives before SQS moves a message to the DLQ.
        visibility_timeout: The queue's default visibility timeout in seconds.

    Returns:
        The URLs (and the queue's ARN).
    """
    dlq_url = _ensure_queue(sqs_client, f"{queue_name}-dlq", {"MessageRetentionPeriod": "1209600"})
    redrive = json.dumps(
        {"deadLetterTargetArn": queue_arn(sqs_client, dlq_url), "maxReceiveCount": str(max_receive_count)}
    )
    attributes: dict[QueueAttributeNameType, str] = {
        "RedrivePolicy": redrive,
        "VisibilityTimeout": str(visibility_timeout),
    }
    url = _ensure_queue(sqs_client, queue_name, attributes)
    log.info("queue %s ready (DLQ %s, maxReceiveCount %d)", url, dlq_url, max_receive_count)
    return GroupQueues(url, dlq_url, queue_arn(sqs_client, url))


def allow_bucket_notifications(sqs_client: SQSClient, queue_url: str, bucket: str) -> None:
    """Set the queue policy that lets Amazon S3 send ``bucket``'s notifications to the queue."""
    arn = queue_arn(sqs_client, queue_url)
    policy = {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "s3-notifications",
                "Effect": "Allow",
                "Principal": {"Service": "s3.amazonaws.com"},
                "Action": "sqs:SendMessage",
                "Resource": arn,
                "Condition": {"ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{bucket}"}},
            }
        ],
    }
    sqs_client.set_queue_attributes(QueueUrl=queue_url, Attributes={"Policy": json.dumps(policy)})


def publish(
    sqs_client: SQSClient,
    queue_url: str,
    bodies: Sequence[str],
    progress: Progress | None = None,
    *,
    attempts: int = 3,
) -> list[str]:
    """Send ``bodies`` in order, ten per ``SendMessageBatch``; retry entries SQS reports as failed.

    Args:
        sqs_client: A boto3 SQS client.
        queue_url: The queue.
        bodies: Message bodies in publish order.
        progress: Called with (sent so far, total) after every batch.
        attempts: Tries per batch for entries that failed on the server side.

    Returns:
        The message ids, in body order.

    Raises:
        PublishError: Entries still failed after ``attempts`` tries, or failed on the sender's side.
    """
    ids: list[str] = []
    for start in range(0, len(bodies), BATCH):
        ids += _send_batch(sqs_client, queue_url, bodies[start : start + BATCH], attempts)
        if progress is not None:
            progress(len(ids), len(bodies))
    log.info("published %d messages to %s", len(ids), queue_url)
    return ids


def _send_batch(sqs_client: SQSClient, queue_url: str, chunk: Sequence[str], attempts: int) -> list[str]:
    ids: dict[int, str] = {}
    pending = dict(enumerate(chunk))
    for attempt in range(1, attempts + 1):
        entries: list[SendMessageBatchRequestEntryTypeDef] = [
            {"Id": str(i), "MessageBody": body} for i, body in pending.items()
        ]
        result = sqs_client.send_message_batch(QueueUrl=queue_url, Entries=entries)
        for ok in result.get("Successful", []):
            ids[int(ok["Id"])] = ok["MessageId"]
            pending.pop(int(ok["Id"]), None)
        failed = result.get("Failed", [])
        if not failed:
            break
        if any(f.get("SenderFault") for f in failed) or attempt == attempts:
            details = "; ".join(f"{f.get('Code')}: {f.get('Message')}" for f in failed)
            raise PublishError(f"{len(failed)} of {len(chunk)} messages not sent: {details}")
        log.warning("retrying %d failed entries (attempt %d of %d)", len(failed), attempt, attempts)
    return [ids[i] for i in range(len(chunk))]

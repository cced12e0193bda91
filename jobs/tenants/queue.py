"""A tenant group's SQS queue: the queue, its dead-letter queue, and the policy that lets S3 send to it.

Like :mod:`jobs.tenants.bucket`, every step compares before it writes: attributes
that already hold the wanted values are not set again, and statements of the
queue policy other than ours are kept.
"""

from __future__ import annotations

import json
import logging
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

from jobs.tenants.bucket import CREATED, UNCHANGED, UPDATED

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

log = logging.getLogger(__name__)

_MISSING_QUEUE = {"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"}
POLICY_SID = "SilverlineS3Notifications"
DLQ_RETENTION_SECONDS = 14 * 24 * 3600  # the SQS maximum: time to look at what failed


@dataclass(frozen=True)
class QueueState:
    """A queue after :func:`ensure_queue`: where it is and what was done to it."""

    url: str
    arn: str
    action: str


def queue_names(group: str) -> tuple[str, str]:
    """The default names of a group's queue and dead-letter queue."""
    return f"silverline-{group}", f"silverline-{group}-dlq"


def _same_value(name: str, current: str | None, wanted: str) -> bool:
    if current is None:
        return False
    if name in ("RedrivePolicy", "Policy"):
        try:  # compare documents, not spellings (SQS may return numbers unquoted, keys reordered)
            return bool(_normalise(json.loads(current)) == _normalise(json.loads(wanted)))
        except ValueError:
            return False
    return current == wanted


def _normalise(value: Any) -> Any:
    if isinstance(value, Mapping):
        return {k: _normalise(v) for k, v in value.items()}
    if isinstance(value, list):
        return [_normalise(v) for v in value]
    return str(value)


def ensure_queue(sqs: SQSClient, name: str, attributes: Mapping[QueueAttributeNameType, str]) -> QueueState:
    """Create queue ``name`` with ``attributes``, or bring an existing queue's attributes up to date.

    Args:
        sqs: A boto3 SQS client.
        name: The queue name.
        attributes: Wanted attributes; others are left as they are.

    Returns:
        The queue's URL, ARN and ``created`` / ``updated`` / ``unchanged``.
    """
    try:
        url = sqs.get_queue_url(QueueName=name)["QueueUrl"]
    except ClientError as exc:
        if exc.response.get("Error", {}).get("Code") not in _MISSING_QUEUE:
            raise
        url = sqs.create_queue(QueueName=name, Attributes=dict(attributes))["QueueUrl"]
        log.info("created queue %s", url)
        return QueueState(url, _arn(sqs, url), CREATED)
    current = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"]).get("Attributes", {})
    changed = {k: v for k, v in attributes.items() if not _same_value(k, current.get(k), v)}
    if not changed:
        return QueueState(url, current.get("QueueArn") or _arn(sqs, url), UNCHANGED)
    sqs.set_queue_attributes(QueueUrl=url, Attributes=changed)
    log.info("queue %s: set %s", url, ", ".join(sorted(changed)))
    return QueueState(url, current.get("QueueArn") or _arn(sqs, url), UPDATED)


def _arn(sqs: SQSClient, url: str) -> str:
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["QueueArn"])
    return str(attrs["Attributes"]["QueueArn"])


def redrive_policy(dlq_arn: str, max_receive_count: int) -> str:
    """The queue's ``RedrivePolicy``: after ``max_receive_count`` receives a message moves to the DLQ."""
    if max_receive_count < 1:
        raise ValueError(f"max_receive_count must be at least 1, got {max_receive_count}")
    return json.dumps({"deadLetterTargetArn": dlq_arn, "maxReceiveCount": max_receive_count})


def s3_send_statement(queue_arn: str, bucket: str, account: str) -> dict[str, Any]:
    """The policy statement that lets S3 send ``bucket``'s notifications, from ``account`` only.

    ``aws:SourceArn`` names the bucket and ``aws:SourceAccount`` its owner, so no other
    bucket (also one of the same name re-created in another account) can write to the queue.
    """
    partition = queue_arn.split(":")[1] if queue_arn.startswith("arn:") else "aws"
    return {
        "Sid": POLICY_SID,
        "Effect": "Allow",
        "Principal": {"Service": "s3.amazonaws.com"},
        "Action": "sqs:SendMessage",
        "Resource": queue_arn,
        "Condition": {
            "ArnLike": {"aws:SourceArn": f"arn:{partition}:s3:::{bucket}"},
            "StringEquals": {"aws:SourceAccount": account},
        },
    }


def queue_policy(current: str | None, statement: dict[str, Any]) -> str:
    """Merge ``statement`` into the queue's current policy, replacing the statement of the same Sid.

    Args:
        current: The queue's ``Policy`` attribute (None or empty when it has none).
        statement: Our statement.

    Returns:
        The policy document as JSON.
    """
    document: dict[str, Any] = {"Version": "2012-10-17", "Statement": []}
    if current:
        try:
            loaded = json.loads(current)
        except ValueError:
            loaded = None
        if isinstance(loaded, dict):
            document = loaded
    statements = document.get("Statement", [])
    if isinstance(statements, dict):
        statements = [statements]
    others = [s for s in statements if not (isinstance(s, dict) and s.get("Sid") == statement["Sid"])]
    document["Statement"] = [*others, statement]
    return json.dumps(document)


def ensure_s3_send_policy(sqs: SQSClient, queue: QueueState, bucket: str, account: str) -> str:
    """Let S3 send ``bucket``'s notifications to ``queue`` (other policy statements are kept).

    Args:
        sqs: A boto3 SQS client.
        queue: The group's queue.
        bucket: The group's bucket.
        account: The bucket owner's account id.

    Returns:
        ``created`` (the queue had no statement of ours), ``updated`` or ``unchanged``.
    """
    attrs = sqs.get_queue_attributes(QueueUrl=queue.url, AttributeNames=["Policy"]).get("Attributes", {})
    current = attrs.get("Policy")
    wanted = queue_policy(current, s3_send_statement(queue.arn, bucket, account))
    if _same_value("Policy", current, wanted):
        return UNCHANGED
    sqs.set_queue_attributes(QueueUrl=queue.url, Attributes={"Policy": wanted})
    log.info("queue %s: S3 notifications of bucket %s (account %s) allowed", queue.url, bucket, account)
    return UPDATED if current and POLICY_SID in current else CREATED

"""Which queues ``silverline dlq`` works on: the group's queue and its dead-letter queue.

The DLQ is the one given explicitly, else the main queue's ``RedrivePolicy``
``deadLetterTargetArn`` resolved to a URL (``GetQueueUrl`` by name and account).
Anything missing is a :class:`jobs.config.ConfigError` that says how to fix it.
"""

from __future__ import annotations

import json
from dataclasses import dataclass
from typing import TYPE_CHECKING

from botocore.exceptions import ClientError

from jobs.config import ConfigError

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import QueueAttributeNameType

MISSING_QUEUE_CODES = frozenset({"AWS.SimpleQueueService.NonExistentQueue", "QueueDoesNotExist"})
_DEPTH_ATTRIBUTES: tuple[QueueAttributeNameType, ...] = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
)
_FIX_QUEUE = "set sqs.queue_url in the config (or SILVERLINE__SQS__QUEUE_URL) or pass --queue-url URL"


@dataclass(frozen=True)
class DlqQueues:
    """The queues of one ``dlq`` run.

    Attributes:
        dlq_url: The dead-letter queue.
        queue_url: The main queue (None when only the DLQ was given and none is configured).
    """

    dlq_url: str
    queue_url: str | None


@dataclass(frozen=True)
class Depth:
    """Approximate message counts of a queue.

    Attributes:
        visible: ``ApproximateNumberOfMessages``: messages waiting to be received.
        in_flight: ``ApproximateNumberOfMessagesNotVisible``: received by someone, not yet deleted.
    """

    visible: int
    in_flight: int


def is_missing_queue(exc: ClientError) -> bool:
    """Whether an SQS error says the queue does not exist."""
    return exc.response.get("Error", {}).get("Code") in MISSING_QUEUE_CODES


def parse_queue_arn(arn: str) -> tuple[str, str]:
    """Split an SQS queue ARN ``arn:<partition>:sqs:<region>:<account>:<name>``.

    Args:
        arn: The ARN.

    Returns:
        (account id, queue name).

    Raises:
        ConfigError: Not an SQS queue ARN.
    """
    parts = arn.split(":")
    if len(parts) != 6 or parts[0] != "arn" or parts[2] != "sqs" or not parts[4] or not parts[5]:
        raise ConfigError(f"deadLetterTargetArn {arn!r} is not an SQS queue ARN; pass --dlq-url URL")
    return parts[4], parts[5]


def dead_letter_arn(sqs: SQSClient, queue_url: str) -> str:
    """The ``deadLetterTargetArn`` of a queue's redrive policy.

    Args:
        sqs: SQS client.
        queue_url: The main queue.

    Returns:
        The DLQ's ARN.

    Raises:
        ConfigError: The queue does not exist or has no (valid) redrive policy.
    """
    try:
        response = sqs.get_queue_attributes(QueueUrl=queue_url, AttributeNames=["RedrivePolicy"])
    except ClientError as exc:
        if is_missing_queue(exc):
            raise ConfigError(f"queue {queue_url} does not exist; {_FIX_QUEUE}") from exc
        raise
    policy = response.get("Attributes", {}).get("RedrivePolicy")
    if not policy:
        raise ConfigError(
            f"queue {queue_url} has no RedrivePolicy, so it has no dead-letter queue; pass --dlq-url URL, "
            "or give the queue one with `silverline tenants create-group`"
        )
    try:
        arn = json.loads(policy).get("deadLetterTargetArn")
    except (ValueError, AttributeError):
        arn = None
    if not isinstance(arn, str) or not arn:
        raise ConfigError(
            f"queue {queue_url}: RedrivePolicy names no deadLetterTargetArn; pass --dlq-url URL"
        )
    return arn


def resolve_queues(sqs: SQSClient, queue_url: str | None, dlq_url: str | None) -> DlqQueues:
    """Find the DLQ: ``dlq_url`` when given, else the main queue's redrive target.

    Args:
        sqs: SQS client.
        queue_url: The main queue (``--queue-url`` or ``sqs.queue_url``), may be None.
        dlq_url: An explicit DLQ URL (``--dlq-url``), may be None.

    Returns:
        The queues; the DLQ is checked to exist.

    Raises:
        ConfigError: Neither URL given, no redrive policy, or the DLQ does not exist.
    """
    if not dlq_url:
        if not queue_url:
            raise ConfigError(
                f"no queue URL to find the dead-letter queue from: {_FIX_QUEUE}, or --dlq-url URL"
            )
        account, name = parse_queue_arn(dead_letter_arn(sqs, queue_url))
        try:
            dlq_url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
        except ClientError as exc:
            if is_missing_queue(exc):
                raise ConfigError(
                    f"dead-letter queue {name} (account {account}) named by the RedrivePolicy of {queue_url} "
                    "does not exist; create it (`silverline tenants create-group`) or pass --dlq-url URL"
                ) from exc
            raise
    dlq_depth(sqs, dlq_url)  # fails early, as a configuration error, when the DLQ is missing
    return DlqQueues(dlq_url=dlq_url, queue_url=queue_url)


def dlq_depth(sqs: SQSClient, dlq_url: str) -> Depth:
    """Approximate visible and in-flight messages of the dead-letter queue.

    Args:
        sqs: SQS client.
        dlq_url: The dead-letter queue.

    Returns:
        The counts.

    Raises:
        ConfigError: The queue does not exist.
    """
    try:
        response = sqs.get_queue_attributes(QueueUrl=dlq_url, AttributeNames=list(_DEPTH_ATTRIBUTES))
    except ClientError as exc:
        if is_missing_queue(exc):
            raise ConfigError(f"dead-letter queue {dlq_url} does not exist; check --dlq-url") from exc
        raise
    attributes = response.get("Attributes", {})
    return Depth(
        visible=int(attributes.get("ApproximateNumberOfMessages") or "0"),
        in_flight=int(attributes.get("ApproximateNumberOfMessagesNotVisible") or "0"),
    )

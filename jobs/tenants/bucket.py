"""A tenant group's bucket: create it, send its notifications to the group's queue, abort stale uploads.

Every step reads the bucket's current state first and writes only what differs,
so running it again changes nothing. Configuration owned by someone else (other
notification targets, other lifecycle rules) is kept: ours is found by its Id.
"""

from __future__ import annotations

import logging
from typing import TYPE_CHECKING, Any

from botocore.exceptions import ClientError

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

CREATED = "created"
UPDATED = "updated"
UNCHANGED = "unchanged"
SKIPPED = "skipped"

NOTIFIED_EVENTS = ("s3:ObjectCreated:*", "s3:ObjectRemoved:*")
_EVENT_FAMILIES = tuple(e.removesuffix("*") for e in NOTIFIED_EVENTS)
_NOTIFICATION_LISTS = ("QueueConfigurations", "TopicConfigurations", "LambdaFunctionConfigurations")
_MISSING_BUCKET = {"404", "NoSuchBucket", "NotFound"}
_NO_LIFECYCLE = {"NoSuchLifecycleConfiguration"}


class ProvisionError(RuntimeError):
    """The AWS resources are in a state provisioning must not change on its own."""


def _error_code(exc: ClientError) -> str:
    return str(exc.response.get("Error", {}).get("Code", ""))


def ensure_bucket(s3: S3Client, bucket: str, region: str) -> str:
    """Create the bucket in ``region`` unless it exists (then check it is in that region).

    Args:
        s3: A boto3 S3 client.
        bucket: The bucket name.
        region: The group's region (``LocationConstraint`` outside us-east-1).

    Returns:
        ``created`` or ``unchanged``.

    Raises:
        ProvisionError: The bucket exists in another region.
    """
    try:
        head = s3.head_bucket(Bucket=bucket)
    except ClientError as exc:
        if _error_code(exc) not in _MISSING_BUCKET:
            raise
    else:
        headers = head["ResponseMetadata"]["HTTPHeaders"]
        actual = head.get("BucketRegion") or headers.get("x-amz-bucket-region")
        if actual and actual != region:
            raise ProvisionError(
                f"bucket {bucket} exists in region {actual}, the group is set up for {region}"
            )
        return UNCHANGED
    if region == "us-east-1":
        s3.create_bucket(Bucket=bucket)
    else:
        location: Any = {"LocationConstraint": region}  # the stubs list regions as literals
        s3.create_bucket(Bucket=bucket, CreateBucketConfiguration=location)
    log.info("created bucket %s in %s", bucket, region)
    return CREATED


def notification_id(group: str) -> str:
    """The Id of the group's queue configuration in the bucket's notification configuration."""
    return f"silverline-{group}"


def _overlaps(config: dict[str, Any]) -> bool:
    """Whether S3 would reject ``config`` next to ours: a shared event type (ours filters no keys)."""
    return any(str(e).startswith(_EVENT_FAMILIES) for e in config.get("Events", []))


def _same_queue_config(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    rules = existing.get("Filter", {}).get("Key", {}).get("FilterRules", [])
    return (
        existing.get("QueueArn") == wanted["QueueArn"]
        and sorted(existing.get("Events", [])) == sorted(wanted["Events"])
        and not [r for r in rules if r.get("Value")]
    )


def merge_notifications(current: dict[str, Any], group: str, queue_arn: str) -> dict[str, Any] | None:
    """The bucket's notification configuration with ours added or replaced (None: ours is in place).

    Queue, topic, Lambda and EventBridge configurations of other Ids stay as they are;
    ours (Id ``silverline-<group>``, every create and delete, no key filter) is replaced,
    never duplicated.

    Args:
        current: The bucket's configuration (``GetBucketNotificationConfiguration``).
        group: The tenant group (names our configuration).
        queue_arn: The group's queue.

    Raises:
        ProvisionError: Another configuration already takes creates or deletes: S3 allows
            one destination per event type for overlapping keys, so ours cannot be added.
    """
    current = {k: v for k, v in current.items() if k != "ResponseMetadata"}
    ident = notification_id(group)
    wanted = {"Id": ident, "QueueArn": queue_arn, "Events": list(NOTIFIED_EVENTS)}
    for kind in _NOTIFICATION_LISTS:
        clash = [c for c in current.get(kind, []) if c.get("Id") != ident and _overlaps(c)]
        if clash:
            raise ProvisionError(
                f"{kind} {clash[0].get('Id', '(no Id)')!r} already receives "
                f"{', '.join(clash[0]['Events'])}; S3 sends an event type to one destination only. "
                "Move that target to EventBridge or to an SNS topic fanned out to both queues"
            )
    queues = current.get("QueueConfigurations", [])
    ours = [c for c in queues if c.get("Id") == ident]
    if len(ours) == 1 and _same_queue_config(ours[0], wanted):
        return None
    return {**current, "QueueConfigurations": [*(c for c in queues if c.get("Id") != ident), wanted]}


def ensure_notifications(s3: S3Client, bucket: str, group: str, queue_arn: str) -> str:
    """Send every create and delete in the bucket to the group's queue, keeping other targets.

    Args:
        s3: A boto3 S3 client.
        bucket: The bucket.
        group: The tenant group (names our configuration).
        queue_arn: The group's queue.

    Returns:
        ``created``, ``updated`` or ``unchanged`` (see :func:`merge_notifications`).

    Raises:
        ProvisionError: Another configuration takes creates or deletes already.
    """
    current: dict[str, Any] = dict(s3.get_bucket_notification_configuration(Bucket=bucket))
    try:
        merged: Any = merge_notifications(current, group, queue_arn)
    except ProvisionError as exc:
        raise ProvisionError(f"bucket {bucket}: {exc}") from exc
    if merged is None:
        return UNCHANGED
    ident = notification_id(group)
    existed = any(c.get("Id") == ident for c in current.get("QueueConfigurations", []))
    s3.put_bucket_notification_configuration(Bucket=bucket, NotificationConfiguration=merged)
    log.info("bucket %s: notifications %s go to %s", bucket, " and ".join(NOTIFIED_EVENTS), queue_arn)
    return UPDATED if existed else CREATED


LIFECYCLE_RULE_ID = "silverline-abort-incomplete-multipart-uploads"


def _abort_rule(days: int) -> dict[str, Any]:
    return {
        "ID": LIFECYCLE_RULE_ID,
        "Filter": {"Prefix": ""},
        "Status": "Enabled",
        "AbortIncompleteMultipartUpload": {"DaysAfterInitiation": days},
    }


def _same_rule(existing: dict[str, Any], wanted: dict[str, Any]) -> bool:
    prefix = existing.get("Filter", {}).get("Prefix", existing.get("Prefix", ""))
    extra_filters = set(existing.get("Filter", {})) - {"Prefix"}
    actions = set(existing) - {"ID", "Filter", "Prefix", "Status", "AbortIncompleteMultipartUpload"}
    return (
        prefix == ""
        and not extra_filters
        and not actions
        and existing.get("Status") == wanted["Status"]
        and existing.get("AbortIncompleteMultipartUpload") == wanted["AbortIncompleteMultipartUpload"]
    )


def ensure_abort_multipart_rule(s3: S3Client, bucket: str, days: int = 7) -> str:
    """Abort multipart uploads left incomplete for ``days`` days, keeping the bucket's other rules.

    Args:
        s3: A boto3 S3 client.
        bucket: The bucket.
        days: Days after initiation.

    Returns:
        ``created``, ``updated`` or ``unchanged``.
    """
    if days < 1:
        raise ValueError(f"days must be at least 1, got {days}")
    try:
        current: dict[str, Any] = dict(s3.get_bucket_lifecycle_configuration(Bucket=bucket))
    except ClientError as exc:
        if _error_code(exc) not in _NO_LIFECYCLE:
            raise
        current = {}
    rules: list[dict[str, Any]] = list(current.get("Rules", []))
    wanted = _abort_rule(days)
    ours = [r for r in rules if r.get("ID") == LIFECYCLE_RULE_ID]
    if len(ours) == 1 and _same_rule(ours[0], wanted):
        return UNCHANGED
    lifecycle: Any = {"Rules": [r for r in rules if r.get("ID") != LIFECYCLE_RULE_ID] + [wanted]}
    extra = {}
    if "TransitionDefaultMinimumObjectSize" in current:
        extra["TransitionDefaultMinimumObjectSize"] = current["TransitionDefaultMinimumObjectSize"]
    s3.put_bucket_lifecycle_configuration(
        Bucket=bucket,
        LifecycleConfiguration=lifecycle,
        **extra,
    )
    log.info("bucket %s: incomplete multipart uploads are aborted after %d days", bucket, days)
    return UPDATED if ours else CREATED

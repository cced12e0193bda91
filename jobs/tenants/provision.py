"""Onboarding: create a tenant group (bucket, queue, DLQ, policies, registry record) and its tenants.

Everything here is idempotent: a second run finds every resource in place and
changes nothing (each step reports ``created``, ``updated`` or ``unchanged``).

Tenants have no AWS resources of their own. S3 has no folders, so onboarding a
tenant writes only its registry record: a ``<tenant>/`` marker object would only
produce a notification the stream ignores. The prefix comes into being with the
tenant's first upload.
"""

from __future__ import annotations

import logging
from dataclasses import dataclass, replace
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any

from jobs.tenants.bucket import (
    CREATED,
    SKIPPED,
    UNCHANGED,
    UPDATED,
    ProvisionError,
    ensure_abort_multipart_rule,
    ensure_bucket,
    ensure_notifications,
    notification_id,
)
from jobs.tenants.queue import (
    DLQ_RETENTION_SECONDS,
    ensure_queue,
    ensure_s3_send_policy,
    queue_names,
    redrive_policy,
)
from jobs.tenants.registry import (
    ACTIVE,
    OFFBOARDED,
    RegistryError,
    Tenant,
    TenantGroup,
    TenantRegistry,
    check_tenant_name,
    set_tenant_status,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

__all__ = ["CREATED", "SKIPPED", "UNCHANGED", "UPDATED", "ProvisionError"]


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class GroupSpec:
    """What a tenant group consists of.

    Attributes:
        name: The group name (registry key, names the queues and our notification Id).
        bucket: The group's bucket.
        region: The region of the bucket and the queues.
        queue_name: The queue (default ``silverline-<name>``; the DLQ gets ``-dlq`` appended).
        max_receive_count: Receives before SQS moves a message to the DLQ.
        visibility_timeout: The queue's default visibility timeout in seconds.
        abort_multipart_days: Incomplete multipart uploads are aborted after this many days.
    """

    name: str
    bucket: str
    region: str
    queue_name: str | None = None
    max_receive_count: int = 5
    visibility_timeout: int = 120
    abort_multipart_days: int = 7

    @property
    def queue_names(self) -> tuple[str, str]:
        """The queue's and the dead-letter queue's names."""
        if self.queue_name:
            return self.queue_name, f"{self.queue_name}-dlq"
        return queue_names(self.name)


@dataclass(frozen=True)
class Change:
    """One step of provisioning: which resource, and whether it was created, updated or already there."""

    resource: str
    name: str
    action: str


@dataclass(frozen=True)
class GroupResult:
    """What :func:`create_group` found and did."""

    group: TenantGroup
    changes: tuple[Change, ...]

    @property
    def changed(self) -> bool:
        """Whether anything was created or updated."""
        return any(c.action in (CREATED, UPDATED) for c in self.changes)


def create_group(
    spec: GroupSpec,
    *,
    s3: S3Client,
    sqs: SQSClient,
    sts: Any,
    registry: TenantRegistry | None,
) -> GroupResult:
    """Create (or complete) a tenant group: bucket, queue + DLQ, queue policy, notifications, lifecycle.

    The queue and its policy come before the bucket's notification configuration:
    S3 checks that it may send to the queue when the configuration is written.

    Args:
        spec: The group.
        s3: A boto3 S3 client for the group's region.
        sqs: A boto3 SQS client for the group's region.
        sts: A boto3 STS client (the account that owns the bucket).
        registry: Where the group record goes (None: no registry, no record).

    Returns:
        The group record and the steps.

    Raises:
        ProvisionError: The bucket is in another region, or its notifications conflict with ours.
        RegistryError: The registry holds this group with another bucket.
    """
    existing = registry.get_group(spec.name) if registry is not None else None
    if existing is not None and existing.bucket != spec.bucket:
        raise RegistryError(
            f"tenant group {spec.name!r} is registered with bucket {existing.bucket}, not {spec.bucket}"
        )
    account = str(sts.get_caller_identity()["Account"])
    record, changes = _provision(spec, s3, sqs, account)
    if registry is None:
        return GroupResult(record, (*changes, Change("registry record", spec.name, SKIPPED)))
    if existing is not None:
        record = replace(record, status=existing.status, created_at=existing.created_at)
        if record == replace(existing, updated_at=record.updated_at):
            return GroupResult(existing, (*changes, Change("registry record", spec.name, UNCHANGED)))
    registry.put_group(record)
    return GroupResult(
        record, (*changes, Change("registry record", spec.name, UPDATED if existing else CREATED))
    )


def _provision(
    spec: GroupSpec, s3: S3Client, sqs: SQSClient, account: str
) -> tuple[TenantGroup, list[Change]]:
    """The AWS side of :func:`create_group`, in dependency order."""
    queue_name, dlq_name = spec.queue_names
    changes = [Change("bucket", spec.bucket, ensure_bucket(s3, spec.bucket, spec.region))]
    dlq = ensure_queue(sqs, dlq_name, {"MessageRetentionPeriod": str(DLQ_RETENTION_SECONDS)})
    changes.append(Change("dead-letter queue", dlq_name, dlq.action))
    redrive = redrive_policy(dlq.arn, spec.max_receive_count)
    queue = ensure_queue(
        sqs, queue_name, {"RedrivePolicy": redrive, "VisibilityTimeout": str(spec.visibility_timeout)}
    )
    changes.append(Change("queue", queue_name, queue.action))
    policy = ensure_s3_send_policy(sqs, queue, spec.bucket, account)
    changes.append(
        Change("queue policy", f"S3 may send from bucket {spec.bucket}, account {account}", policy)
    )
    notify = ensure_notifications(s3, spec.bucket, spec.name, queue.arn)
    changes.append(Change("notifications", f"{notification_id(spec.name)}: creates, deletes", notify))
    days = spec.abort_multipart_days
    lifecycle = ensure_abort_multipart_rule(s3, spec.bucket, days)
    changes.append(Change("lifecycle rule", f"abort incomplete multipart uploads after {days} d", lifecycle))
    record = TenantGroup(
        name=spec.name,
        bucket=spec.bucket,
        region=spec.region,
        queue_url=queue.url,
        queue_arn=queue.arn,
        dlq_url=dlq.url,
        dlq_arn=dlq.arn,
    )
    return record, changes


def require_group(registry: TenantRegistry, group: str) -> TenantGroup:
    """The group's record.

    Raises:
        RegistryError: The registry has no such group.
    """
    record = registry.get_group(group)
    if record is None:
        raise RegistryError(
            f"no tenant group {group!r} in the registry (create it with `tenants create-group`)"
        )
    return record


def require_tenant(registry: TenantRegistry, group: str, name: str) -> Tenant:
    """The tenant's record.

    Raises:
        RegistryError: The name is invalid or the group has no such tenant.
    """
    check_tenant_name(name)
    tenant = registry.get_tenant(group, name)
    if tenant is None:
        raise RegistryError(f"no tenant {name!r} in group {group!r}")
    return tenant


def create_tenant(registry: TenantRegistry, group: str, name: str) -> tuple[Tenant, str]:
    """Register tenant ``name`` in ``group`` (an existing record is kept, with its ``created_at``).

    A tenant that was offboarded is onboarded again (status ACTIVE); an active or
    suspended tenant is left as it is (``resume`` ends a suspension).

    Args:
        registry: The tenant registry.
        group: The tenant group; it must be registered.
        name: The tenant (one safe key segment: the prefix ``<name>/``).

    Returns:
        The record and ``created``, ``updated`` (re-onboarded) or ``unchanged``.

    Raises:
        RegistryError: Invalid name, or no such group.
    """
    check_tenant_name(name)
    record = require_group(registry, group)
    existing = registry.get_tenant(group, name)
    if existing is not None and existing.status != OFFBOARDED:
        return existing, UNCHANGED
    if existing is not None:
        tenant = replace(existing, status=ACTIVE, updated_at=_now())
    else:
        tenant = Tenant(name=name, group=group, bucket=record.bucket, region=record.region)
    registry.put_tenant(tenant)
    log.info("tenant %s of group %s: %s", name, group, "onboarded again" if existing else "created")
    return tenant, UPDATED if existing else CREATED


def change_status(registry: TenantRegistry, group: str, name: str, status: str) -> tuple[Tenant, bool]:
    """Set a tenant's status to ACTIVE or SUSPENDED (offboarding is :func:`jobs.tenants.purge.offboard`).

    Args:
        registry: The tenant registry.
        group: The tenant group.
        name: The tenant.
        status: ``ACTIVE`` or ``SUSPENDED``.

    Returns:
        The record and whether it changed.

    Raises:
        RegistryError: No such tenant, or it is offboarded (``create-tenant`` brings it back).
    """
    tenant = require_tenant(registry, group, name)
    if tenant.status == OFFBOARDED:
        raise RegistryError(f"tenant {name!r} is offboarded: onboard it again with `tenants create-tenant`")
    if tenant.status == status:
        return tenant, False
    updated = set_tenant_status(registry, group, name, status)
    log.info("tenant %s of group %s: %s -> %s", name, group, tenant.status, status)
    return updated, True

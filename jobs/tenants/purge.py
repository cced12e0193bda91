"""Offboarding: mark a tenant OFFBOARDED and, when asked, delete everything under its prefix.

The purge never leaves the tenant's prefix: S3 keys are listed with the prefix
``<tenant>/`` (the trailing slash keeps ``acme2/`` out of ``acme``'s purge) and
every key is checked again before it is deleted; the local lake directory is
``<lake>/<bucket>/<tenant>/`` and must resolve to a child of ``<lake>/<bucket>/``.
"""

from __future__ import annotations

import logging
import shutil
from collections.abc import Iterator, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

from jobs.tenants.provision import require_tenant
from jobs.tenants.registry import OFFBOARDED, Tenant, TenantRegistry, check_tenant_name, tenant_prefix
from jobs.tenants.registry import set_tenant_status as _set_status

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

DELETE_BATCH = 1000  # DeleteObjects maximum


class PurgeError(RuntimeError):
    """Some objects could not be deleted, or a path is not the tenant's own."""


@dataclass(frozen=True)
class OffboardResult:
    """What :func:`offboard` did."""

    tenant: Tenant
    status_changed: bool
    objects_deleted: int = 0
    directories_removed: tuple[Path, ...] = ()
    roots_not_purged: tuple[str, ...] = ()


def _versioned(s3: S3Client, bucket: str) -> bool:
    return s3.get_bucket_versioning(Bucket=bucket).get("Status") in ("Enabled", "Suspended")


def _listed(
    s3: S3Client, bucket: str, prefix: str, versioned: bool, page_size: int
) -> Iterator[list[dict[str, Any]]]:
    """Pages of ``{"Key": ..., ["VersionId": ...]}`` under ``prefix`` (every version when versioned)."""
    pages: Any = {"PageSize": page_size}
    if versioned:
        versions = s3.get_paginator("list_object_versions")
        for page in versions.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig=pages):
            entries = [*page.get("Versions", []), *page.get("DeleteMarkers", [])]
            yield [{"Key": e["Key"], "VersionId": e["VersionId"]} for e in entries]
    else:
        objects = s3.get_paginator("list_objects_v2")
        for listing in objects.paginate(Bucket=bucket, Prefix=prefix, PaginationConfig=pages):
            yield [{"Key": o["Key"]} for o in listing.get("Contents", [])]


def purge_prefix(s3: S3Client, bucket: str, prefix: str, *, page_size: int = DELETE_BATCH) -> int:
    """Delete every object (every version, in a versioned bucket) under ``prefix``.

    Args:
        s3: A boto3 S3 client.
        bucket: The bucket.
        prefix: One key segment and a slash, e.g. ``acme/``.
        page_size: Keys listed per page; each page is deleted in ``DeleteObjects`` calls of
            at most 1,000 keys.

    Returns:
        How many objects (versions) were deleted.

    Raises:
        PurgeError: The prefix is not one segment, or S3 refused some deletes.
    """
    if not prefix.endswith("/") or prefix.count("/") != 1:
        raise PurgeError(f"refusing to purge {prefix!r}: expected one key segment and a slash")
    check_tenant_name(prefix[:-1])
    deleted = 0
    for entries in _listed(s3, bucket, prefix, _versioned(s3, bucket), page_size):
        if any(not e["Key"].startswith(prefix) for e in entries):  # S3 listed outside the prefix: stop
            raise PurgeError(f"listing {prefix!r} in {bucket} returned keys outside it; nothing more deleted")
        for start in range(0, len(entries), DELETE_BATCH):
            batch: Any = entries[start : start + DELETE_BATCH]
            result = s3.delete_objects(Bucket=bucket, Delete={"Objects": batch, "Quiet": True})
            errors = result.get("Errors", [])
            if errors:
                first = errors[0]
                raise PurgeError(
                    f"{len(errors)} of {len(batch)} deletes under s3://{bucket}/{prefix} failed, e.g. "
                    f"{first.get('Key')}: {first.get('Code')} {first.get('Message')}"
                )
            deleted += len(batch)
    log.info("deleted %d objects under s3://%s/%s", deleted, bucket, prefix)
    return deleted


def purge_local_dir(lake: Path, bucket: str, tenant: str) -> Path | None:
    """Remove ``<lake>/<bucket>/<tenant>/`` (raw mirror, silver and quarantine tables).

    Returns:
        The directory removed, None when there was none.

    Raises:
        PurgeError: The directory resolves outside ``<lake>/<bucket>/`` (a symbolic link).
    """
    bucket_dir = (lake / bucket).resolve()
    target = bucket_dir / check_tenant_name(tenant)
    if not target.exists() and not target.is_symlink():
        return None
    if target.is_symlink() or target.resolve().parent != bucket_dir:
        raise PurgeError(f"refusing to remove {target}: it is a link or leaves {bucket_dir}")
    shutil.rmtree(target)
    log.info("removed %s", target)
    return target


def _local_dir(uri: str) -> Path | None:
    return Path(url2pathname(urlsplit(uri).path)) if uri.startswith("file:") else None


def offboard(
    registry: TenantRegistry,
    group: str,
    name: str,
    *,
    purge: bool = False,
    s3: S3Client | None = None,
    lake_roots: Sequence[str] = (),
) -> OffboardResult:
    """Mark a tenant OFFBOARDED (the stream drops its events); with ``purge``, delete its data.

    The status changes first, so nothing new is applied while the data goes. Purging an
    already offboarded tenant again finishes a purge that failed half way.

    Args:
        registry: The tenant registry.
        group: The tenant group.
        name: The tenant.
        purge: Delete every object under ``<tenant>/`` in the group's bucket and the tenant's
            directory under each local lake root.
        s3: A boto3 S3 client (needed with ``purge``).
        lake_roots: Lake root URIs (``lake.root``, ``lake.objects_root``); ``file:`` roots are purged,
            others are reported back.

    Returns:
        What changed.

    Raises:
        RegistryError: No such tenant.
        PurgeError: Some data could not be deleted.
    """
    tenant = require_tenant(registry, group, name)
    changed = tenant.status != OFFBOARDED
    if changed:
        tenant = _set_status(registry, group, name, OFFBOARDED)
        log.info("tenant %s of group %s offboarded", name, group)
    if not purge:
        return OffboardResult(tenant, changed)
    if s3 is None:
        raise ValueError("purging needs an S3 client")
    deleted = purge_prefix(s3, tenant.bucket, tenant_prefix(tenant.name))
    removed: list[Path] = []
    skipped: list[str] = []
    for root in dict.fromkeys(lake_roots):
        lake = _local_dir(root)
        if lake is None:
            skipped.append(root)
            continue
        gone = purge_local_dir(lake, tenant.bucket, tenant.name)
        if gone is not None:
            removed.append(gone)
    return OffboardResult(tenant, changed, deleted, tuple(removed), tuple(skipped))

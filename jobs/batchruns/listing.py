"""List a tenant group's raw objects: S3 ListObjectsV2 (paginated) or the local lake directory.

Only ``<tenant>/raw/<dataset>/...`` is listed. Locally the eTag is the MD5 of the
file (what S3 reports for a single-part upload, and what the reader checks).
"""

from __future__ import annotations

import hashlib
import os
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import unquote, urlparse

from jobs.config import ConfigError, SilverlineConfig

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

RAW = "raw"


@dataclass(frozen=True)
class RawObject:
    """One listed object."""

    key: str
    size: int
    etag: str
    last_modified: datetime


def normalise_etag(etag: str | None) -> str | None:
    """S3 lists eTags in quotes; notifications carry them bare."""
    return etag.strip().strip('"') if etag else etag


def _file_md5(path: Path) -> str:
    digest = hashlib.md5(usedforsecurity=False)
    with open(path, "rb") as handle:
        for block in iter(lambda: handle.read(1 << 20), b""):
            digest.update(block)
    return digest.hexdigest()


class LakeLister:
    """Lists raw objects of one bucket, locally or through the S3 API."""

    def __init__(self, config: SilverlineConfig, s3_client: S3Client | None = None) -> None:
        """Create the lister for ``config.group.bucket`` under ``config.objects_root``.

        Args:
            config: The job configuration.
            s3_client: For an ``s3://`` objects root (default: one built from ``aws``).

        Raises:
            ConfigError: The objects root is neither ``file://`` nor ``s3://``.
        """
        self.bucket = config.group.bucket
        root = urlparse(config.objects_root)
        self._local: Path | None = None
        self._s3: Any = None
        if root.scheme == "file":
            self._local = Path(unquote(root.path)) / self.bucket
        elif root.scheme in ("s3", "s3a"):
            from jobs.bridge.landing import s3_client_for

            self._s3 = s3_client or s3_client_for(config)
        else:
            raise ConfigError(f"lake.objects_root: needs a file:// or s3:// URI, got {config.objects_root!r}")

    @property
    def where(self) -> str:
        """What is listed, for messages."""
        return str(self._local) if self._local is not None else f"s3://{self.bucket}/"

    def tenants(self) -> list[str]:
        """Tenants with a ``raw/`` prefix (top-level prefixes of the bucket)."""
        if self._local is not None:
            if not self._local.is_dir():
                return []
            return sorted(p.name for p in self._local.iterdir() if (p / RAW).is_dir())
        found: list[str] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Delimiter="/"):
            found.extend(item["Prefix"].rstrip("/") for item in page.get("CommonPrefixes", []))
        return sorted(found)

    def objects(
        self,
        tenants: Sequence[str],
        dataset: str | None = None,
        on_page: Callable[[int], None] | None = None,
    ) -> Iterator[RawObject]:
        """Every raw object of ``tenants`` (one dataset, or all).

        Args:
            tenants: The tenants to list.
            dataset: Only this dataset.
            on_page: Called with the number of objects of each page (progress).
        """
        for tenant in tenants:
            prefix = f"{tenant}/{RAW}/" + (f"{dataset}/" if dataset else "")
            if self._local is not None:
                yield from self._local_objects(prefix, on_page)
            else:
                yield from self._s3_objects(prefix, on_page)

    def _local_objects(self, prefix: str, on_page: Callable[[int], None] | None) -> Iterator[RawObject]:
        assert self._local is not None
        base = self._local / prefix
        if not base.is_dir():
            return
        for directory, _, files in os.walk(base):
            listed = []
            for name in sorted(files):
                path = Path(directory) / name
                stat = path.stat()
                key = path.relative_to(self._local).as_posix()
                modified = datetime.fromtimestamp(stat.st_mtime, tz=UTC)
                listed.append(RawObject(key, stat.st_size, _file_md5(path), modified))
            if on_page is not None and listed:
                on_page(len(listed))
            yield from listed

    def _s3_objects(self, prefix: str, on_page: Callable[[int], None] | None) -> Iterator[RawObject]:
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self.bucket, Prefix=prefix):
            contents = page.get("Contents", [])
            if on_page is not None and contents:
                on_page(len(contents))
            for item in contents:
                modified = item["LastModified"]
                yield RawObject(
                    key=item["Key"],
                    size=int(item.get("Size", 0)),
                    etag=normalise_etag(item.get("ETag")) or "",
                    last_modified=modified if modified.tzinfo else modified.replace(tzinfo=UTC),
                )

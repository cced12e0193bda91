"""Bronze stores: make a file of landed messages durable, atomically.

Locally the bronze log is a directory: a file is written to ``bronze/_tmp/``,
flushed and fsynced, renamed into place and the directory fsynced, so readers
(Spark's file source ignores ``_``-prefixed directories) only ever see whole
files. On S3 a file is one PUT, which is atomic and durable once it returns.
"""

from __future__ import annotations

import logging
import os
import threading
from pathlib import Path
from typing import TYPE_CHECKING, Protocol, cast
from urllib.parse import unquote, urlparse

import boto3

from jobs.config import ConfigError, SilverlineConfig

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

TMP_DIR = "_tmp"


class BronzeStore(Protocol):
    """Where bronze files go. ``write`` returns only once the file is durable."""

    @property
    def uri(self) -> str:
        """The bronze log's URI (ends with ``/``)."""
        ...

    def write(self, name: str, data: bytes) -> str:
        """Store ``data`` durably and atomically under ``name``.

        Args:
            name: Path relative to the bronze log, e.g. ``dt=2026-11-23/x.jsonl``.
            data: The whole file.

        Returns:
            The file's URI.
        """
        ...


class FileStore(Protocol):
    """A whole-file store under the ops root (:func:`open_store` gives one): staging, intents."""

    def write(self, name: str, data: bytes) -> str: ...  # noqa: D102
    def names(self) -> list[str]: ...  # noqa: D102
    def read(self, name: str) -> bytes: ...  # noqa: D102
    def delete(self, name: str) -> None: ...  # noqa: D102


def _fsync_dir(path: Path) -> None:
    fd = os.open(path, os.O_RDONLY | getattr(os, "O_DIRECTORY", 0))
    try:
        os.fsync(fd)
    finally:
        os.close(fd)


class LocalBronzeStore:
    """A bronze log in a local directory (``file://`` ops root)."""

    def __init__(self, root: Path) -> None:
        """Create the store.

        Args:
            root: The bronze directory; created on first write.
        """
        self._root = root
        self._known_dirs: set[Path] = set()
        self._lock = threading.Lock()

    @property
    def uri(self) -> str:
        """The bronze directory as a ``file://`` URI."""
        return self._root.resolve().as_uri() + "/"

    def _ensure_dir(self, path: Path) -> None:
        with self._lock:
            if path in self._known_dirs:
                return
            path.mkdir(parents=True, exist_ok=True)
            _fsync_dir(path.parent)  # make the new directory's entry durable too
            self._known_dirs.add(path)

    def write(self, name: str, data: bytes) -> str:
        """Write to ``_tmp``, fsync, rename into place, fsync the directory.

        Args:
            name: Relative file name (see :func:`jobs.bridge.records.bronze_file_name`).
            data: The whole file.

        Returns:
            The file's ``file://`` URI.
        """
        final = self._root / name
        tmp = self._root / TMP_DIR / f"{final.name}.tmp"
        self._ensure_dir(tmp.parent)
        self._ensure_dir(final.parent)
        try:
            with open(tmp, "wb") as handle:
                handle.write(data)
                handle.flush()
                os.fsync(handle.fileno())
            os.replace(tmp, final)
        except BaseException:
            tmp.unlink(missing_ok=True)
            raise
        _fsync_dir(final.parent)
        return final.resolve().as_uri()

    def names(self) -> list[str]:
        """Names of the whole files in the store (relative, sorted; ``_tmp`` excluded)."""
        if not self._root.is_dir():
            return []
        return sorted(
            str(path.relative_to(self._root))
            for path in self._root.rglob("*")
            if path.is_file() and TMP_DIR not in path.relative_to(self._root).parts
        )

    def read(self, name: str) -> bytes:
        """The whole file ``name``."""
        return (self._root / name).read_bytes()

    def delete(self, name: str) -> None:
        """Remove ``name`` (no error when it is already gone)."""
        (self._root / name).unlink(missing_ok=True)


class S3BronzeStore:
    """A bronze log under an S3 prefix (``s3://`` ops root): one PUT per file."""

    def __init__(self, bucket: str, prefix: str, s3_client: S3Client) -> None:
        """Create the store.

        Args:
            bucket: The ops bucket.
            prefix: Key prefix of the bronze log, ending with ``/``.
            s3_client: A boto3 S3 client.
        """
        self._bucket = bucket
        self._prefix = prefix
        self._s3 = s3_client

    @property
    def uri(self) -> str:
        """The bronze prefix as an ``s3://`` URI."""
        return f"s3://{self._bucket}/{self._prefix}"

    def write(self, name: str, data: bytes) -> str:
        """Put the whole file in one request.

        Args:
            name: Relative key (see :func:`jobs.bridge.records.bronze_file_name`).
            data: The whole file.

        Returns:
            The object's ``s3://`` URI.
        """
        key = self._prefix + name
        self._s3.put_object(Bucket=self._bucket, Key=key, Body=data, ContentType="application/x-ndjson")
        return f"s3://{self._bucket}/{key}"

    def names(self) -> list[str]:
        """Names of the objects under the prefix (relative, sorted), all pages."""
        found: list[str] = []
        paginator = self._s3.get_paginator("list_objects_v2")
        for page in paginator.paginate(Bucket=self._bucket, Prefix=self._prefix):
            found.extend(item["Key"][len(self._prefix) :] for item in page.get("Contents", []))
        return sorted(found)

    def read(self, name: str) -> bytes:
        """The whole object ``name``."""
        return self._s3.get_object(Bucket=self._bucket, Key=self._prefix + name)["Body"].read()

    def delete(self, name: str) -> None:
        """Remove ``name`` (S3 does not fail on a missing key)."""
        self._s3.delete_object(Bucket=self._bucket, Key=self._prefix + name)


def bronze_uri(config: SilverlineConfig) -> str:
    """The bronze log's URI for a configuration: ``<ops_root>bronze/``.

    Args:
        config: The job configuration.

    Returns:
        The URI, ending with ``/``.
    """
    return f"{config.ops_root}bronze/"


def open_bronze_store(config: SilverlineConfig, s3_client: S3Client | None = None) -> BronzeStore:
    """Open the bronze store named by ``config.ops_root``.

    Args:
        config: The job configuration.
        s3_client: Optional S3 client for an ``s3://`` ops root (default: one built
            from ``aws.region`` and ``aws.endpoint_url``).

    Returns:
        A local or S3 store.

    Raises:
        ConfigError: The ops root is neither ``file://`` nor ``s3://``.
    """
    return open_store(bronze_uri(config), config, s3_client)


def s3_client_for(config: SilverlineConfig) -> S3Client:
    """A boto3 S3 client for ``aws.region`` and ``aws.endpoint_url`` (e.g. moto's server)."""
    session = boto3.session.Session()
    return session.client("s3", region_name=config.aws.region, endpoint_url=config.aws.endpoint_url)


def open_store(uri: str, config: SilverlineConfig, s3_client: S3Client | None = None) -> BronzeStore:
    """Open a whole-file store (durable rename locally, one PUT on S3) at ``uri``.

    Args:
        uri: A ``file://`` or ``s3://`` directory URI under the ops root.
        config: The job configuration (AWS region and endpoint).
        s3_client: Optional S3 client (default: one built from ``aws``).

    Returns:
        A local or S3 store.

    Raises:
        ConfigError: The URI is neither ``file://`` nor ``s3://``.
    """
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return LocalBronzeStore(Path(unquote(parsed.path)))
    if parsed.scheme in ("s3", "s3a"):
        return S3BronzeStore(parsed.netloc, parsed.path.lstrip("/"), s3_client or s3_client_for(config))
    raise ConfigError(f"lake.ops_root: needs a file:// or s3:// URI, got {config.ops_root!r}")


def open_file_store(uri: str, config: SilverlineConfig, s3_client: S3Client | None = None) -> FileStore:
    """:func:`open_store`, typed as what both kinds of store are: a :class:`FileStore`."""
    return cast(FileStore, open_store(uri, config, s3_client))

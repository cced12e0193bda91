"""Fetch the bytes of the object version an event names, from the local lake or the S3 API.

An I/O adapter of :mod:`jobs.objects.reader`. A version that is gone or changed raises
:class:`UnreadableError` with status ``superseded`` (a later event covers it,
R9); every other storage problem raises as is, so the caller can retry.
"""

from __future__ import annotations

import errno
import hashlib
import os
import re
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import boto3
from botocore.config import Config as BotoConfig
from botocore.exceptions import ClientError

from jobs.objects.formats import DEFAULT_OBJECT_LIMIT

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

_PLAIN_MD5 = re.compile(r"[0-9a-fA-F]{32}")
#: GetObject error codes that mean a later event superseded this one; every other error raises
#: (NoSuchBucket, AccessDenied, throttling, ...). "404"/"412" are what botocore reports without a body.
_SUPERSEDED_CODES = {
    "NoSuchKey": "object_gone",
    "NotFound": "object_gone",
    "404": "object_gone",
    "NoSuchVersion": "version_gone",
    "PreconditionFailed": "etag_changed",
    "412": "etag_changed",
}


class UnreadableError(Exception):
    """An object that yields no rows, with the outcome it gets."""

    def __init__(self, status: str, reason: str, detail: str) -> None:
        super().__init__(f"{status} {reason}: {detail}")
        self.status = status
        self.reason = reason
        self.detail = detail


def _too_big(size: int, limit: int) -> UnreadableError:
    return UnreadableError(
        "quarantined", "object_bytes_limit", f"{size:,} bytes, over stream.max_object_bytes ({limit:,})"
    )


def read_file(
    path: str, key: str, etag: str | None, *, bucket_dir: str, max_bytes: int = DEFAULT_OBJECT_LIMIT
) -> bytes:
    """Bytes of a lake file; a missing file is superseded, a missing bucket directory raises.

    Args:
        path: The file's local path (``bucket_dir`` joined with the key).
        key: The object key (checked for path tricks).
        etag: The eTag the event names; checked when it is a single-part MD5.
        bucket_dir: The bucket's directory.
        max_bytes: A larger file is quarantined unread (``object_bytes_limit``).

    Returns:
        The bytes.

    Raises:
        UnreadableError: Unsafe key, a key the local filesystem cannot hold or a file over
            ``max_bytes`` (quarantined), file gone or changed (superseded).
        FileNotFoundError: The bucket directory does not exist (a wrong root).
        OSError: The file cannot be read.
    """
    with open_file(path, key, etag, bucket_dir=bucket_dir, max_bytes=max_bytes) as body:
        return body.read_all()


def open_file(
    path: str, key: str, etag: str | None, *, bucket_dir: str, max_bytes: int = DEFAULT_OBJECT_LIMIT
) -> Body:
    """A lake file opened for reading; :func:`read_file` says what raises (the eTag check at its end)."""
    if any(part in ("", ".", "..") for part in key.split("/")):
        raise UnreadableError("quarantined", "unsafe_key", f"key {key!r} has empty, '.' or '..' segments")
    try:
        file = open(path, "rb")  # noqa: SIM115 - the Body closes it
    except (FileNotFoundError, NotADirectoryError, IsADirectoryError) as exc:
        if not os.path.isdir(bucket_dir):  # a wrong root must not turn every event into "superseded"
            raise FileNotFoundError(f"bucket directory {bucket_dir} does not exist") from exc
        raise UnreadableError("superseded", "object_gone", str(exc)) from exc
    except OSError as exc:
        if exc.errno != errno.ENAMETOOLONG:
            raise
        # Legal on S3 (a segment may be up to 1,024 bytes), impossible on a local filesystem.
        raise UnreadableError(
            "quarantined",
            "key_too_long_for_filesystem",
            f"a segment of the key is too long here: {exc.strerror}",
        ) from exc
    size = os.fstat(file.fileno()).st_size
    if size > max_bytes:
        file.close()
        raise _too_big(size, max_bytes)
    return Body(file, size, max_bytes, plain_md5(etag))


def get_object(
    client: S3Client,
    uri: str,
    version_id: str | None,
    etag: str | None,
    *,
    max_bytes: int = DEFAULT_OBJECT_LIMIT,
) -> tuple[bytes, str | None, str | None]:
    """Bytes of the object version the event names (R9): by version id, else guarded by eTag.

    Args:
        client: The S3 client.
        uri: The object's ``s3://`` URI.
        version_id: The version the event names, if any.
        etag: The eTag the event names, if any.
        max_bytes: A larger object is quarantined without reading its body (``object_bytes_limit``).

    Returns:
        The bytes, and the version id and eTag S3 served (None when it names none; a bucket
        without versioning has no version ids).

    Raises:
        UnreadableError: The version is gone or the object changed (superseded), or it is
            over ``max_bytes`` (quarantined).
        botocore.exceptions.ClientError: Any other S3 error.
    """
    body, served_version, served_etag = open_object(client, uri, version_id, etag, max_bytes=max_bytes)
    with body:
        return body.read_all(), served_version, served_etag


def open_object(
    client: S3Client,
    uri: str,
    version_id: str | None,
    etag: str | None,
    *,
    max_bytes: int = DEFAULT_OBJECT_LIMIT,
) -> tuple[Body, str | None, str | None]:
    """The object version the event names, opened for reading; :func:`get_object` says what raises."""
    bucket, _, key = uri.removeprefix("s3://").partition("/")  # not urlsplit: keys may hold '?', '#'
    try:
        if version_id is not None:
            response = client.get_object(Bucket=bucket, Key=key, VersionId=version_id)
        elif etag:
            response = client.get_object(Bucket=bucket, Key=key, IfMatch=etag.strip('"'))
        else:
            response = client.get_object(Bucket=bucket, Key=key)
    except ClientError as exc:
        reason = _SUPERSEDED_CODES.get(exc.response.get("Error", {}).get("Code", ""))
        if reason is None:
            raise
        raise UnreadableError("superseded", reason, str(exc)) from exc
    size = int(response.get("ContentLength") or 0)
    if size > max_bytes:
        response["Body"].close()
        raise _too_big(size, max_bytes)
    served = response.get("VersionId")
    body = Body(response["Body"], size, max_bytes, None)  # S3 checked the version or eTag
    return body, (served if served and served != "null" else None), response.get("ETag")


class Body:
    """An object's bytes as a stream: at most ``max_bytes`` of them, its eTag checked at the end.

    ``read(n)`` may be called by a decompressor or by the block reader of
    :mod:`jobs.objects.formats`; either way the object is never held whole.
    """

    def __init__(self, raw: Any, size: int, max_bytes: int, md5: str | None) -> None:
        """Wrap an open stream.

        Args:
            raw: The file or S3 body (closed by :meth:`close`).
            size: Its size as stored (the file's, S3's ``Content-Length``).
            max_bytes: Reading past this raises ``object_bytes_limit`` (the object grew).
            md5: The single-part MD5 the event names; checked when the stream ends.
        """
        self.size = size
        self._raw = raw
        self._max_bytes = max_bytes
        self._read = 0
        self._md5 = md5
        self._hash = hashlib.md5(usedforsecurity=False) if md5 is not None else None

    def read(self, size: int = -1) -> bytes:
        """Up to ``size`` bytes (-1: the rest as stored); ``b""`` at the end.

        Raises:
            UnreadableError: Past ``max_bytes`` (quarantined), or at the end the content
                does not have the eTag the event named (superseded).
        """
        if size is None or size < 0:  # what is left as stored (never a buffer of max_bytes)
            size = max(self.size - self._read, 1 << 16)
        data: bytes = self._raw.read(size)
        self._read += len(data)
        if self._read > self._max_bytes:  # it grew while being read
            raise _too_big(self._read, self._max_bytes)
        if self._hash is not None:
            self._hash.update(data)
            if not data and self._hash.hexdigest() != self._md5:
                detail = f"file content no longer has eTag {self._md5}"
                raise UnreadableError("superseded", "etag_changed", detail)
        return data

    def read_all(self) -> bytes:
        """Every byte (for objects known to be small), the eTag checked at the end."""
        parts = []
        while chunk := self.read():
            parts.append(chunk)
        return b"".join(parts)  # one part (the usual case) is not copied

    def close(self) -> None:
        """Close the underlying stream."""
        self._raw.close()

    def __enter__(self) -> Body:
        return self

    def __exit__(self, *exc: object) -> None:
        self.close()


def plain_md5(etag: str | None) -> str | None:
    """The eTag in lower case if it is a single-part MD5, else None (not checkable locally)."""
    if etag is None:
        return None
    stripped = etag.strip().strip('"')
    return stripped.lower() if _PLAIN_MD5.fullmatch(stripped) else None


def file_uri_to_path(uri: str) -> str:
    """Local path of a ``file:`` URI (percent-decoded)."""
    return url2pathname(urlsplit(uri).path)


def default_s3_client(max_workers: int) -> S3Client:
    """A new S3 client with a connection pool for ``max_workers`` concurrent reads."""
    config = BotoConfig(max_pool_connections=max(10, max_workers), retries={"mode": "standard"})
    return boto3.session.Session().client("s3", config=config)

"""The upload path into ``<tenant>/raw/<dataset>/``: presigned PUT URLs, scoped credentials, managed uploads.

Presigned URLs and credentials are secrets for as long as they are valid: nothing
here logs them; the commands print them on stdout as their output, and only there.
"""

from __future__ import annotations

import json
import logging
import mimetypes
import re
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from boto3.s3.transfer import TransferConfig
from botocore.config import Config

from jobs.events.model import CONTROL_CHARS_RE, MAX_KEY_BYTES, NAME_RE
from jobs.tenants.registry import tenant_prefix

if TYPE_CHECKING:
    from collections.abc import Callable

    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

MAX_PRESIGN_SECONDS = 7 * 24 * 3600  # SigV4 presigned URLs live at most a week
MIN_SESSION_SECONDS, MAX_SESSION_SECONDS = 900, 43200  # AssumeRole DurationSeconds bounds
UPLOAD_ACTIONS = ("s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts")
_DATASET = re.compile(NAME_RE)
_CONTROL = re.compile(CONTROL_CHARS_RE)


class UploadError(ValueError):
    """An upload request names an unsafe key, a bad content type or an impossible duration."""


def s3_client(region: str, endpoint_url: str | None = None) -> S3Client:
    """An S3 client that presigns with Signature Version 4 (botocore may otherwise use SigV2).

    Args:
        region: The bucket's region.
        endpoint_url: Another endpoint, e.g. moto's server.
    """
    config = Config(signature_version="s3v4")
    return boto3.client("s3", region_name=region, endpoint_url=endpoint_url, config=config)


def check_dataset(name: str) -> str:
    """A dataset is the third key segment and becomes a table name: the stream's name rule applies."""
    if not _DATASET.fullmatch(name):
        raise UploadError(
            f"invalid dataset {name!r}: use 1-63 letters, digits, '_' or '-', starting with a letter or digit"
        )
    return name


def check_filename(name: str) -> str:
    """A file name is one key segment: not empty, no '/', no '..', no control characters."""
    if not name or "/" in name or ".." in name or name == "." or _CONTROL.search(name):
        raise UploadError(f"invalid file name {name!r}: one path segment, no '/', '..' or control characters")
    return name


def raw_key(tenant: str, dataset: str, filename: str) -> str:
    """The key of an upload: ``<tenant>/raw/<dataset>/<filename>``.

    Raises:
        UploadError: A segment is unsafe or the key is longer than S3 allows.
    """
    key = f"{tenant_prefix(tenant)}raw/{check_dataset(dataset)}/{check_filename(filename)}"
    if len(key.encode("utf-8")) > MAX_KEY_BYTES:
        raise UploadError(f"key {key[:60]}... is longer than {MAX_KEY_BYTES} bytes")
    return key


def content_type_for(filename: str, content_type: str | None = None) -> str:
    """``content_type`` checked, else one guessed from the file name (``application/octet-stream``)."""
    value = content_type or mimetypes.guess_type(filename)[0] or "application/octet-stream"
    if "/" not in value or _CONTROL.search(value) or len(value) > 255:
        raise UploadError(f"invalid content type {value!r}")
    return value


def presign_put(
    s3: S3Client,
    bucket: str,
    tenant: str,
    dataset: str,
    filename: str,
    content_type: str,
    expires: int = 3600,
) -> str:
    """A presigned PUT URL for exactly ``<tenant>/raw/<dataset>/<filename>``, with the content type bound.

    The key and the ``Content-Type`` header are part of the signature: the URL uploads
    that one object, sent with that header, until it expires. Use a client from
    :func:`s3_client` (Signature Version 4).

    Args:
        s3: A boto3 S3 client.
        bucket: The tenant's bucket.
        tenant: The tenant.
        dataset: The dataset.
        filename: The object's name in the dataset's raw prefix.
        content_type: The ``Content-Type`` the upload must send.
        expires: Seconds the URL is valid (at most a week).

    Returns:
        The URL (a secret: do not log it).
    """
    if not 1 <= expires <= MAX_PRESIGN_SECONDS:
        raise UploadError(f"expires must be 1..{MAX_PRESIGN_SECONDS} seconds, got {expires}")
    key = raw_key(tenant, dataset, filename)
    params = {"Bucket": bucket, "Key": key, "ContentType": content_type_for(filename, content_type)}
    url: str = s3.generate_presigned_url("put_object", Params=params, ExpiresIn=expires, HttpMethod="PUT")
    log.info("presigned a PUT of s3://%s/%s valid for %d s", bucket, key, expires)
    return url


def upload_session_policy(bucket: str, tenant: str, partition: str = "aws") -> dict[str, Any]:
    """The inline session policy of tenant credentials: write and list ``<tenant>/raw/`` only.

    A session policy can only narrow what the role itself may do.
    """
    raw = f"{tenant_prefix(tenant)}raw/"
    return {
        "Version": "2012-10-17",
        "Statement": [
            {
                "Sid": "UploadRaw",
                "Effect": "Allow",
                "Action": list(UPLOAD_ACTIONS),
                "Resource": f"arn:{partition}:s3:::{bucket}/{raw}*",
            },
            {
                "Sid": "ListRaw",
                "Effect": "Allow",
                "Action": "s3:ListBucket",
                "Resource": f"arn:{partition}:s3:::{bucket}",
                "Condition": {"StringLike": {"s3:prefix": [f"{raw}*"]}},
            },
        ],
    }


def tenant_credentials(
    sts: Any, role_arn: str, tenant: str, bucket: str, duration: int = 3600
) -> dict[str, str]:
    """Temporary credentials that can only upload into ``<tenant>/raw/`` (AssumeRole + session policy).

    Args:
        sts: A boto3 STS client.
        role_arn: The upload role (``registry.upload_role_arn``).
        tenant: The tenant.
        bucket: The tenant's bucket.
        duration: Seconds the credentials are valid (900-43200, and at most the role's maximum).

    Returns:
        ``AccessKeyId``, ``SecretAccessKey``, ``SessionToken`` and ``Expiration`` (ISO 8601).
        Secrets: do not log them.
    """
    if not MIN_SESSION_SECONDS <= duration <= MAX_SESSION_SECONDS:
        raise UploadError(f"duration must be {MIN_SESSION_SECONDS}..{MAX_SESSION_SECONDS} s, got {duration}")
    partition = role_arn.split(":")[1] if role_arn.startswith("arn:") else "aws"
    policy = upload_session_policy(bucket, tenant, partition)
    response = sts.assume_role(
        RoleArn=role_arn,
        RoleSessionName=f"silverline-{tenant}"[:64],
        Policy=json.dumps(policy, separators=(",", ":")),
        DurationSeconds=duration,
    )
    creds = response["Credentials"]
    expiration = creds["Expiration"]
    log.info("issued upload credentials for tenant %s until %s", tenant, expiration)
    return {
        "AccessKeyId": str(creds["AccessKeyId"]),
        "SecretAccessKey": str(creds["SecretAccessKey"]),
        "SessionToken": str(creds["SessionToken"]),
        "Expiration": expiration.isoformat() if hasattr(expiration, "isoformat") else str(expiration),
    }


@contextmanager
def _progress(total: int, enabled: bool) -> Iterator[Callable[[str], Callable[[int], None]]]:
    """Yield a factory of per-file byte callbacks that drive one rich progress bar (bytes, on stderr)."""
    if not enabled:
        yield lambda _name: lambda _n: None
        return
    from rich.console import Console
    from rich.progress import (
        BarColumn,
        DownloadColumn,
        Progress,
        TextColumn,
        TimeRemainingColumn,
        TransferSpeedColumn,
    )

    columns = (
        TextColumn("{task.description}"),
        BarColumn(),
        DownloadColumn(),
        TransferSpeedColumn(),
        TimeRemainingColumn(),
    )
    with Progress(*columns, console=Console(stderr=True)) as bar:
        task = bar.add_task("uploading", total=total)

        def for_file(name: str) -> Callable[[int], None]:
            bar.update(task, description=name)
            return lambda sent: bar.advance(task, sent)  # called from the transfer threads

        yield for_file


def upload_files(
    s3: S3Client,
    bucket: str,
    tenant: str,
    dataset: str,
    paths: Sequence[Path],
    *,
    transfer_config: TransferConfig | None = None,
    content_type: str | None = None,
    progress: bool = True,
) -> list[str]:
    """Upload files to ``<tenant>/raw/<dataset>/<file name>`` with boto3's managed transfer.

    Files above ``transfer_config.multipart_threshold`` go up in parallel parts (an
    interrupted multipart upload is aborted by boto3, and by the bucket's lifecycle rule
    otherwise). Every file and key is checked before the first byte is sent.

    Args:
        s3: A boto3 S3 client.
        bucket: The tenant's bucket.
        tenant: The tenant.
        dataset: The dataset.
        paths: Local files; their names become the object names.
        transfer_config: Multipart threshold, part size, concurrency (default: boto3's).
        content_type: One content type for all files (default: guessed per file).
        progress: Show a progress bar in bytes on stderr.

    Returns:
        The keys written, in the order of ``paths``.
    """
    plan: list[tuple[Path, str, str]] = []
    for path in paths:
        if not path.is_file():
            raise UploadError(f"{path}: not a file")
        plan.append((path, raw_key(tenant, dataset, path.name), content_type_for(path.name, content_type)))
    keys = [key for _, key, _ in plan]
    if len(set(keys)) != len(keys):
        raise UploadError("two files have the same name: they would overwrite each other's object")
    total = sum(path.stat().st_size for path, _, _ in plan)
    with _progress(total, progress) as callback:
        for path, key, ctype in plan:
            s3.upload_file(
                str(path),
                bucket,
                key,
                ExtraArgs={"ContentType": ctype},
                Callback=callback(path.name),
                Config=transfer_config or TransferConfig(),
            )
            log.info("uploaded %s to s3://%s/%s", path, bucket, key)
    return keys

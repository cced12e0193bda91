"""What ``silverline tenants ...`` and ``silverline upload`` do, once their arguments are parsed.

Exit codes: 0 done; 1 AWS refused or failed (the API's message is printed);
2 configuration or usage errors (no registry, unknown group or tenant, bad names).
Presigned URLs and credentials go to stdout only, never to the log.
"""

from __future__ import annotations

import argparse
import functools
import json
import shlex
import sys
from dataclasses import asdict
from pathlib import Path
from typing import TYPE_CHECKING, Any

import boto3
from boto3.s3.transfer import TransferConfig

from jobs.cliargs import Command, aws_errors_exit_1, command_name, config_from_args
from jobs.config import ConfigError, SilverlineConfig
from jobs.tenants import output
from jobs.tenants.bucket import CREATED, ProvisionError
from jobs.tenants.provision import (
    Change,
    GroupSpec,
    change_status,
    create_group,
    create_tenant,
    require_group,
    require_tenant,
)
from jobs.tenants.purge import PurgeError, offboard
from jobs.tenants.registry import (
    ACTIVE,
    SUSPENDED,
    DynamoRegistry,
    RegistryError,
    TenantRegistry,
    check_tenant_name,
    open_registry,
)
from jobs.tenants.upload import (
    UploadError,
    content_type_for,
    presign_put,
    raw_key,
    s3_client,
    tenant_credentials,
    upload_files,
)

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

MiB = 1024 * 1024


def guarded(run: Command) -> Command:
    """Turn the errors of a command into its message on stderr and its exit code."""

    @functools.wraps(run)
    def wrapper(args: argparse.Namespace) -> int:
        try:
            return run(args)
        except (RegistryError, UploadError) as exc:
            print(f"{command_name(args)}: {exc}", file=sys.stderr)
            return 2
        except (ProvisionError, PurgeError) as exc:
            print(f"{command_name(args)}: {exc}", file=sys.stderr)
            return 1

    return aws_errors_exit_1(wrapper)


class Context:
    """The configuration a command runs with, and the registry and AWS clients it asks for."""

    def __init__(self, args: argparse.Namespace) -> None:
        """Load the configuration with ``--group``, ``--bucket`` and ``--endpoint-url`` applied."""
        self.config: SilverlineConfig = config_from_args(
            args,
            group={"name": args.group, "bucket": getattr(args, "bucket", None)},
            aws={"endpoint_url": args.endpoint_url},
        )
        self.group = self.config.group.name

    def registry(self) -> TenantRegistry:
        """The configured registry.

        Raises:
            ConfigError: ``registry.backend`` is ``none``.
        """
        registry = self.optional_registry()
        if registry is None:
            raise ConfigError(
                "no registry configured (registry.backend: none): set registry.backend to local or dynamodb"
            )
        return registry

    def optional_registry(self) -> TenantRegistry | None:
        """The configured registry, None for ``registry.backend: none``."""
        return open_registry(self.config)

    def client(self, service: str) -> Any:
        """A boto3 client for ``aws.region`` and ``aws.endpoint_url`` (SQS: ``sqs.endpoint_url`` first)."""
        endpoint = self.config.sqs_endpoint_url if service == "sqs" else self.config.aws.endpoint_url
        return boto3.client(service, region_name=self.config.aws.region, endpoint_url=endpoint)  # type: ignore[call-overload]

    def s3(self) -> S3Client:
        """An S3 client that presigns with Signature Version 4."""
        return s3_client(self.config.aws.region, self.config.aws.endpoint_url)

    def upload_target(self, name: str) -> tuple[str, str]:
        """(tenant, bucket) of an active tenant; without a registry, any valid name in the group's bucket.

        Raises:
            RegistryError: Unknown, suspended or offboarded tenant.
        """
        registry = self.optional_registry()
        if registry is None:
            return check_tenant_name(name), self.config.group.bucket
        tenant = require_tenant(registry, self.group, name)
        if tenant.status != ACTIVE:
            raise RegistryError(f"tenant {name!r} is {tenant.status}: no uploads")
        return tenant.name, tenant.bucket


@guarded
def run_create_group(args: argparse.Namespace) -> int:
    """``tenants create-group``."""
    ctx = Context(args)
    spec = GroupSpec(
        name=ctx.group,
        bucket=ctx.config.group.bucket,
        region=ctx.config.aws.region,
        queue_name=args.queue_name,
        max_receive_count=args.max_receive_count,
        visibility_timeout=args.visibility_timeout or ctx.config.bridge.visibility_timeout_seconds,
        abort_multipart_days=args.abort_multipart_days,
    )
    registry = ctx.optional_registry()
    tables: list[Change] = []
    if isinstance(registry, DynamoRegistry):
        tables = [Change("registry table", t, CREATED) for t in registry.ensure_tables()]
    result = create_group(spec, s3=ctx.s3(), sqs=ctx.client("sqs"), sts=ctx.client("sts"), registry=registry)
    print(output.group_result(result, tables, ctx.config.registry.backend))
    return 0


@guarded
def run_create_tenant(args: argparse.Namespace) -> int:
    """``tenants create-tenant``."""
    ctx = Context(args)
    tenant, action = create_tenant(ctx.registry(), ctx.group, args.name)
    print(f"tenant {tenant.name} (group {tenant.group}): {action}, status {tenant.status}")
    print(f"  uploads go to s3://{tenant.bucket}/{tenant.base_prefix}raw/<dataset>/<file>")
    return 0


@guarded
def run_list(args: argparse.Namespace) -> int:
    """``tenants list``."""
    ctx = Context(args)
    registry = ctx.registry()
    if args.all:
        tenants = registry.list_tenants()
    else:
        require_group(registry, ctx.group)
        tenants = registry.list_tenants(ctx.group)
    output.tenant_table(tenants, None if args.all else ctx.group)
    return 0


@guarded
def run_show(args: argparse.Namespace) -> int:
    """``tenants show``: a tenant's record, or the group's without a name."""
    ctx = Context(args)
    registry = ctx.registry()
    if args.name is None:
        record: Any = require_group(registry, ctx.group)
    else:
        record = require_tenant(registry, ctx.group, args.name)
    print(json.dumps(asdict(record), indent=2, sort_keys=True))
    return 0


@guarded
def run_suspend(args: argparse.Namespace) -> int:
    """``tenants suspend``."""
    return _set_status(args, SUSPENDED)


@guarded
def run_resume(args: argparse.Namespace) -> int:
    """``tenants resume``."""
    return _set_status(args, ACTIVE)


def _set_status(args: argparse.Namespace, status: str) -> int:
    ctx = Context(args)
    tenant, changed = change_status(ctx.registry(), ctx.group, args.name, status)
    print(f"tenant {tenant.name} (group {tenant.group}): {status}" + ("" if changed else " already"))
    return 0


@guarded
def run_offboard(args: argparse.Namespace) -> int:
    """``tenants offboard [--purge]``."""
    ctx = Context(args)
    roots = (ctx.config.lake.root, ctx.config.objects_root)
    result = offboard(
        ctx.registry(),
        ctx.group,
        args.name,
        purge=args.purge,
        s3=ctx.s3() if args.purge else None,
        lake_roots=roots,
    )
    print(output.offboard_result(result, args.purge))
    return 0


@guarded
def run_presign(args: argparse.Namespace) -> int:
    """``tenants presign``: the URL on stdout, how to use it on stderr."""
    ctx = Context(args)
    tenant, bucket = ctx.upload_target(args.name)
    content_type = content_type_for(args.filename, args.content_type)
    url = presign_put(ctx.s3(), bucket, tenant, args.dataset, args.filename, content_type, args.expires)
    key = raw_key(tenant, args.dataset, args.filename)
    if args.json:
        body = {"url": url, "method": "PUT", "bucket": bucket, "key": key, "expires_in": args.expires}
        print(json.dumps({**body, "headers": {"Content-Type": content_type}}, indent=2))
    else:
        print(url)
        print(
            f"PUT the file to s3://{bucket}/{key} with header 'Content-Type: {content_type}' "
            f"within {args.expires} s, e.g.\n"
            f"  curl -X PUT -H 'Content-Type: {content_type}' "
            f'--upload-file {shlex.quote(args.filename)} "$URL"',
            file=sys.stderr,
        )
    return 0


@guarded
def run_credentials(args: argparse.Namespace) -> int:
    """``tenants credentials``: shell ``export`` lines (or JSON) on stdout."""
    ctx = Context(args)
    role_arn = args.role_arn or ctx.config.registry.upload_role_arn
    if not role_arn:
        raise ConfigError("no upload role: set registry.upload_role_arn or pass --role-arn")
    tenant, bucket = ctx.upload_target(args.name)
    creds = tenant_credentials(ctx.client("sts"), role_arn, tenant, bucket, args.duration)
    scope = f"s3://{bucket}/{tenant}/raw/"
    if args.json:
        print(json.dumps({**creds, "Region": ctx.config.aws.region, "Scope": scope}, indent=2))
        return 0
    names = {
        "AWS_ACCESS_KEY_ID": creds["AccessKeyId"],
        "AWS_SECRET_ACCESS_KEY": creds["SecretAccessKey"],
        "AWS_SESSION_TOKEN": creds["SessionToken"],
        "AWS_REGION": ctx.config.aws.region,
    }
    print("\n".join(f"export {k}={shlex.quote(v)}" for k, v in names.items()))
    print(f"# valid until {creds['Expiration']}; uploads to {scope} only")
    return 0


@guarded
def run_upload(args: argparse.Namespace) -> int:
    """``upload``: the keys written on stdout."""
    ctx = Context(args)
    tenant, bucket = ctx.upload_target(args.tenant)
    config = TransferConfig(
        multipart_threshold=int(args.multipart_threshold * MiB),
        multipart_chunksize=int(args.part_size * MiB),
        max_concurrency=args.concurrency,
    )
    progress = not args.no_progress and sys.stderr.isatty()
    paths = [Path(p) for p in args.files]
    keys = upload_files(
        ctx.s3(), bucket, tenant, args.dataset, paths,
        transfer_config=config, content_type=args.content_type, progress=progress,
    )  # fmt: skip
    print("\n".join(f"s3://{bucket}/{key}" for key in keys))
    return 0

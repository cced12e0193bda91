"""``silverline tenants ...`` (onboarding, status, offboarding, upload grants) and ``silverline upload``."""

from __future__ import annotations

import argparse
from typing import Any

from jobs.cliargs import Command, add_command, add_command_group, add_config_arguments
from jobs.tenants import commands
from jobs.tenants.upload import MAX_PRESIGN_SECONDS

_DESCRIPTION = """\
Onboard and manage the tenants of a tenant group (one bucket, one SQS queue).
The registry (registry.backend: local or dynamodb) holds the groups and tenants;
the stream holds the events of unknown and suspended tenants until they are
created or resumed, and drops those of offboarded tenants.
--group defaults to group.name of the configuration; AWS calls go to aws.region
and aws.endpoint_url (or --endpoint-url, e.g. moto's server).
"""

_EPILOG = """\
examples (moto's server on port 5000, a local registry):
  export SILVERLINE__REGISTRY__BACKEND=local
  silverline tenants create-group --config conf/local.yaml --endpoint-url http://127.0.0.1:5000
  silverline tenants create-tenant acme --config conf/local.yaml
  silverline tenants list --config conf/local.yaml
  silverline tenants presign acme --dataset orders --filename 2024-06-01.csv --config conf/local.yaml
  eval "$(silverline tenants credentials acme --config conf/local.yaml \\
      --role-arn arn:aws:iam::123456789012:role/tenant-uploads)"
  silverline tenants offboard acme --purge --config conf/local.yaml

exit codes: 0 done; 1 an AWS request failed (its message is printed);
2 bad configuration or arguments: no registry, unknown group or tenant, invalid names.
"""

_CREATE_GROUP = """\
Create the group's bucket (in aws.region), its queue silverline-<group> and the
dead-letter queue silverline-<group>-dlq (redrive after --max-receive-count
receives), the queue policy that lets S3 send the bucket's notifications (bound to
the bucket ARN and the account), the bucket notification of every create and
delete to the queue (merged: other targets are kept; ours has Id
silverline-<group>), a lifecycle rule that aborts incomplete multipart uploads
(merged by rule ID), and the group's registry record. Run it again at any time:
what is in place is left alone.
"""

_UPLOAD = """\
Upload files to s3://<bucket>/<tenant>/raw/<dataset>/<file name> with boto3's
managed transfer: files above --multipart-threshold go up in parallel parts. The
tenant must be ACTIVE in the registry (without a registry: any valid tenant name
in group.bucket). Prints the keys written; a progress bar (bytes) on a terminal.
"""

_UPLOAD_EPILOG = """\
example:
  silverline upload --tenant acme --dataset orders data/*.csv --config conf/local.yaml \\
      --endpoint-url http://127.0.0.1:5000

exit codes: 0 uploaded; 1 an AWS request failed; 2 bad arguments, unknown or inactive tenant.
"""


_ACTIONS: tuple[tuple[str, str, Command, str | None], ...] = (
    (
        "create-tenant",
        "register a tenant (kept as it is if it exists; an offboarded one is onboarded again)",
        commands.run_create_tenant,
        "required",
    ),
    ("list", "list the group's tenants as a table", commands.run_list, None),
    ("show", "print a tenant's record (or the group's) as JSON", commands.run_show, "optional"),
    (
        "suspend",
        "suspend a tenant: its events are parked until it is resumed",
        commands.run_suspend,
        "required",
    ),
    ("resume", "resume a suspended tenant", commands.run_resume, "required"),
    ("offboard", "offboard a tenant; --purge also deletes its data", commands.run_offboard, "required"),
    ("presign", "print a presigned PUT URL into <tenant>/raw/<dataset>/", commands.run_presign, "required"),
    (
        "credentials",
        "print temporary credentials for <tenant>/raw/ only",
        commands.run_credentials,
        "required",
    ),
)


def _common(parser: argparse.ArgumentParser) -> None:
    add_config_arguments(parser, queue_flags=False)
    parser.add_argument("--group", metavar="NAME", help="tenant group (default: group.name)")
    parser.add_argument("--endpoint-url", metavar="URL", help="AWS endpoint, e.g. moto's (aws.endpoint_url)")


def _action(actions: Any, name: str, summary: str, func: Command) -> argparse.ArgumentParser:
    description = summary[0].upper() + summary[1:] + "."
    parser = add_command(actions, name, summary=summary, description=description, epilog=_EPILOG)
    _common(parser)
    parser.set_defaults(func=func)
    return parser


def _mebibytes(value: str) -> float:
    size = float(value)
    if size <= 0:
        raise argparse.ArgumentTypeError("must be positive")
    return size


def _part_size(value: str) -> float:
    size = float(value)
    if size < 5:
        raise argparse.ArgumentTypeError("S3 parts are at least 5 MiB")
    return size


def add_parser(subparsers: Any) -> None:
    """Register ``tenants`` (with its actions) and ``upload``.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    actions = add_command_group(
        subparsers,
        "tenants",
        summary="onboard, suspend, offboard tenants; grant uploads",
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )
    group = add_command(
        actions, "create-group", summary="create a tenant group", description=_CREATE_GROUP, epilog=_EPILOG
    )
    _common(group)
    group.add_argument("--bucket", metavar="NAME", help="the group's bucket (default: group.bucket)")
    group.add_argument("--queue-name", metavar="NAME", help="queue name (default: silverline-<group>)")
    group.add_argument("--max-receive-count", type=int, default=5, metavar="N", help="default 5")
    group.add_argument(
        "--visibility-timeout", type=int, metavar="S", help="default: bridge.visibility_timeout_seconds"
    )
    group.add_argument("--abort-multipart-days", type=int, default=7, metavar="N", help="default 7")
    group.set_defaults(func=commands.run_create_group)

    for name, summary, func, tenant_arg in _ACTIONS:
        sub = _action(actions, name, summary, func)
        if tenant_arg == "required":
            sub.add_argument("name", metavar="TENANT", help="the tenant")
        elif tenant_arg == "optional":
            sub.add_argument("name", nargs="?", metavar="TENANT", help="the tenant (default: the group)")
        _extra_arguments(name, sub)
    _add_upload(subparsers)


def _extra_arguments(name: str, parser: argparse.ArgumentParser) -> None:
    if name == "list":
        parser.add_argument("--all", action="store_true", help="tenants of every group")
    elif name == "offboard":
        parser.add_argument(
            "--purge",
            action="store_true",
            help="delete every object under <tenant>/ in the bucket and <lake>/<bucket>/<tenant>/ locally",
        )
    elif name == "presign":
        parser.add_argument("--dataset", required=True, help="the dataset (third key segment)")
        parser.add_argument("--filename", required=True, help="the object name under raw/<dataset>/")
        parser.add_argument(
            "--content-type", help="Content-Type the upload must send (default: from the name)"
        )
        parser.add_argument(
            "--expires",
            type=int,
            default=3600,
            metavar="S",
            help=f"seconds, 1..{MAX_PRESIGN_SECONDS} (default 3600)",
        )
        parser.add_argument("--json", action="store_true", help="URL, key and headers as JSON")
    elif name == "credentials":
        parser.add_argument(
            "--role-arn", metavar="ARN", help="role to assume (default: registry.upload_role_arn)"
        )
        parser.add_argument(
            "--duration", type=int, default=3600, metavar="S", help="900..43200 (default 3600)"
        )
        parser.add_argument("--json", action="store_true", help="JSON instead of shell export lines")


def _add_upload(subparsers: Any) -> None:
    parser = add_command(
        subparsers,
        "upload",
        summary="upload files into a tenant's raw zone",
        description=_UPLOAD,
        epilog=_UPLOAD_EPILOG,
    )
    _common(parser)
    parser.add_argument("--tenant", required=True, help="the tenant")
    parser.add_argument("--dataset", required=True, help="the dataset (third key segment)")
    parser.add_argument(
        "files", nargs="+", metavar="FILE", help="files to upload (their names become object names)"
    )
    parser.add_argument("--content-type", help="one Content-Type for all files (default: from each name)")
    parser.add_argument(
        "--multipart-threshold",
        type=_part_size,
        default=8.0,
        metavar="MIB",
        help="multipart above (default 8)",
    )
    parser.add_argument(
        "--part-size", type=_part_size, default=8.0, metavar="MIB", help="part size (default 8)"
    )
    parser.add_argument(
        "--concurrency", type=int, default=10, metavar="N", help="parallel parts (default 10)"
    )
    parser.add_argument("--no-progress", action="store_true", help="no progress bar")
    parser.set_defaults(func=commands.run_upload, action=None)

"""The static EMR artifacts, filled from the configuration.

The canonical JSON lives in ``jobs/emr/templates/`` (package data, so an installed
wheel carries it): EMR configurations (``configurations/cluster.json``), the
``RunJobFlow`` and EMR Serverless ``CreateApplication`` request bodies, and the IAM
policy documents (``iam/``). Placeholders are written ``${NAME}``.
:func:`template_values` derives most values from a :class:`~jobs.config.SilverlineConfig`;
keyword arguments (``account_id=``, ``subnet_id=``, ...) add or override them. A
placeholder left without a value is a :class:`~jobs.config.ConfigError` naming it.

A few policy statements are optional (:data:`OPTIONAL_STATEMENTS`): they are
kept only when their key placeholder has a value (the DLQ, the DynamoDB registry,
the notify target, the Serverless application, the cluster).
"""

from __future__ import annotations

import copy
import json
import re
from collections.abc import Iterable, Mapping
from functools import cache
from importlib import resources
from types import MappingProxyType
from typing import Any
from urllib.parse import urlparse

from jobs.config import ConfigError, SilverlineConfig
from jobs.session import catalog_settings
from jobs.storage import glue_database

PLACEHOLDER = re.compile(r"\$\{([A-Z][A-Z0-9_]*)\}")
CLUSTER_CONFIGURATIONS = "configurations/cluster.json"
CLUSTER_TEMPLATE = "configurations/cluster-template.json"
SERVERLESS_APPLICATION = "configurations/serverless-application.json"
POLICIES = (
    "instance-profile-policy",
    "instance-profile-trust",
    "serverless-job-role-policy",
    "serverless-job-role-trust",
    "scheduler-role-policy",
    "scheduler-role-trust",
    "sqs-queue-policy",
)
TEMPLATE_CATALOG = "silverline"  # the catalog name spelled in configurations/cluster.json
DEFAULT_SERVICE_ROLE = "EMR_DefaultRole_V2"

# Statement Sid -> the placeholder whose value switches the statement on.
OPTIONAL_STATEMENTS: Mapping[str, str] = MappingProxyType(
    {
        "DeadLetterQueueInspect": "DLQ_ARN",
        "TenantRegistryRead": "REGISTRY_TENANTS_TABLE",
        "NotifyQueueSend": "NOTIFY_QUEUE_ARN",
        "NotifyTopicPublish": "NOTIFY_TOPIC_ARN",
        "StartServerlessBackfill": "APPLICATION_ID",
        "PassServerlessJobRole": "APPLICATION_ID",
        "AddClusterBackfillStep": "CLUSTER_ID",
    }
)

# Where a missing value comes from, for error messages.
_HINTS: Mapping[str, str] = MappingProxyType(
    {
        "ACCOUNT_ID": "pass account_id=, or set sqs.queue_url",
        "QUEUE_ARN": "set sqs.queue_url",
        "OPS_BUCKET": "lake.ops_root must be an s3:// URI",
        "SUBNET_ID": "pass subnet_id=",
        "JOB_ROLE_ARN": "set emr.execution_role_arn",
    }
)


def load_template(name: str) -> Any:
    """Read one template (``configurations/cluster.json``, ``iam/sqs-queue-policy.json``, ...).

    Args:
        name: Path below ``jobs/emr/templates/``.

    Returns:
        The parsed JSON, placeholders untouched.
    """
    path = resources.files("jobs.emr").joinpath("templates", *name.split("/"))
    return json.loads(path.read_text(encoding="utf-8"))


def placeholders(document: Any) -> set[str]:
    """Names of the ``${NAME}`` placeholders in a document (keys and string values)."""
    found: set[str] = set()
    for text in _strings(document):
        found.update(PLACEHOLDER.findall(text))
    return found


def _strings(document: Any) -> Iterable[str]:
    if isinstance(document, str):
        yield document
    elif isinstance(document, Mapping):
        for key, value in document.items():
            yield str(key)
            yield from _strings(value)
    elif isinstance(document, list):
        for item in document:
            yield from _strings(item)


@cache
def known_placeholders() -> frozenset[str]:
    """Every placeholder that some template uses."""
    names = [CLUSTER_CONFIGURATIONS, CLUSTER_TEMPLATE, SERVERLESS_APPLICATION]
    names += [f"iam/{policy}.json" for policy in POLICIES]
    found: set[str] = set()
    for name in names:
        found |= placeholders(load_template(name))
    return frozenset(found)


def fill(document: Any, values: Mapping[str, str], *, name: str) -> Any:
    """Replace every ``${NAME}`` in ``document`` (keys and string values).

    Args:
        document: Parsed JSON.
        values: Placeholder values.
        name: The template's name, for the error message.

    Returns:
        A filled copy.

    Raises:
        ConfigError: A placeholder has no value; the message names all of them.
    """
    missing = sorted(placeholders(document) - values.keys())
    if missing:
        hints = [f"${{{m}}}" + (f" ({_HINTS[m]})" if m in _HINTS else "") for m in missing]
        raise ConfigError(f"{name}: no value for {', '.join(hints)}")
    return _replace(document, values)


def _replace(document: Any, values: Mapping[str, str]) -> Any:
    if isinstance(document, str):
        return PLACEHOLDER.sub(lambda m: values[m.group(1)], document)
    if isinstance(document, Mapping):
        return {_replace(k, values): _replace(v, values) for k, v in document.items()}
    if isinstance(document, list):
        return [_replace(item, values) for item in document]
    return copy.deepcopy(document)


def _s3_parts(uri: str) -> tuple[str, str]:
    parsed = urlparse(uri)
    if parsed.scheme != "s3" or not parsed.netloc:
        raise ValueError(uri)
    return parsed.netloc, parsed.path.lstrip("/")


def partition_of(region: str) -> str:
    """The ARN partition of a region (``aws``, ``aws-cn``, ``aws-us-gov``)."""
    if region.startswith("cn-"):
        return "aws-cn"
    if region.startswith("us-gov-"):
        return "aws-us-gov"
    return "aws"


def queue_arn(queue_url: str, region: str) -> tuple[str, str]:
    """The ARN and owning account of an SQS queue URL (``https://sqs.<region>.amazonaws.com/<acct>/<name>``).

    Raises:
        ConfigError: The URL does not end in ``/<account>/<queue name>``.
    """
    parsed = urlparse(queue_url)
    parts = [p for p in parsed.path.split("/") if p]
    if len(parts) != 2 or not parts[0].isdigit():
        raise ConfigError(f"{queue_url}: not an SQS queue URL (.../<account id>/<queue name>)")
    host = parsed.hostname or ""
    if host.startswith("sqs.") and host.count(".") >= 3:
        region = host.split(".")[1]
    return f"arn:{partition_of(region)}:sqs:{region}:{parts[0]}:{parts[1]}", parts[0]


def _s3_values(values: dict[str, str], stem: str, uri: str, key: str) -> None:
    try:
        bucket, prefix = _s3_parts(uri)
    except ValueError:
        raise ConfigError(f"{key}: the EMR artifacts need an s3:// URI, got {uri!r}") from None
    values[f"{stem}_BUCKET"], values[f"{stem}_PREFIX"] = bucket, prefix


def template_values(config: SilverlineConfig, **values: str | None) -> dict[str, str]:
    """The placeholder values for one tenant group.

    Derived from the configuration: ``REGION``, ``PARTITION``, ``GROUP``,
    ``TENANT_BUCKET``, ``QUEUE_ARN`` and ``ACCOUNT_ID`` (from ``sqs.queue_url``),
    ``OPS_BUCKET``/``OPS_PREFIX`` (``lake.ops_root``), ``ARTIFACTS_URI`` (``emr.artifacts_uri``,
    default ``<ops_root>artifacts/``), ``LOG_URI`` (``emr.log_uri``, default
    ``<ops_root>logs/``), ``WAREHOUSE``/``OPS_WAREHOUSE`` (as :func:`jobs.session.catalog_settings`),
    ``GLUE_DATABASE``/``GLUE_OPS_DATABASE``, ``INSTANCE_PROFILE_NAME``, ``SERVICE_ROLE_NAME``,
    ``JOB_ROLE_ARN``, ``APPLICATION_ID``, ``CLUSTER_ID``, the registry tables (backend
    ``dynamodb``) and the notify target.

    Args:
        config: The group's configuration.
        **values: Explicit values by lower-case placeholder name (``account_id="1234..."``,
            ``subnet_id=...``, ``dlq_arn=...``); ``None`` is ignored. They win over derived values.

    Returns:
        Values by placeholder name.

    Raises:
        ConfigError: An unknown keyword, or a URI that is not ``s3://``.
    """
    explicit = {k.upper(): v for k, v in values.items() if v is not None}
    unknown = sorted(set(explicit) - known_placeholders())
    if unknown:
        raise ConfigError(f"unknown template values: {', '.join(u.lower() for u in unknown)}")
    region = config.aws.region
    out = {"REGION": region, "PARTITION": partition_of(region), "GROUP": config.group.name}
    out["TENANT_BUCKET"] = config.group.bucket
    out["SERVICE_ROLE_NAME"] = DEFAULT_SERVICE_ROLE
    out["INSTANCE_PROFILE_NAME"] = f"silverline-{config.group.name}-emr-ec2"
    out["GLUE_DATABASE"] = glue_database(config.group.name)
    out["GLUE_OPS_DATABASE"] = glue_database(config.group.name) + "_ops"  # as jobs.storage.ops_namespace
    if config.sqs.queue_url:
        out["QUEUE_ARN"], out["ACCOUNT_ID"] = queue_arn(config.sqs.queue_url, region)
    if config.ops_root.startswith("s3://"):
        _s3_values(out, "OPS", config.ops_root, "lake.ops_root")
        out["ARTIFACTS_URI"] = config.emr.artifacts_uri or f"{config.ops_root}artifacts/"
        out["LOG_URI"] = config.emr.log_uri or f"{config.ops_root}logs/"
    out.update(_config_values(config))
    out.update(explicit)
    for stem in ("ARTIFACTS", "LOG"):
        if f"{stem}_URI" in out:
            _s3_values(out, stem, out[f"{stem}_URI"], f"emr.{stem.lower()}_uri")
    _check_artifacts_outside_ops(out)
    return out


def _config_values(config: SilverlineConfig) -> dict[str, str]:
    out: dict[str, str] = {}
    settings = catalog_settings(config)
    for stem, name in (("", config.catalog.name), ("OPS_", f"{config.catalog.name}_ops")):
        out[f"{stem}WAREHOUSE"] = settings[f"spark.sql.catalog.{name}.warehouse"]
    emr = config.emr
    for key, value in (
        ("JOB_ROLE_ARN", emr.execution_role_arn),
        ("APPLICATION_ID", emr.application_id),
        ("CLUSTER_ID", emr.cluster_id),
    ):
        if value:
            out[key] = value
    if config.registry.backend == "dynamodb":
        out["REGISTRY_GROUPS_TABLE"] = config.registry.groups_table
        out["REGISTRY_TENANTS_TABLE"] = config.registry.tenants_table
    if config.notify.target == "sqs" and config.notify.queue_url:
        out["NOTIFY_QUEUE_ARN"] = queue_arn(config.notify.queue_url, config.aws.region)[0]
    if config.notify.target == "sns" and config.notify.topic_arn:
        out["NOTIFY_TOPIC_ARN"] = config.notify.topic_arn
    return out


def _check_artifacts_outside_ops(values: Mapping[str, str]) -> None:
    """The job role may never write its own code: the artifacts must not contain the ops root."""
    if "ARTIFACTS_BUCKET" not in values or "OPS_BUCKET" not in values:
        return
    same_bucket = values["ARTIFACTS_BUCKET"] == values["OPS_BUCKET"]
    if same_bucket and values["OPS_PREFIX"].startswith(values["ARTIFACTS_PREFIX"]):
        raise ConfigError(
            f"emr.artifacts_uri ({values['ARTIFACTS_URI']}) contains lake.ops_root: the job role "
            "may write the ops root but never the artifacts; use e.g. <ops_root>artifacts/"
        )


def _policy(name: str, values: Mapping[str, str]) -> dict[str, Any]:
    document = load_template(f"iam/{name}.json")
    kept = [
        s
        for s in document["Statement"]
        if s.get("Sid") not in OPTIONAL_STATEMENTS or OPTIONAL_STATEMENTS[s["Sid"]] in values
    ]
    if not kept:
        switches = sorted({OPTIONAL_STATEMENTS[s["Sid"]] for s in document["Statement"]})
        raise ConfigError(f"{name}: every statement is optional and off; set one of {', '.join(switches)}")
    document["Statement"] = kept
    filled: dict[str, Any] = fill(document, values, name=name)
    return filled


def render_policies(config: SilverlineConfig, **values: str | None) -> dict[str, dict[str, Any]]:
    """Every IAM document (``instance-profile-policy``, ..., ``sqs-queue-policy``), filled.

    The scheduler role's policy needs ``emr.application_id`` or ``emr.cluster_id`` (or
    ``application_id=`` / ``cluster_id=``); without either it is left out.

    Args:
        config: The group's configuration.
        **values: Explicit values, as for :func:`template_values`.

    Returns:
        Policy documents by name.

    Raises:
        ConfigError: A placeholder has no value.
    """
    filled = template_values(config, **values)
    out = {}
    for name in POLICIES:
        if name == "scheduler-role-policy" and not {"APPLICATION_ID", "CLUSTER_ID"} & filled.keys():
            continue
        out[name] = _policy(name, filled)
    return out


def render_cluster_configurations(config: SilverlineConfig, **values: str | None) -> list[dict[str, Any]]:
    """The EMR configurations (classifications) of a cluster, filled.

    Raises:
        ConfigError: The catalog is not the Glue catalog ``silverline`` the template
            registers, or a placeholder has no value.
    """
    if config.catalog.type != "glue" or config.catalog.name != TEMPLATE_CATALOG:
        raise ConfigError(
            f"catalog: the EMR configurations register the Glue catalogs {TEMPLATE_CATALOG} and "
            f"{TEMPLATE_CATALOG}_ops; set catalog.type: glue and catalog.name: {TEMPLATE_CATALOG}"
        )
    filled: list[dict[str, Any]] = fill(
        load_template(CLUSTER_CONFIGURATIONS), template_values(config, **values), name="cluster"
    )
    return filled


def render_cluster_template(config: SilverlineConfig, **values: str | None) -> dict[str, Any]:
    """A ``RunJobFlow`` request body: the cluster template with the configurations inserted.

    Args:
        config: The group's configuration.
        **values: Explicit values; ``subnet_id=`` is required.

    Returns:
        The request body (``boto3.client("emr").run_job_flow(**body)``).
    """
    body: dict[str, Any] = fill(
        load_template(CLUSTER_TEMPLATE), template_values(config, **values), name="cluster-template"
    )
    body["Configurations"] = render_cluster_configurations(config, **values)
    return body


def render_serverless_application(config: SilverlineConfig, **values: str | None) -> dict[str, Any]:
    """An EMR Serverless ``CreateApplication`` body.

    Its ``spark-defaults`` are the cluster's (without ``spark.yarn.*``, which has no
    meaning there) plus the Serverless entries of the template (Iceberg jar, driver Python).
    """
    body: dict[str, Any] = fill(
        load_template(SERVERLESS_APPLICATION),
        template_values(config, **values),
        name="serverless-application",
    )
    cluster = render_cluster_configurations(config, **values)
    shared = next(c["Properties"] for c in cluster if c["Classification"] == "spark-defaults")
    defaults = next(c for c in body["runtimeConfiguration"] if c["classification"] == "spark-defaults")
    merged = {k: v for k, v in shared.items() if not k.startswith("spark.yarn.")}
    merged.update(defaults["properties"])
    defaults["properties"] = merged
    return body

"""Typed, validated, frozen configuration.

Precedence, lowest to highest: the YAML file given with ``--config``, then
environment variables ``SILVERLINE__SECTION__KEY`` (values are parsed as YAML
scalars, so ``10`` is an int and ``true`` a bool), then command-line flags.
Nothing is looked up implicitly: no search path, no default file.
"""

from __future__ import annotations

import copy
import os
import re
from collections.abc import Mapping
from pathlib import Path
from typing import Any, Literal
from urllib.parse import urlparse
from urllib.request import url2pathname

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

ENV_PREFIX = "SILVERLINE__"
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_NAME_RE = re.compile(r"^[A-Za-z0-9][A-Za-z0-9_-]{0,62}$")


class ConfigError(ValueError):
    """Raised when configuration cannot be read or is invalid; names the bad key."""


class _Section(BaseModel):
    model_config = ConfigDict(frozen=True, extra="forbid")


def _to_uri(value: str) -> str:
    """Turn a local path or URI into a URI ending with ``/``."""
    if "://" in value:
        return value if value.endswith("/") else value + "/"
    return Path(value).expanduser().resolve().as_uri() + "/"


class GroupConfig(_Section):
    """The tenant group: one bucket, one SQS queue."""

    name: str = "demo"
    bucket: str = "demo-lake"

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not _NAME_RE.fullmatch(value):
            raise ValueError("must be letters, digits, '_' or '-' (max 63)")
        return value

    @field_validator("bucket")
    @classmethod
    def _check_bucket(cls, value: str) -> str:
        if not _BUCKET_RE.fullmatch(value) or ".." in value:
            raise ValueError("must be a valid S3 bucket name (3-63 lower-case letters, digits, '.', '-')")
        return value


class LakeConfig(_Section):
    """Where objects and tables live. Paths become ``file://`` URIs."""

    root: str = "lake"
    ops_root: str | None = Field(
        default=None,
        description="Job state (bronze, ledger, ops tables, checkpoints); default <root>/_ops/<group>/",
    )
    objects_root: str | None = Field(
        default=None,
        description="Where raw objects are read from; default: root. 's3://' reads through the S3 API",
    )

    @field_validator("root", "ops_root", "objects_root")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.strip():
            raise ValueError("must not be empty")
        return _to_uri(value)


class AwsConfig(_Section):
    """AWS client settings; ``endpoint_url`` points at moto's server locally."""

    region: str = "us-east-1"
    endpoint_url: str | None = None


class SqsConfig(_Section):
    """The tenant group's notification queue."""

    queue_url: str | None = None
    endpoint_url: str | None = Field(default=None, description="Overrides aws.endpoint_url for SQS")


class BridgeConfig(_Section):
    """SQS -> bronze landing log."""

    receivers: int = Field(default=4, ge=1, le=64)
    max_messages: int = Field(default=10, ge=1, le=10)
    wait_time_seconds: int = Field(default=20, ge=0, le=20)
    visibility_timeout_seconds: int = Field(default=120, ge=10, le=43200)
    flush_max_messages: int = Field(default=1000, ge=1)
    flush_max_bytes: int | None = Field(
        default=None, ge=1024, description="A bronze file holds at most this many bytes (one message more)"
    )
    flush_interval_seconds: float = Field(default=5.0, gt=0)
    max_consecutive_errors: int = Field(default=10, ge=1)
    sqs_transport: Literal["direct", "boto3"] = Field(
        default="direct",
        description="direct: the bridge's lean SQS JSON-protocol client (a third of botocore's CPU per "
        "request); boto3: botocore's client",
    )


class StreamConfig(_Section):
    """The streaming job: bronze -> silver."""

    datasets_file: str = Field(default="conf/datasets.yaml", description="Dataset contracts (YAML)")
    checkpoint_root: str | None = Field(default=None, description="Default: <ops_root>checkpoints/")
    trigger: str = Field(default="available-now", description="available-now | interval=<N>s")
    max_files_per_trigger: int = Field(default=200, ge=1)
    max_bytes_per_trigger: int | None = Field(
        default=None,
        ge=1024,
        description="Bronze bytes per micro-batch; needs bridge.flush_max_bytes (see files_per_trigger)",
    )
    watermark_delay: str = Field(default="10 minutes", description="Dedupe state kept this long")
    overlap_backlog: int | None = Field(
        default=1000,
        ge=1,
        description="available-now: with at least this many messages queued at start, process what "
        "has landed while the bridge drains the rest (rounds of available-now); null: drain first",
    )
    commit_threads: int = Field(default=4, ge=1, le=64)
    read_threads: int = Field(default=8, ge=1, le=128)
    max_attempts: int = Field(default=3, ge=1, description="Failed commits per object before parking")
    retry_interval_seconds: float = Field(
        default=30.0, gt=0, description="Failed tenant commits are retried this often when idle"
    )
    max_files_per_tenant: int | None = Field(
        default=None,
        ge=1,
        description="Objects one tenant may have applied per micro-batch; the rest wait for later batches",
    )
    max_object_bytes: int = Field(
        default=1 << 34,
        ge=1,
        description="An object larger than this (as stored) is quarantined unread (object_bytes_limit)",
    )
    max_decompressed_bytes: int = Field(
        default=1 << 30,
        ge=1,
        description="A compressed object expanding past this is quarantined (decompressed_bytes_limit)",
    )
    max_row_bytes: int = Field(
        default=1 << 24,
        ge=1,
        description="A CSV or JSON-lines object with a longer line is quarantined (row_bytes_limit)",
    )
    read_block_bytes: int = Field(
        default=1 << 26,
        ge=1024,
        description="Objects larger than this (decompressed) are read, checked and written a block "
        "of about this many bytes at a time, never whole",
    )

    @field_validator("trigger")
    @classmethod
    def _check_trigger(cls, value: str) -> str:
        if value != "available-now" and not re.fullmatch(r"interval=\d+(\.\d+)?s", value):
            raise ValueError("must be 'available-now' or 'interval=<seconds>s', e.g. interval=10s")
        return value

    @field_validator("checkpoint_root")
    @classmethod
    def _uri(cls, value: str | None) -> str | None:
        return None if value is None else _to_uri(value)


class RegistryConfig(_Section):
    """The tenant registry: which tenants exist and whether their events are processed."""

    backend: Literal["none", "local", "dynamodb"] = Field(
        default="none", description="none: every tenant prefix is active; local: a JSON file; dynamodb"
    )
    path: str | None = Field(
        default=None, description="local: the registry file; default <root>_registry/registry.json"
    )
    groups_table: str = "TenantGroups"
    tenants_table: str = "Tenants"
    endpoint_url: str | None = Field(default=None, description="Overrides aws.endpoint_url for DynamoDB")
    upload_role_arn: str | None = Field(
        default=None, description="IAM role `tenants credentials` assumes, scoped down to <tenant>/raw/*"
    )
    refresh_seconds: float = Field(
        default=30.0, gt=0, description="The stream re-reads the registry this often"
    )


class NotifyConfig(_Section):
    """Downstream "table updated" notifications, at most one per tenant table per window."""

    target: Literal["none", "sqs", "sns"] = "none"
    queue_url: str | None = None
    topic_arn: str | None = None
    window_seconds: float = Field(default=60.0, ge=0)
    endpoint_url: str | None = Field(default=None, description="Overrides aws.endpoint_url for SQS/SNS")

    @model_validator(mode="after")
    def _target_needs_address(self) -> NotifyConfig:
        if self.target == "sqs" and not self.queue_url:
            raise ValueError("notify.queue_url is required when notify.target is sqs")
        if self.target == "sns" and not self.topic_arn:
            raise ValueError("notify.topic_arn is required when notify.target is sns")
        return self


class CloudWatchConfig(_Section):
    """Batch metrics in CloudWatch (``jobs.stream.cloudwatch``): opt-in, never slowing a batch."""

    enabled: bool = False
    namespace: str = Field(default="silverline", min_length=1, max_length=255)
    endpoint_url: str | None = Field(default=None, description="Overrides aws.endpoint_url for CloudWatch")


class MaintenanceConfig(_Section):
    """``silverline maintain``: Iceberg housekeeping and retention, safe next to the running stream."""

    expire_after_hours: float = Field(
        default=120.0, ge=0, description="Snapshots older than this are expired (the newest few are kept)"
    )
    retain_last: int = Field(default=20, ge=1, description="Snapshots every table keeps, however old")
    target_file_mb: int = Field(default=128, ge=1, description="Compaction's target data-file size")
    min_input_files: int = Field(
        default=5, ge=2, description="A partition is compacted once it has this many small files"
    )
    delete_file_threshold: int = Field(
        default=2, ge=1, description="Also rewrite a data file with this many delete files (merge-on-read)"
    )
    orphan_after_hours: float = Field(
        default=72.0,
        ge=24,
        description="Unreferenced files older than this are removed (Iceberg's procedure refuses < 24 h)",
    )
    bronze_retention_days: float | None = Field(
        default=30.0, gt=0, description="Processed bronze files older than this are deleted (null: keep all)"
    )
    ops_retention_days: float | None = Field(
        default=90.0,
        gt=0,
        description="Rows of batch_metrics, stream_progress and validation_results older than this go",
    )


class EmrConfig(_Section):
    """Where ``silverline emr ...`` deploys: an EMR on EC2 cluster or an EMR Serverless application."""

    target: Literal["cluster", "serverless"] = "cluster"
    cluster_id: str | None = Field(default=None, description="EMR on EC2 cluster (j-...)")
    application_id: str | None = Field(default=None, description="EMR Serverless application")
    execution_role_arn: str | None = Field(default=None, description="EMR Serverless job role")
    scheduler_role_arn: str | None = Field(default=None, description="Role EventBridge Scheduler assumes")
    artifacts_uri: str | None = Field(
        default=None,
        description="s3:// prefix with the entry scripts, silverline-venv.tar.gz and silverline-conf.zip",
    )
    config_name: str = Field(
        default="emr.yaml", description="The configuration's name inside silverline-conf.zip"
    )
    log_uri: str | None = None
    endpoint_url: str | None = Field(default=None, description="Overrides aws.endpoint_url for EMR/Scheduler")

    @field_validator("artifacts_uri", "log_uri")
    @classmethod
    def _s3_prefix(cls, value: str | None) -> str | None:
        if value is None:
            return None
        if not value.startswith("s3://"):
            raise ValueError("must be an s3:// prefix")
        return value if value.endswith("/") else value + "/"


class CatalogConfig(_Section):
    """The Iceberg catalog silver tables are registered in."""

    name: str = "silverline"
    type: Literal["hadoop", "glue", "rest", "hive"] = "hadoop"
    warehouse: str | None = Field(default=None, description="Default: lake.root (hadoop catalog)")
    properties: Mapping[str, str] = Field(default_factory=dict)

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not re.fullmatch(r"[A-Za-z_][A-Za-z0-9_]*", value):
            raise ValueError("must be a SQL identifier")
        return value


class SparkConfig(_Section):
    """SparkSession settings. Defaults files hold the Iceberg/Spark settings."""

    master: str | None = "local[*]"
    app_name: str = "silverline"
    defaults_file: str | None = Field(
        default=None, description="A spark-defaults style file applied before `conf`"
    )
    iceberg_jar: str | None = Field(
        default=None, description="Path to the Iceberg Spark runtime jar; default: the PyPI package's"
    )
    iceberg_packages: str | None = Field(
        default=None, description="Maven coordinates instead of a jar (needs Maven Central)"
    )
    conf: Mapping[str, str] = Field(default_factory=dict)

    @model_validator(mode="after")
    def _one_jar_source(self) -> SparkConfig:
        if self.iceberg_jar and self.iceberg_packages:
            raise ValueError("set spark.iceberg_jar or spark.iceberg_packages, not both")
        return self


class SilverlineConfig(_Section):
    """The whole configuration of one silverline job (one tenant group)."""

    mode: Literal["local", "emr"] = "local"
    group: GroupConfig = Field(default_factory=GroupConfig)
    lake: LakeConfig = Field(default_factory=LakeConfig)
    aws: AwsConfig = Field(default_factory=AwsConfig)
    sqs: SqsConfig = Field(default_factory=SqsConfig)
    bridge: BridgeConfig = Field(default_factory=BridgeConfig)
    stream: StreamConfig = Field(default_factory=StreamConfig)
    catalog: CatalogConfig = Field(default_factory=CatalogConfig)
    spark: SparkConfig = Field(default_factory=SparkConfig)
    registry: RegistryConfig = Field(default_factory=RegistryConfig)
    notify: NotifyConfig = Field(default_factory=NotifyConfig)
    cloudwatch: CloudWatchConfig = Field(default_factory=CloudWatchConfig)
    emr: EmrConfig = Field(default_factory=EmrConfig)
    maintenance: MaintenanceConfig = Field(default_factory=MaintenanceConfig)

    @model_validator(mode="after")
    def _mode_rules(self) -> SilverlineConfig:
        if self.mode == "emr":
            if self.lake.root.startswith("file:"):
                raise ValueError("lake.root: mode emr needs an s3:// root")
            if self.spark.iceberg_jar or self.spark.iceberg_packages:
                raise ValueError("spark.iceberg_jar: mode emr uses the cluster's Iceberg")
        limit = self.stream.max_bytes_per_trigger
        if limit is not None:
            size = self.bridge.flush_max_bytes
            if size is None:
                raise ValueError(
                    "stream.max_bytes_per_trigger: Spark 3.5's file source limits files, not bytes; "
                    "also set bridge.flush_max_bytes so that bronze files have a bounded size"
                )
            if limit < size:
                raise ValueError(f"stream.max_bytes_per_trigger must be >= bridge.flush_max_bytes ({size})")
        return self

    @property
    def files_per_trigger(self) -> int:
        """Bronze files per micro-batch.

        ``max_files_per_trigger``, lowered so that ``files x bridge.flush_max_bytes``
        stays within ``max_bytes_per_trigger``.
        """
        limit, size = self.stream.max_bytes_per_trigger, self.bridge.flush_max_bytes
        if limit is None or size is None:
            return self.stream.max_files_per_trigger
        return max(1, min(self.stream.max_files_per_trigger, limit // size))

    @property
    def ops_root(self) -> str:
        """URI of the job's own state for this tenant group (ends with ``/``)."""
        return self.lake.ops_root or f"{self.lake.root}_ops/{self.group.name}/"

    @property
    def objects_root(self) -> str:
        """URI raw objects are read from: ``<objects_root><bucket>/<key>``."""
        return self.lake.objects_root or self.lake.root

    @property
    def checkpoint_root(self) -> str:
        """URI of the streaming checkpoints (ends with ``/``)."""
        return self.stream.checkpoint_root or f"{self.ops_root}checkpoints/"

    @property
    def sqs_endpoint_url(self) -> str | None:
        """The SQS endpoint: ``sqs.endpoint_url``, else ``aws.endpoint_url``."""
        return self.sqs.endpoint_url or self.aws.endpoint_url

    @property
    def registry_path(self) -> Path:
        """The local registry file (``registry.path``, else ``<lake root>_registry/registry.json``)."""
        if self.registry.path:
            return Path(self.registry.path).expanduser().resolve()
        if not self.lake.root.startswith("file:"):
            raise ConfigError("registry.path: needed for a local registry when lake.root is not a local path")
        return Path(url2pathname(urlparse(self.lake.root).path)) / "_registry" / "registry.json"

    @property
    def warehouse(self) -> str:
        """The Iceberg warehouse URI."""
        return self.catalog.warehouse or self.lake.root


def _set_path(tree: dict[str, Any], path: list[str], value: Any) -> None:
    node = tree
    for part in path[:-1]:
        child = node.get(part)
        if child is None:
            child = node[part] = {}
        if not isinstance(child, dict):
            raise ConfigError(f"{'.'.join(path)}: cannot set below non-section {part!r}")
        node = child
    node[path[-1]] = value


def env_overrides(environ: Mapping[str, str]) -> dict[str, Any]:
    """Collect ``SILVERLINE__SECTION__KEY=value`` variables into a nested dict.

    Args:
        environ: The environment to read (usually ``os.environ``).

    Returns:
        Nested overrides, keys lower-cased, values parsed as YAML scalars.
    """
    tree: dict[str, Any] = {}
    for name, raw in sorted(environ.items()):
        if not name.startswith(ENV_PREFIX):
            continue
        path = [p.lower() for p in name[len(ENV_PREFIX) :].split("__")]
        if not all(path):
            raise ConfigError(f"{name}: empty section in environment override")
        try:
            value = yaml.safe_load(raw) if raw.strip() else None
        except yaml.YAMLError:
            value = raw
        _set_path(tree, path, value)
    return tree


def _merge(base: dict[str, Any], extra: Mapping[str, Any]) -> dict[str, Any]:
    merged = copy.deepcopy(base)
    for key, value in extra.items():
        if isinstance(value, Mapping) and isinstance(merged.get(key), dict):
            merged[key] = _merge(merged[key], value)
        else:
            merged[key] = value
    return merged


def _format_error(err: ValidationError, source: str) -> str:
    lines = [f"invalid configuration ({source}):"]
    for item in err.errors():
        key = ".".join(str(p) for p in item["loc"]) or "<root>"
        msg = item["msg"].removeprefix("Value error, ")
        if item["type"] == "extra_forbidden":
            msg = "unknown key"
        lines.append(f"  {key}: {msg}")
    return "\n".join(lines)


def load_config(
    path: str | Path | None = None,
    *,
    environ: Mapping[str, str] | None = None,
    overrides: Mapping[str, Any] | None = None,
) -> SilverlineConfig:
    """Load, merge and validate configuration.

    Args:
        path: YAML file; ``None`` starts from the built-in defaults.
        environ: Environment for ``SILVERLINE__`` overrides (default ``os.environ``).
        overrides: Nested values from command-line flags (highest precedence);
            ``None`` values are skipped.

    Returns:
        The frozen configuration.

    Raises:
        ConfigError: The file is unreadable or a key is unknown or invalid.
    """
    data: dict[str, Any] = {}
    source = "defaults"
    if path is not None:
        source = str(path)
        try:
            loaded = yaml.safe_load(Path(path).read_text(encoding="utf-8"))
        except OSError as exc:
            raise ConfigError(f"cannot read config file {path}: {exc.strerror or exc}") from exc
        except yaml.YAMLError as exc:
            raise ConfigError(f"config file {path} is not valid YAML: {exc}") from exc
        if loaded is not None and not isinstance(loaded, dict):
            raise ConfigError(f"config file {path}: top level must be a mapping")
        data = loaded or {}
    data = _merge(data, env_overrides(os.environ if environ is None else environ))
    if overrides:
        data = _merge(data, _drop_none(overrides))
    try:
        return SilverlineConfig.model_validate(data)
    except ValidationError as exc:
        raise ConfigError(_format_error(exc, source)) from exc


def _drop_none(tree: Mapping[str, Any]) -> dict[str, Any]:
    out: dict[str, Any] = {}
    for key, value in tree.items():
        if isinstance(value, Mapping):
            sub = _drop_none(value)
            if sub:
                out[key] = sub
        elif value is not None:
            out[key] = value
    return out

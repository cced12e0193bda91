"""Dataset contracts: format, schema, partition spec, key and quality rules of each dataset.

A contract is the platform default for a dataset; ``tenants:`` overrides the
reader options, the expectation suite and the bad-row policy for single tenants
(the table layout — columns, partitions, key — is the same for every tenant).
"""

from __future__ import annotations

import re
from collections.abc import Mapping
from pathlib import Path
from typing import Literal

import yaml
from pydantic import BaseModel, ConfigDict, Field, ValidationError, field_validator, model_validator

from jobs.config import ConfigError

_TYPE_RE = re.compile(
    r"^(string|bigint|int|smallint|double|float|boolean|date|timestamp|decimal\(\d+,\d+\))$"
)
_TRANSFORM_RE = re.compile(
    r"^(?:(years|months|days|hours)\((\w+)\)|bucket\(\d+, *(\w+)\)|truncate\(\d+, *(\w+)\)|(\w+))$"
)


class ColumnSpec(BaseModel):
    """One declared column."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    type: str
    nullable: bool = True

    @field_validator("name")
    @classmethod
    def _check_name(cls, value: str) -> str:
        if not re.fullmatch(r"[a-z][a-z0-9_]*", value):
            raise ValueError("column names are lower-case identifiers")
        return value

    @field_validator("type")
    @classmethod
    def _check_type(cls, value: str) -> str:
        value = value.strip().lower().replace(" ", "")
        if not _TYPE_RE.fullmatch(value):
            raise ValueError(f"unsupported type {value!r}")
        return value


BadRowPolicy = Literal["quarantine_rows", "reject_file"]


class TenantOverride(BaseModel):
    """What one tenant may change in a dataset's contract."""

    model_config = ConfigDict(frozen=True, extra="forbid")

    options: Mapping[str, str] | None = None
    expectations: str | None = None
    on_bad_rows: BadRowPolicy | None = None


class DatasetContract(BaseModel):
    """What a dataset's raw files hold and how its silver table is laid out.

    Attributes:
        name: The dataset (third segment of raw keys).
        format: ``csv`` (with a header; ``.gz`` too), ``jsonl`` or ``parquet``.
        options: Reader options (CSV: ``delimiter``, ``quote``, ...).
        columns: Declared columns, in table order.
        partition_by: Iceberg partition transforms.
        primary_key: Columns that identify a row within an object (checked: not null,
            unique per object).
        expectations: Name of the great-expectations suite in ``conf/expectations/``
            (``<name>.json``); None for no row-level checks beyond the schema and key.
        on_bad_rows: ``quarantine_rows`` lands a file's good rows and quarantines the
            bad ones; ``reject_file`` quarantines the whole file if any row is bad.
        tenants: Per-tenant overrides.
    """

    model_config = ConfigDict(frozen=True, extra="forbid")

    name: str
    format: Literal["csv", "jsonl", "parquet"]
    options: Mapping[str, str] = Field(default_factory=dict)
    columns: tuple[ColumnSpec, ...]
    partition_by: tuple[str, ...] = ()
    primary_key: tuple[str, ...] = ()
    expectations: str | None = None
    on_bad_rows: BadRowPolicy = "quarantine_rows"
    tenants: Mapping[str, TenantOverride] = Field(default_factory=dict)

    def for_tenant(self, tenant: str) -> DatasetContract:
        """The contract as it applies to ``tenant`` (overrides merged in)."""
        override = self.tenants.get(tenant)
        if override is None:
            return self
        changes = {k: v for k, v in override.model_dump().items() if v is not None}
        if "options" in changes:
            changes["options"] = {**self.options, **changes["options"]}
        return self.model_copy(update=changes)

    @model_validator(mode="after")
    def _check_partitions(self) -> DatasetContract:
        names = {c.name for c in self.columns}
        if len(names) != len(self.columns):
            raise ValueError("duplicate column names")
        for spec in self.partition_by:
            match = _TRANSFORM_RE.fullmatch(spec.strip())
            if not match:
                raise ValueError(f"partition_by: unsupported transform {spec!r}")
            column = next(g for g in match.groups()[1:] if g)
            if column not in names:
                raise ValueError(f"partition_by: {spec!r} names unknown column {column!r}")
        for column in self.primary_key:
            if column not in names:
                raise ValueError(f"primary_key: unknown column {column!r}")
        return self

    def ddl_columns(self) -> str:
        """Columns as Spark SQL DDL (``name type [NOT NULL], ...``)."""
        return ", ".join(f"{c.name} {c.type}{'' if c.nullable else ' NOT NULL'}" for c in self.columns)

    @property
    def column_names(self) -> tuple[str, ...]:
        """Declared column names in order."""
        return tuple(c.name for c in self.columns)


def load_contracts(path: str | Path) -> dict[str, DatasetContract]:
    """Load every dataset contract from a YAML file.

    Args:
        path: The contracts file (``stream.datasets_file``).

    Returns:
        Contracts by dataset name.

    Raises:
        ConfigError: The file is unreadable or a contract is invalid (the message names it).
    """
    try:
        doc = yaml.safe_load(Path(path).read_text(encoding="utf-8")) or {}
    except (OSError, yaml.YAMLError) as exc:
        raise ConfigError(f"cannot read dataset contracts {path}: {exc}") from exc
    datasets = doc.get("datasets") if isinstance(doc, dict) else None
    if not isinstance(datasets, dict) or not datasets:
        raise ConfigError(f"{path}: expected a 'datasets' mapping with at least one dataset")
    contracts = {}
    for name, body in datasets.items():
        try:
            contracts[name] = DatasetContract.model_validate({"name": name, **(body or {})})
        except ValidationError as exc:
            problems = "; ".join(
                f"{'.'.join(str(p) for p in e['loc']) or name}: {e['msg'].removeprefix('Value error, ')}"
                for e in exc.errors()
            )
            raise ConfigError(f"{path}: dataset {name!r}: {problems}") from exc
    return contracts

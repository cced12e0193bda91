"""The tenant registry: tenant groups (a bucket and a queue each) and tenants (a prefix each).

Two backends behind one interface: DynamoDB (tables ``TenantGroups`` and
``Tenants``, the production store) and a local JSON file (the embedded mode).
``registry.backend: none`` means there is no registry: every tenant prefix in
the group's bucket is processed.
"""

from __future__ import annotations

import contextlib
import fcntl
import json
import os
import re
from collections.abc import Iterable, Iterator
from dataclasses import asdict, dataclass, field, replace
from datetime import UTC, datetime
from pathlib import Path
from typing import Any, Protocol, TypeVar

from jobs.config import ConfigError, SilverlineConfig
from jobs.events.model import NAME_RE

ACTIVE = "ACTIVE"
SUSPENDED = "SUSPENDED"
OFFBOARDED = "OFFBOARDED"
STATUSES = (ACTIVE, SUSPENDED, OFFBOARDED)
# The stream's rule for the tenant segment of a key: a tenant becomes an Iceberg namespace.
_TENANT_RE = re.compile(NAME_RE)
_R = TypeVar("_R", "TenantGroup", "Tenant")


class RegistryError(ValueError):
    """A registry record is missing, invalid, or cannot be read or written."""


def check_tenant_name(name: str) -> str:
    """A tenant name is one safe S3 path segment (R2) the stream accepts: letters, digits, '_', '-'.

    It is the stream's own rule for the tenant segment of a key (the tenant becomes an
    Iceberg namespace), so no '.' either: a registered tenant's events are never rejected.

    Raises:
        RegistryError: The name could escape or confuse the tenant prefix.
    """
    if not isinstance(name, str) or not _TENANT_RE.fullmatch(name):
        raise RegistryError(
            f"invalid tenant name {name!r}: use 1-63 letters, digits, '_' or '-', starting with a "
            "letter or digit (no '.', no '/')"
        )
    return name


def tenant_prefix(name: str) -> str:
    """The tenant's key prefix, ``<name>/`` (the stream takes the tenant from the first key segment)."""
    return f"{check_tenant_name(name)}/"


def _now() -> str:
    return datetime.now(UTC).isoformat(timespec="seconds")


@dataclass(frozen=True)
class TenantGroup:
    """One tenant group: one bucket, one SQS queue (and its dead-letter queue)."""

    name: str
    bucket: str
    region: str
    queue_url: str | None = None
    queue_arn: str | None = None
    dlq_url: str | None = None
    dlq_arn: str | None = None
    status: str = ACTIVE
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)


@dataclass(frozen=True)
class Tenant:
    """One tenant: a top-level prefix in its group's bucket."""

    name: str
    group: str
    bucket: str
    region: str
    base_prefix: str = ""
    status: str = ACTIVE
    dataset_overrides: dict[str, Any] = field(default_factory=dict)
    created_at: str = field(default_factory=_now)
    updated_at: str = field(default_factory=_now)

    def __post_init__(self) -> None:
        check_tenant_name(self.name)
        if self.status not in STATUSES:
            raise RegistryError(f"tenant {self.name}: unknown status {self.status!r} (one of {STATUSES})")
        if not self.base_prefix:
            object.__setattr__(self, "base_prefix", f"{self.name}/")


class TenantRegistry(Protocol):
    """What every registry backend offers."""

    def put_group(self, group: TenantGroup) -> None:
        """Create or replace a group record."""

    def get_group(self, name: str) -> TenantGroup | None:
        """The group, or None."""

    def list_groups(self) -> list[TenantGroup]:
        """Every group, by name."""

    def put_tenant(self, tenant: Tenant) -> None:
        """Create or replace a tenant record."""

    def get_tenant(self, group: str, name: str) -> Tenant | None:
        """The tenant of a group, or None."""

    def list_tenants(self, group: str | None = None) -> list[Tenant]:
        """The tenants of one group (or of all groups), by group and name."""


def set_tenant_status(registry: TenantRegistry, group: str, name: str, status: str) -> Tenant:
    """Change a tenant's status (ACTIVE, SUSPENDED, OFFBOARDED) and return the new record.

    Raises:
        RegistryError: No such tenant, or an unknown status.
    """
    tenant = registry.get_tenant(group, name)
    if tenant is None:
        raise RegistryError(f"no tenant {name!r} in group {group!r}")
    updated = replace(tenant, status=status, updated_at=_now())
    registry.put_tenant(updated)
    return updated


def _record(cls: type[_R], record: Any, source: object) -> _R:
    """Build a record, turning a malformed stored entry into a :class:`RegistryError`."""
    if not isinstance(record, dict):
        raise RegistryError(f"tenant registry {source}: a {cls.__name__} entry is not an object")
    try:
        return cls(**record)
    except TypeError as exc:
        raise RegistryError(f"tenant registry {source}: malformed {cls.__name__} entry: {exc}") from exc


# ---- local file -------------------------------------------------------------------------------------
class LocalRegistry:
    """A JSON file: ``{"groups": {name: record}, "tenants": {"group/name": record}}``.

    Writes are atomic (temporary file and rename) and serialised with a lock
    file, so two commands can change the registry at the same time.
    """

    def __init__(self, path: Path) -> None:
        """Open (not create) the registry at ``path``."""
        self.path = path

    def _read(self) -> dict[str, dict[str, Any]]:
        try:
            data = json.loads(self.path.read_text(encoding="utf-8"))
        except FileNotFoundError:
            return {"groups": {}, "tenants": {}}
        except (OSError, ValueError) as exc:
            raise RegistryError(f"cannot read the tenant registry {self.path}: {exc}") from exc
        if not isinstance(data, dict):
            raise RegistryError(f"tenant registry {self.path}: top level must be an object")
        return {"groups": dict(data.get("groups", {})), "tenants": dict(data.get("tenants", {}))}

    @contextlib.contextmanager
    def _update(self) -> Iterator[dict[str, dict[str, Any]]]:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        with open(self.path.with_suffix(".lock"), "w", encoding="utf-8") as lock:
            fcntl.flock(lock, fcntl.LOCK_EX)
            data = self._read()
            yield data
            tmp = self.path.with_suffix(f".tmp-{os.getpid()}")
            with open(tmp, "w", encoding="utf-8") as out:
                out.write(json.dumps(data, indent=2, sort_keys=True) + "\n")
                out.flush()
                os.fsync(out.fileno())  # the rename never publishes a file whose bytes are not on disk
            os.replace(tmp, self.path)

    def put_group(self, group: TenantGroup) -> None:  # noqa: D102
        with self._update() as data:
            data["groups"][group.name] = asdict(group)

    def get_group(self, name: str) -> TenantGroup | None:  # noqa: D102
        record = self._read()["groups"].get(name)
        return None if record is None else _record(TenantGroup, record, self.path)

    def list_groups(self) -> list[TenantGroup]:  # noqa: D102
        return [_record(TenantGroup, r, self.path) for _, r in sorted(self._read()["groups"].items())]

    def put_tenant(self, tenant: Tenant) -> None:  # noqa: D102
        self.put_tenants([tenant])

    def put_tenants(self, tenants: Iterable[Tenant]) -> int:
        """Create or replace many tenants in one locked write (a bulk load rewrites the file once).

        Returns:
            How many records were written.
        """
        with self._update() as data:
            records = {f"{t.group}/{t.name}": asdict(t) for t in tenants}
            data["tenants"].update(records)
        return len(records)

    def get_tenant(self, group: str, name: str) -> Tenant | None:  # noqa: D102
        record = self._read()["tenants"].get(f"{group}/{name}")
        return None if record is None else _record(Tenant, record, self.path)

    def list_tenants(self, group: str | None = None) -> list[Tenant]:  # noqa: D102
        tenants = [_record(Tenant, r, self.path) for _, r in sorted(self._read()["tenants"].items())]
        return [t for t in tenants if group is None or t.group == group]


# ---- DynamoDB -----------------------------------------------------------------------------------------
_GROUP_ATTRS = {
    "name": "GroupName", "bucket": "Bucket", "region": "Region", "queue_url": "QueueURL",
    "queue_arn": "QueueArn", "dlq_url": "DlqURL", "dlq_arn": "DlqArn", "status": "Status",
    "created_at": "CreatedAt", "updated_at": "UpdatedAt",
}  # fmt: skip
_TENANT_ATTRS = {
    "name": "Name", "group": "GroupName", "bucket": "RootS3Bucket", "region": "Region",
    "base_prefix": "BasePrefix", "status": "Status", "dataset_overrides": "DatasetOverrides",
    "created_at": "CreatedAt", "updated_at": "UpdatedAt",
}  # fmt: skip


def _to_item(record: dict[str, Any], attrs: dict[str, str]) -> dict[str, dict[str, str]]:
    item = {}
    for field_name, attr in attrs.items():
        value = record[field_name]
        if value is None:
            continue
        item[attr] = {"S": json.dumps(value, sort_keys=True) if isinstance(value, dict) else str(value)}
    return item


def _from_item(item: dict[str, dict[str, str]], attrs: dict[str, str]) -> dict[str, Any]:
    record: dict[str, Any] = {}
    for field_name, attr in attrs.items():
        if attr in item:
            value: Any = item[attr]["S"]
            record[field_name] = json.loads(value) if field_name == "dataset_overrides" else value
    return record


class DynamoRegistry:
    """The ``TenantGroups`` (key ``GroupName``) and ``Tenants`` (keys ``GroupName``, ``Name``) tables."""

    def __init__(
        self, client: Any, groups_table: str = "TenantGroups", tenants_table: str = "Tenants"
    ) -> None:
        """Use an existing DynamoDB client (tests pass a moto-backed one).

        Args:
            client: A boto3 DynamoDB client.
            groups_table: The groups table name.
            tenants_table: The tenants table name.
        """
        self.client = client
        self.groups_table = groups_table
        self.tenants_table = tenants_table

    def ensure_tables(self) -> list[str]:
        """Create both tables (on-demand billing) if they do not exist.

        Returns:
            The tables created (empty when both were there).
        """
        specs = [
            (self.groups_table, [("GroupName", "HASH")]),
            (self.tenants_table, [("GroupName", "HASH"), ("Name", "RANGE")]),
        ]
        created = []
        for table, keys in specs:
            if self._table_exists(table):
                continue
            self.client.create_table(
                TableName=table,
                KeySchema=[{"AttributeName": a, "KeyType": k} for a, k in keys],
                AttributeDefinitions=[{"AttributeName": a, "AttributeType": "S"} for a, _ in keys],
                BillingMode="PAY_PER_REQUEST",
            )
            self.client.get_waiter("table_exists").wait(TableName=table)
            created.append(table)
        return created

    def _table_exists(self, table: str) -> bool:
        # DescribeTable, not ListTables: ListTables returns 100 names a page.
        try:
            self.client.describe_table(TableName=table)
        except self.client.exceptions.ResourceNotFoundException:
            return False
        return True

    def put_group(self, group: TenantGroup) -> None:  # noqa: D102
        self.client.put_item(TableName=self.groups_table, Item=_to_item(asdict(group), _GROUP_ATTRS))

    def get_group(self, name: str) -> TenantGroup | None:  # noqa: D102
        key = {"GroupName": {"S": name}}
        item = self.client.get_item(TableName=self.groups_table, Key=key, ConsistentRead=True).get("Item")
        return None if item is None else self._group(item)

    def list_groups(self) -> list[TenantGroup]:  # noqa: D102
        items = self._all(TableName=self.groups_table)
        return sorted((self._group(i) for i in items), key=lambda g: g.name)

    def put_tenant(self, tenant: Tenant) -> None:  # noqa: D102
        self.client.put_item(TableName=self.tenants_table, Item=_to_item(asdict(tenant), _TENANT_ATTRS))

    def get_tenant(self, group: str, name: str) -> Tenant | None:  # noqa: D102
        key = {"GroupName": {"S": group}, "Name": {"S": name}}
        item = self.client.get_item(TableName=self.tenants_table, Key=key, ConsistentRead=True).get("Item")
        return None if item is None else self._tenant(item)

    def list_tenants(self, group: str | None = None) -> list[Tenant]:  # noqa: D102
        if group is None:
            items = self._all(TableName=self.tenants_table)
        else:
            items = self._all(
                TableName=self.tenants_table,
                KeyConditionExpression="GroupName = :g",
                ExpressionAttributeValues={":g": {"S": group}},
                operation="query",
            )
        tenants = [self._tenant(i) for i in items]
        return sorted(tenants, key=lambda t: (t.group, t.name))

    def _group(self, item: dict[str, Any]) -> TenantGroup:
        return _record(TenantGroup, _from_item(item, _GROUP_ATTRS), self.groups_table)

    def _tenant(self, item: dict[str, Any]) -> Tenant:
        return _record(Tenant, _from_item(item, _TENANT_ATTRS), self.tenants_table)

    def _all(self, operation: str = "scan", **kwargs: Any) -> list[dict[str, Any]]:
        # Strongly consistent, so a command sees what the previous one wrote.
        paginator = self.client.get_paginator(operation)
        pages = paginator.paginate(ConsistentRead=True, **kwargs)
        return [item for page in pages for item in page.get("Items", [])]


def open_registry(config: SilverlineConfig, *, dynamodb_client: Any = None) -> TenantRegistry | None:
    """The registry the configuration names (None for ``registry.backend: none``).

    Args:
        config: The job configuration.
        dynamodb_client: A DynamoDB client to use (default: one for ``aws.region`` and
            ``registry.endpoint_url`` / ``aws.endpoint_url``).

    Raises:
        ConfigError: The local registry has no usable path.
    """
    backend = config.registry.backend
    if backend == "none":
        return None
    if backend == "local":
        return LocalRegistry(config.registry_path)
    if dynamodb_client is None:
        import boto3

        dynamodb_client = boto3.client(
            "dynamodb",
            region_name=config.aws.region,
            endpoint_url=config.registry.endpoint_url or config.aws.endpoint_url,
        )
    if not config.registry.groups_table or not config.registry.tenants_table:
        raise ConfigError("registry.groups_table and registry.tenants_table must be set for dynamodb")
    return DynamoRegistry(dynamodb_client, config.registry.groups_table, config.registry.tenants_table)

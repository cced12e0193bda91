"""The tenant registry: both backends (a JSON file; DynamoDB on moto's server) behave alike."""

from __future__ import annotations

import json
import multiprocessing
import uuid
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest

from jobs.config import load_config
from jobs.events.model import EVENT
from jobs.events.parse import parse_message
from jobs.tenants.provision import change_status
from jobs.tenants.registry import (
    ACTIVE,
    OFFBOARDED,
    SUSPENDED,
    DynamoRegistry,
    LocalRegistry,
    RegistryError,
    Tenant,
    TenantGroup,
    TenantRegistry,
    check_tenant_name,
    open_registry,
    set_tenant_status,
)

VALID = ["acme", "a", "7eleven", "Acme_Corp-2", "x" * 63]
INVALID = [
    "",
    "acme/raw",
    "..",
    "a..b",
    "acme.co",
    ".hidden",
    "-acme",
    "_acme",
    "x" * 64,
    "ac me",
    "acme\n",
    "ac\x00me",
    "é",
]


def dynamo_client(endpoint: str) -> Any:
    return boto3.client("dynamodb", endpoint_url=endpoint, region_name="us-east-1")


@pytest.fixture(
    params=[
        pytest.param("local", marks=pytest.mark.unit),
        pytest.param("dynamodb", marks=pytest.mark.integration),
    ]
)
def registry(request: pytest.FixtureRequest, tmp_path: Path) -> Iterator[TenantRegistry]:
    if request.param == "local":
        yield LocalRegistry(tmp_path / "registry" / "registry.json")
        return
    endpoint = request.getfixturevalue("moto_endpoint")
    suffix = uuid.uuid4().hex[:8]
    dynamo = DynamoRegistry(dynamo_client(endpoint), f"groups-{suffix}", f"tenants-{suffix}")
    assert dynamo.ensure_tables() == [f"groups-{suffix}", f"tenants-{suffix}"]
    yield dynamo


def group(name: str = "g1", bucket: str = "g1-bucket") -> TenantGroup:
    return TenantGroup(
        name=name, bucket=bucket, region="eu-west-1", queue_url=None, queue_arn="arn:aws:sqs:q"
    )


def tenant(name: str, group_name: str = "g1", **fields: Any) -> Tenant:
    return Tenant(name=name, group=group_name, bucket=f"{group_name}-bucket", region="eu-west-1", **fields)


def test_groups_round_trip(registry: TenantRegistry) -> None:
    assert registry.get_group("g1") is None
    assert registry.list_groups() == []
    first, second = group("g1"), group("g0", "g0-bucket")
    registry.put_group(first)
    registry.put_group(second)
    assert registry.get_group("g1") == first  # None fields (queue_url) come back as None
    assert registry.list_groups() == [second, first]


def test_tenants_round_trip_by_group_and_name(registry: TenantRegistry) -> None:
    overrides = {"orders": {"max_files": 3, "tags": ["a", None]}}
    records = [
        tenant("zeta"),
        tenant("acme", dataset_overrides=overrides),
        tenant("acme", "g2"),
        tenant("b-2", "g2"),
    ]
    for record in records:
        registry.put_tenant(record)
    assert registry.get_tenant("g1", "acme") == records[1]
    assert registry.get_tenant("g1", "acme").dataset_overrides == overrides  # type: ignore[union-attr]
    assert registry.get_tenant("g1", "nobody") is None
    assert registry.get_tenant("g3", "acme") is None
    assert [t.name for t in registry.list_tenants("g1")] == ["acme", "zeta"]
    assert [(t.group, t.name) for t in registry.list_tenants()] == [
        ("g1", "acme"),
        ("g1", "zeta"),
        ("g2", "acme"),
        ("g2", "b-2"),
    ]
    assert registry.list_tenants("g3") == []


def test_put_replaces_and_base_prefix_defaults_to_the_name(registry: TenantRegistry) -> None:
    registry.put_tenant(tenant("acme"))
    registry.put_tenant(tenant("acme", status=SUSPENDED))
    stored = registry.get_tenant("g1", "acme")
    assert stored is not None and stored.status == SUSPENDED and stored.base_prefix == "acme/"
    assert len(registry.list_tenants("g1")) == 1


def test_status_changes(registry: TenantRegistry) -> None:
    created = tenant("acme", created_at="2020-01-01T00:00:00+00:00", updated_at="2020-01-01T00:00:00+00:00")
    registry.put_tenant(created)
    suspended = set_tenant_status(registry, "g1", "acme", SUSPENDED)
    assert suspended.status == SUSPENDED and suspended.created_at == created.created_at
    assert suspended.updated_at > created.updated_at
    assert registry.get_tenant("g1", "acme") == suspended
    assert change_status(registry, "g1", "acme", SUSPENDED) == (suspended, False)
    resumed, changed = change_status(registry, "g1", "acme", ACTIVE)
    assert changed and resumed.status == ACTIVE and registry.get_tenant("g1", "acme") == resumed
    set_tenant_status(registry, "g1", "acme", OFFBOARDED)
    with pytest.raises(RegistryError, match="offboarded: onboard it again"):
        change_status(registry, "g1", "acme", ACTIVE)
    with pytest.raises(RegistryError, match="unknown status 'GONE'"):
        set_tenant_status(registry, "g1", "acme", "GONE")
    assert registry.get_tenant("g1", "acme").status == OFFBOARDED  # type: ignore[union-attr]
    with pytest.raises(RegistryError, match="no tenant 'nobody' in group 'g1'"):
        set_tenant_status(registry, "g1", "nobody", SUSPENDED)
    with pytest.raises(RegistryError, match="no tenant 'acme' in group 'g2'"):
        change_status(registry, "g2", "acme", SUSPENDED)


@pytest.mark.unit
@pytest.mark.parametrize("name", INVALID)
def test_invalid_tenant_names_are_refused(name: str) -> None:
    with pytest.raises(RegistryError, match="invalid tenant name"):
        check_tenant_name(name)
    with pytest.raises(RegistryError, match="invalid tenant name"):
        tenant(name)


@pytest.mark.unit
@pytest.mark.parametrize("name", VALID)
def test_valid_tenant_names_are_tenants_to_the_stream(name: str) -> None:
    assert check_tenant_name(name) == name
    body = {
        "Records": [
            {
                "eventName": "ObjectCreated:Put",
                "eventTime": "2024-06-01T00:00:00.000Z",
                "s3": {
                    "bucket": {"name": "b"},
                    "object": {"key": f"{name}/raw/orders/x.csv", "sequencer": "0A"},
                },
            }
        ]
    }
    (record,) = parse_message(json.dumps(body))
    assert (record.outcome, record.tenant, record.dataset) == (EVENT, name, "orders")


@pytest.mark.unit
def test_local_registry_rejects_a_malformed_file(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    path.write_text("{not json", encoding="utf-8")
    with pytest.raises(RegistryError, match="cannot read the tenant registry"):
        LocalRegistry(path).list_tenants()
    path.write_text(json.dumps({"tenants": {"g1/acme": {"name": "acme", "colour": "red"}}}), encoding="utf-8")
    with pytest.raises(RegistryError, match="malformed Tenant entry"):
        LocalRegistry(path).list_tenants()
    path.write_text(
        json.dumps({"tenants": {"g1/x": {"name": "a/b", "group": "g1", "bucket": "b", "region": "r"}}})
    )
    with pytest.raises(RegistryError, match="invalid tenant name 'a/b'"):
        LocalRegistry(path).get_tenant("g1", "x")


def _writer(path: str, worker: int, count: int) -> None:
    registry = LocalRegistry(Path(path))
    for i in range(count):
        registry.put_tenant(tenant(f"w{worker}-t{i}"))
        if i % 5 == 0:
            registry.put_group(group(f"g-w{worker}-{i}"))


@pytest.mark.unit
def test_local_registry_survives_concurrent_writers(tmp_path: Path) -> None:
    path = tmp_path / "registry.json"
    workers, count = 4, 25
    context = multiprocessing.get_context("spawn")
    processes = [context.Process(target=_writer, args=(str(path), w, count)) for w in range(workers)]
    for process in processes:
        process.start()
    for process in processes:
        process.join(timeout=60)
        assert process.exitcode == 0
    registry = LocalRegistry(path)
    names = {t.name for t in registry.list_tenants("g1")}
    assert names == {f"w{w}-t{i}" for w in range(workers) for i in range(count)}  # no write was lost
    assert len(registry.list_groups()) == workers * 5
    json.loads(path.read_text(encoding="utf-8"))
    assert sorted(p.name for p in tmp_path.iterdir()) == [
        "registry.json",
        "registry.lock",
    ]  # no temp files left


@pytest.mark.integration
def test_dynamo_ensure_tables_is_idempotent_and_keys_are_right(moto_endpoint: str) -> None:
    client = dynamo_client(moto_endpoint)
    suffix = uuid.uuid4().hex[:8]
    registry = DynamoRegistry(client, f"G-{suffix}", f"T-{suffix}")
    assert registry.ensure_tables() == [f"G-{suffix}", f"T-{suffix}"]
    assert registry.ensure_tables() == []
    schema = client.describe_table(TableName=f"T-{suffix}")["Table"]["KeySchema"]
    assert schema == [
        {"AttributeName": "GroupName", "KeyType": "HASH"},
        {"AttributeName": "Name", "KeyType": "RANGE"},
    ]
    registry.put_tenant(tenant("acme"))
    item = client.get_item(TableName=f"T-{suffix}", Key={"GroupName": {"S": "g1"}, "Name": {"S": "acme"}})[
        "Item"
    ]
    assert item["RootS3Bucket"] == {"S": "g1-bucket"} and item["BasePrefix"] == {"S": "acme/"}


@pytest.mark.unit
def test_open_registry_follows_the_backend(tmp_path: Path) -> None:
    def config(**registry: Any) -> Any:
        return load_config(environ={}, overrides={"lake": {"root": str(tmp_path)}, "registry": registry})

    assert open_registry(config()) is None
    local = open_registry(config(backend="local"))
    assert isinstance(local, LocalRegistry) and local.path == tmp_path / "_registry" / "registry.json"
    client = boto3.client("dynamodb", region_name="us-east-1", endpoint_url="http://127.0.0.1:9")
    dynamo = open_registry(config(backend="dynamodb", tenants_table="T"), dynamodb_client=client)
    assert isinstance(dynamo, DynamoRegistry) and (dynamo.groups_table, dynamo.tenants_table) == (
        "TenantGroups",
        "T",
    )

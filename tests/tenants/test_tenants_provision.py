"""Onboarding and offboarding against moto's server (real S3, SQS, SNS and STS wire APIs)."""

from __future__ import annotations

import json
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import boto3
import pytest

from jobs.cli import main
from jobs.events.model import EVENT
from jobs.events.parse import parse_message
from jobs.tenants.bucket import (
    CREATED,
    LIFECYCLE_RULE_ID,
    SKIPPED,
    UNCHANGED,
    UPDATED,
    ProvisionError,
    merge_notifications,
)
from jobs.tenants.provision import GroupSpec, change_status, create_group, create_tenant
from jobs.tenants.purge import PurgeError, offboard, purge_local_dir, purge_prefix
from jobs.tenants.queue import POLICY_SID
from jobs.tenants.registry import ACTIVE, OFFBOARDED, SUSPENDED, LocalRegistry, RegistryError

ACCOUNT = "123456789012"  # moto's account
WRITES = ("Put", "Set", "Create", "Delete")


@dataclass
class Aws:
    endpoint: str
    s3: Any
    sqs: Any
    sts: Any
    sns: Any
    calls: list[str]

    def writes(self) -> list[str]:
        return [c for c in self.calls if c.startswith(WRITES)]


@pytest.fixture
def aws(moto_endpoint: str) -> Aws:
    def client(service: str) -> Any:
        return boto3.client(service, endpoint_url=moto_endpoint, region_name="us-east-1")

    calls: list[str] = []
    clients = {name: client(name) for name in ("s3", "sqs", "sts", "sns")}
    for c in clients.values():
        c.meta.events.register("before-call", lambda model, **_: calls.append(model.name))
    return Aws(moto_endpoint, calls=calls, **clients)


@pytest.fixture
def spec() -> GroupSpec:
    name = f"g{uuid.uuid4().hex[:10]}"
    return GroupSpec(name=name, bucket=f"{name}-bucket", region="us-east-1", max_receive_count=3)


@pytest.fixture
def registry(tmp_path: Path) -> LocalRegistry:
    return LocalRegistry(tmp_path / "registry.json")


def provision(aws: Aws, spec: GroupSpec, registry: LocalRegistry | None) -> Any:
    return create_group(spec, s3=aws.s3, sqs=aws.sqs, sts=aws.sts, registry=registry)


def queue_attributes(aws: Aws, url: str) -> dict[str, str]:
    return dict(aws.sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["All"])["Attributes"])


def notifications(aws: Aws, bucket: str) -> dict[str, Any]:
    config = dict(aws.s3.get_bucket_notification_configuration(Bucket=bucket))
    config.pop("ResponseMetadata")
    return config


def receive_bodies(aws: Aws, url: str, want: int) -> list[str]:
    bodies: list[str] = []
    for _ in range(10):
        messages = aws.sqs.receive_message(QueueUrl=url, MaxNumberOfMessages=10, WaitTimeSeconds=1).get(
            "Messages", []
        )
        for message in messages:
            bodies.append(message["Body"])
            aws.sqs.delete_message(QueueUrl=url, ReceiptHandle=message["ReceiptHandle"])
        if len(bodies) >= want:
            break
    return bodies


@pytest.mark.integration
def test_create_group_twice_is_a_no_op_the_second_time(
    aws: Aws, spec: GroupSpec, registry: LocalRegistry
) -> None:
    first = provision(aws, spec, registry)
    assert [(c.resource, c.action) for c in first.changes] == [
        ("bucket", CREATED),
        ("dead-letter queue", CREATED),
        ("queue", CREATED),
        ("queue policy", CREATED),
        ("notifications", CREATED),
        ("lifecycle rule", CREATED),
        ("registry record", CREATED),
    ]
    stored = registry.get_group(spec.name)
    assert stored == first.group
    assert stored.queue_url.endswith(f"/silverline-{spec.name}") and stored.dlq_arn.endswith("-dlq")  # type: ignore[union-attr]
    aws.calls.clear()
    second = provision(aws, spec, registry)
    assert {c.action for c in second.changes} == {UNCHANGED} and not second.changed
    assert aws.writes() == []  # nothing was written: only reads
    assert second.group == stored and registry.get_group(spec.name) == stored  # created_at kept


@pytest.mark.integration
def test_queue_policy_redrive_and_lifecycle(aws: Aws, spec: GroupSpec, registry: LocalRegistry) -> None:
    group = provision(aws, spec, registry).group
    attrs = queue_attributes(aws, group.queue_url)
    redrive = json.loads(attrs["RedrivePolicy"])
    assert redrive["deadLetterTargetArn"] == group.dlq_arn and int(redrive["maxReceiveCount"]) == 3
    assert attrs["VisibilityTimeout"] == "120"
    assert queue_attributes(aws, group.dlq_url)["MessageRetentionPeriod"] == "1209600"
    (statement,) = json.loads(attrs["Policy"])["Statement"]
    assert statement["Sid"] == POLICY_SID
    assert statement["Principal"] == {"Service": "s3.amazonaws.com"}
    assert statement["Action"] == "sqs:SendMessage" and statement["Resource"] == group.queue_arn
    assert statement["Condition"] == {
        "ArnLike": {"aws:SourceArn": f"arn:aws:s3:::{spec.bucket}"},
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
    }
    (rule,) = aws.s3.get_bucket_lifecycle_configuration(Bucket=spec.bucket)["Rules"]
    assert rule["ID"] == LIFECYCLE_RULE_ID and rule["AbortIncompleteMultipartUpload"] == {
        "DaysAfterInitiation": 7
    }
    (ours,) = notifications(aws, spec.bucket)["QueueConfigurations"]
    assert ours["Id"] == f"silverline-{spec.name}" and ours["QueueArn"] == group.queue_arn
    assert sorted(ours["Events"]) == ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"] and "Filter" not in ours


@pytest.mark.integration
def test_existing_configuration_of_the_bucket_is_kept(
    aws: Aws, spec: GroupSpec, registry: LocalRegistry
) -> None:
    aws.s3.create_bucket(Bucket=spec.bucket)
    topic = aws.sns.create_topic(Name=f"{spec.name}-restores")["TopicArn"]
    other_url = aws.sqs.create_queue(QueueName=f"{spec.name}-tags")["QueueUrl"]
    other_arn = queue_attributes(aws, other_url)["QueueArn"]
    aws.sqs.set_queue_attributes(QueueUrl=other_url, Attributes={"Policy": json.dumps({"Statement": []})})
    theirs_topic = {"Id": "restores", "TopicArn": topic, "Events": ["s3:ObjectRestore:Completed"]}
    theirs_queue = {
        "Id": "exports-tagged",
        "QueueArn": other_arn,
        "Events": ["s3:ObjectTagging:*"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "exports/"}]}},
    }
    aws.s3.put_bucket_notification_configuration(
        Bucket=spec.bucket,
        NotificationConfiguration={
            "TopicConfigurations": [theirs_topic],
            "QueueConfigurations": [theirs_queue],
        },
    )
    theirs_rule = {
        "ID": "expire-tmp",
        "Filter": {"Prefix": "tmp/"},
        "Status": "Enabled",
        "Expiration": {"Days": 1},
    }
    aws.s3.put_bucket_lifecycle_configuration(
        Bucket=spec.bucket, LifecycleConfiguration={"Rules": [theirs_rule]}
    )
    before = notifications(aws, spec.bucket)

    changes = {c.resource: c.action for c in provision(aws, spec, registry).changes}
    assert changes["bucket"] == UNCHANGED and changes["notifications"] == CREATED
    changes = {
        c.resource: c.action
        for c in provision(aws, GroupSpec(**{**vars(spec), "abort_multipart_days": 2}), registry).changes
    }
    assert changes["notifications"] == UNCHANGED and changes["lifecycle rule"] == UPDATED

    after = notifications(aws, spec.bucket)
    assert after["TopicConfigurations"] == before["TopicConfigurations"]
    queues = {c["Id"]: c for c in after["QueueConfigurations"]}
    assert sorted(queues) == ["exports-tagged", f"silverline-{spec.name}"]  # ours once, theirs untouched
    assert queues["exports-tagged"] == {c["Id"]: c for c in before["QueueConfigurations"]}["exports-tagged"]
    rules = {r["ID"]: r for r in aws.s3.get_bucket_lifecycle_configuration(Bucket=spec.bucket)["Rules"]}
    assert sorted(rules) == ["expire-tmp", LIFECYCLE_RULE_ID]
    assert rules["expire-tmp"]["Expiration"] == {"Days": 1} and rules["expire-tmp"]["Filter"] == {
        "Prefix": "tmp/"
    }
    assert rules[LIFECYCLE_RULE_ID]["AbortIncompleteMultipartUpload"] == {"DaysAfterInitiation": 2}


@pytest.mark.unit
def test_merge_keeps_eventbridge_and_lambda_and_replaces_ours() -> None:
    """moto accepts an EventBridgeConfiguration but never returns it, so this merge is checked offline."""
    lam = {
        "Id": "thumbs",
        "LambdaFunctionArn": "arn:aws:lambda:us-east-1:1:function:f",
        "Events": ["s3:ObjectRestore:*"],
    }
    stale = {
        "Id": "silverline-g1",
        "QueueArn": "arn:aws:sqs:us-east-1:1:old",
        "Events": ["s3:ObjectCreated:*"],
    }
    current = {
        "EventBridgeConfiguration": {},
        "LambdaFunctionConfigurations": [lam],
        "QueueConfigurations": [stale],
    }
    merged = merge_notifications({**current, "ResponseMetadata": {}}, "g1", "arn:aws:sqs:us-east-1:1:new")
    assert merged == {
        "EventBridgeConfiguration": {},
        "LambdaFunctionConfigurations": [lam],
        "QueueConfigurations": [
            {
                "Id": "silverline-g1",
                "QueueArn": "arn:aws:sqs:us-east-1:1:new",
                "Events": ["s3:ObjectCreated:*", "s3:ObjectRemoved:*"],
            }
        ],
    }
    assert (
        merge_notifications(merged, "g1", "arn:aws:sqs:us-east-1:1:new") is None
    )  # in place: nothing to write
    with pytest.raises(ProvisionError, match="'silverline-g1' already receives"):
        merge_notifications(
            merged, "g2", "arn:aws:sqs:us-east-1:1:g2"
        )  # another group's config on our events


@pytest.mark.integration
def test_a_notification_that_takes_our_events_is_refused(
    aws: Aws, spec: GroupSpec, registry: LocalRegistry
) -> None:
    """S3 allows one destination per event type for overlapping keys: say so, change nothing."""
    aws.s3.create_bucket(Bucket=spec.bucket)
    other_url = aws.sqs.create_queue(QueueName=f"{spec.name}-acme")["QueueUrl"]
    theirs = {
        "Id": "acme-only",
        "QueueArn": queue_attributes(aws, other_url)["QueueArn"],
        "Events": ["s3:ObjectCreated:Put"],
        "Filter": {"Key": {"FilterRules": [{"Name": "prefix", "Value": "acme/"}]}},
    }
    aws.s3.put_bucket_notification_configuration(
        Bucket=spec.bucket, NotificationConfiguration={"QueueConfigurations": [theirs]}
    )
    with pytest.raises(ProvisionError, match="'acme-only' already receives s3:ObjectCreated:Put"):
        provision(aws, spec, registry)
    assert [c["Id"] for c in notifications(aws, spec.bucket)["QueueConfigurations"]] == ["acme-only"]
    assert registry.get_group(spec.name) is None


@pytest.mark.integration
def test_an_upload_reaches_the_groups_queue(aws: Aws, spec: GroupSpec) -> None:
    group = provision(aws, spec, None).group
    assert receive_bodies(aws, group.queue_url, 1)  # the s3:TestEvent S3 sends on configuration
    aws.s3.put_object(Bucket=spec.bucket, Key="acme/raw/orders/2024/06/01.csv", Body=b"id\n1\n")
    aws.s3.delete_object(Bucket=spec.bucket, Key="acme/raw/orders/2024/06/01.csv")
    records = [r for body in receive_bodies(aws, group.queue_url, 2) for r in parse_message(body)]
    assert [(r.outcome, r.tenant, r.dataset, r.event_kind) for r in records] == [
        (EVENT, "acme", "orders", "created"),
        (EVENT, "acme", "orders", "removed"),
    ]
    assert records[0].key == "acme/raw/orders/2024/06/01.csv"


@pytest.mark.integration
def test_bucket_outside_us_east_1_and_a_bucket_in_another_region(moto_endpoint: str, spec: GroupSpec) -> None:
    def client(service: str, region: str) -> Any:
        return boto3.client(service, endpoint_url=moto_endpoint, region_name=region)

    eu = GroupSpec(name=spec.name, bucket=spec.bucket, region="eu-west-1")
    result = create_group(
        eu,
        s3=client("s3", "eu-west-1"),
        sqs=client("sqs", "eu-west-1"),
        sts=client("sts", "eu-west-1"),
        registry=None,
    )
    assert (
        client("s3", "eu-west-1").get_bucket_location(Bucket=spec.bucket)["LocationConstraint"] == "eu-west-1"
    )
    assert result.group.queue_arn.startswith("arn:aws:sqs:eu-west-1:")
    assert result.changes[-1].action == SKIPPED  # no registry, no record
    us = GroupSpec(name=spec.name, bucket=spec.bucket, region="us-east-1")
    with pytest.raises(ProvisionError, match="exists in region eu-west-1, the group is set up for us-east-1"):
        create_group(
            us,
            s3=client("s3", "us-east-1"),
            sqs=client("sqs", "us-east-1"),
            sts=client("sts", "us-east-1"),
            registry=None,
        )


@pytest.mark.integration
def test_a_registered_group_keeps_its_bucket(aws: Aws, spec: GroupSpec, registry: LocalRegistry) -> None:
    provision(aws, spec, registry)
    with pytest.raises(RegistryError, match="registered with bucket"):
        provision(aws, GroupSpec(name=spec.name, bucket=f"{spec.bucket}-2", region="us-east-1"), registry)


@pytest.mark.integration
def test_tenant_lifecycle(aws: Aws, spec: GroupSpec, registry: LocalRegistry) -> None:
    with pytest.raises(RegistryError, match="no tenant group"):
        create_tenant(registry, spec.name, "acme")
    provision(aws, spec, registry)
    with pytest.raises(RegistryError, match="invalid tenant name"):
        create_tenant(registry, spec.name, "../etc")
    acme, action = create_tenant(registry, spec.name, "acme")
    assert action == CREATED and (acme.bucket, acme.base_prefix, acme.status) == (
        spec.bucket,
        "acme/",
        ACTIVE,
    )
    assert create_tenant(registry, spec.name, "acme") == (acme, UNCHANGED)
    suspended, _ = change_status(registry, spec.name, "acme", SUSPENDED)
    assert create_tenant(registry, spec.name, "acme") == (suspended, UNCHANGED)  # create does not resume
    change_status(registry, spec.name, "acme", ACTIVE)
    aws.s3.put_object(Bucket=spec.bucket, Key="acme/raw/orders/a.csv", Body=b"id\n1\n")
    result = offboard(registry, spec.name, "acme")
    assert result.status_changed and result.tenant.status == OFFBOARDED and result.objects_deleted == 0
    assert aws.s3.list_objects_v2(Bucket=spec.bucket, Prefix="acme/")["KeyCount"] == 1  # data kept
    again, action = create_tenant(registry, spec.name, "acme")
    assert action == UPDATED and again.status == ACTIVE and again.created_at == acme.created_at


def _put(aws: Aws, bucket: str, keys: list[str]) -> None:
    for key in keys:
        aws.s3.put_object(Bucket=bucket, Key=key, Body=key.encode())


def _keys(aws: Aws, bucket: str) -> list[str]:
    pages = aws.s3.get_paginator("list_objects_v2").paginate(Bucket=bucket)
    return sorted(o["Key"] for page in pages for o in page.get("Contents", []))


@pytest.mark.integration
def test_purge_deletes_only_the_tenants_prefix(
    aws: Aws, spec: GroupSpec, registry: LocalRegistry, tmp_path: Path
) -> None:
    provision(aws, spec, registry)
    for name in ("acme", "acme2"):
        create_tenant(registry, spec.name, name)
    acme = [
        "acme/raw/orders/a.csv",
        "acme/raw/orders/2024/b.csv",
        "acme/silver/orders/metadata/v1.json",
        "acme/x",
    ]
    others = ["acme2/raw/orders/a.csv", "acme2/x", "acme-3/raw/orders/a.csv", "acmeraw.csv", "top.csv"]
    _put(aws, spec.bucket, acme + others)
    lake = tmp_path / "lake"
    for name in (
        "acme/raw/orders/a.csv",
        "acme/silver/orders/data/1.parquet",
        "acme2/silver/orders/data/1.parquet",
    ):
        (lake / spec.bucket / name).parent.mkdir(parents=True, exist_ok=True)
        (lake / spec.bucket / name).write_text("x")
    (lake / spec.bucket / "acme.txt").write_text("x")

    roots = (lake.as_uri() + "/", "s3://elsewhere/")
    result = offboard(registry, spec.name, "acme", purge=True, s3=aws.s3, lake_roots=roots)
    assert result.objects_deleted == len(acme)
    assert _keys(aws, spec.bucket) == sorted(others)
    assert result.directories_removed == (lake / spec.bucket / "acme",)
    assert result.roots_not_purged == ("s3://elsewhere/",)
    assert sorted(p.name for p in (lake / spec.bucket).iterdir()) == ["acme.txt", "acme2"]
    assert (lake / spec.bucket / "acme2/silver/orders/data/1.parquet").exists()
    assert registry.get_tenant(spec.name, "acme2").status == ACTIVE  # type: ignore[union-attr]
    again = offboard(registry, spec.name, "acme", purge=True, s3=aws.s3, lake_roots=roots)
    assert not again.status_changed and again.objects_deleted == 0 and again.directories_removed == ()


@pytest.mark.integration
def test_purge_pages_through_the_listing_and_every_version(aws: Aws) -> None:
    bucket = f"purge-{uuid.uuid4().hex[:10]}"
    aws.s3.create_bucket(Bucket=bucket)
    keys = [f"acme/raw/orders/{i:04d}.csv" for i in range(25)]
    _put(aws, bucket, [*keys, "acme2/raw/orders/0001.csv"])
    assert purge_prefix(aws.s3, bucket, "acme/", page_size=10) == 25  # 1,000 a page by default
    assert aws.calls.count("DeleteObjects") == 3 and _keys(aws, bucket) == ["acme2/raw/orders/0001.csv"]

    aws.s3.put_bucket_versioning(Bucket=bucket, VersioningConfiguration={"Status": "Enabled"})
    _put(aws, bucket, ["acme/raw/orders/a.csv", "acme/raw/orders/a.csv", "acme2/raw/orders/a.csv"])
    aws.s3.delete_object(Bucket=bucket, Key="acme/raw/orders/a.csv")  # a delete marker on top of two versions
    assert purge_prefix(aws.s3, bucket, "acme/") == 3
    listing = aws.s3.list_object_versions(Bucket=bucket)
    left = sorted(v["Key"] for v in [*listing.get("Versions", []), *listing.get("DeleteMarkers", [])])
    assert left == ["acme2/raw/orders/0001.csv", "acme2/raw/orders/a.csv"]


@pytest.mark.integration
@pytest.mark.parametrize("prefix", ["", "acme", "acme/raw/", "../", "a b/"])
def test_purge_refuses_anything_but_one_tenant_segment(aws: Aws, prefix: str) -> None:
    with pytest.raises((PurgeError, RegistryError)):
        purge_prefix(aws.s3, "any-bucket", prefix)
    assert aws.calls == []


@pytest.mark.unit
def test_purge_refuses_a_tenant_directory_that_is_a_link(tmp_path: Path) -> None:
    outside = tmp_path / "precious"
    outside.mkdir()
    (outside / "keep.txt").write_text("x")
    (tmp_path / "lake" / "b").mkdir(parents=True)
    (tmp_path / "lake" / "b" / "acme").symlink_to(outside)
    with pytest.raises(PurgeError, match="is a link"):
        purge_local_dir(tmp_path / "lake", "b", "acme")
    assert (outside / "keep.txt").exists()
    assert purge_local_dir(tmp_path / "lake", "b", "nobody") is None


# ---- the command line --------------------------------------------------------------------------------


def cli(aws: Aws, tmp_path: Path, spec: GroupSpec, *argv: str, backend: str = "local") -> list[str]:
    config = tmp_path / "silverline.yaml"
    config.write_text(
        json.dumps(
            {
                "group": {"name": spec.name, "bucket": spec.bucket},
                "lake": {"root": str(tmp_path / "lake")},
                "registry": {"backend": backend},
            }
        )
    )
    return [*argv, "--config", str(config), "--endpoint-url", aws.endpoint]


@pytest.mark.integration
def test_cli_onboarding(
    aws: Aws, spec: GroupSpec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(cli(aws, tmp_path, spec, "tenants", "create-group")) == 0
    out = capsys.readouterr().out
    assert f"tenant group {spec.name}: bucket {spec.bucket} (us-east-1)" in out and "done: 7 created" in out
    assert main(cli(aws, tmp_path, spec, "tenants", "create-group")) == 0
    assert "nothing to do: the group was complete already" in capsys.readouterr().out
    assert main(cli(aws, tmp_path, spec, "tenants", "create-tenant", "acme")) == 0
    assert main(cli(aws, tmp_path, spec, "tenants", "create-tenant", "beta")) == 0
    assert main(cli(aws, tmp_path, spec, "tenants", "suspend", "beta")) == 0
    capsys.readouterr()
    assert main(cli(aws, tmp_path, spec, "tenants", "list")) == 0
    table = capsys.readouterr().out
    assert "acme" in table and "SUSPENDED" in table and f"s3://{spec.bucket}/acme/" in table
    assert main(cli(aws, tmp_path, spec, "tenants", "show", "beta")) == 0
    shown = json.loads(capsys.readouterr().out)
    assert (shown["name"], shown["status"], shown["base_prefix"]) == ("beta", SUSPENDED, "beta/")
    assert main(cli(aws, tmp_path, spec, "tenants", "show")) == 0
    assert json.loads(capsys.readouterr().out)["bucket"] == spec.bucket
    assert main(cli(aws, tmp_path, spec, "tenants", "resume", "beta")) == 0
    assert main(cli(aws, tmp_path, spec, "tenants", "resume", "beta")) == 0
    assert capsys.readouterr().out.splitlines()[-1] == f"tenant beta (group {spec.name}): ACTIVE already"
    aws.s3.put_object(Bucket=spec.bucket, Key="beta/raw/orders/a.csv", Body=b"x")
    assert main(cli(aws, tmp_path, spec, "tenants", "offboard", "beta", "--purge")) == 0
    assert "deleted 1 objects under" in capsys.readouterr().out


@pytest.mark.integration
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (("tenants", "suspend", "nobody"), "no tenant 'nobody' in group"),
        (("tenants", "resume", "nobody"), "no tenant 'nobody' in group"),
        (("tenants", "offboard", "nobody"), "no tenant 'nobody' in group"),
        (("tenants", "show", "nobody"), "no tenant 'nobody' in group"),
        (("tenants", "create-tenant", "acme"), "no tenant group"),
        (("tenants", "list"), "no tenant group"),
        (("tenants", "create-tenant", "a.b"), "invalid tenant name 'a.b'"),
        (("tenants", "list", "--group", "bad/name"), "group.name"),
    ],
)
def test_cli_usage_errors_exit_2(
    aws: Aws,
    spec: GroupSpec,
    tmp_path: Path,
    capsys: pytest.CaptureFixture[str],
    argv: tuple[str, ...],
    message: str,
) -> None:
    assert main(cli(aws, tmp_path, spec, *argv)) == 2
    assert message in capsys.readouterr().err


@pytest.mark.integration
def test_cli_without_a_registry(
    aws: Aws, spec: GroupSpec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    assert main(cli(aws, tmp_path, spec, "tenants", "list", backend="none")) == 2
    assert "no registry configured (registry.backend: none)" in capsys.readouterr().err
    assert main(cli(aws, tmp_path, spec, "tenants", "create-group", backend="none")) == 0
    assert "no group record written" in capsys.readouterr().out


@pytest.mark.integration
def test_cli_aws_failures_exit_1(
    aws: Aws, spec: GroupSpec, tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    registry = LocalRegistry(tmp_path / "lake" / "_registry" / "registry.json")
    provision(aws, spec, registry)
    create_tenant(registry, spec.name, "acme")
    aws.s3.delete_bucket_lifecycle(Bucket=spec.bucket)
    aws.s3.delete_bucket(Bucket=spec.bucket)  # gone behind the registry's back
    assert main(cli(aws, tmp_path, spec, "tenants", "offboard", "acme", "--purge")) == 1
    err = capsys.readouterr().err
    assert "silverline tenants offboard: AWS request failed" in err and "NoSuchBucket" in err


@pytest.mark.unit
@pytest.mark.parametrize(
    "argv",
    [
        ["tenants"],
        *(
            ["tenants", a]
            for a in (
                "create-group",
                "create-tenant",
                "list",
                "show",
                "suspend",
                "resume",
                "offboard",
                "presign",
                "credentials",
            )
        ),
        ["upload"],
    ],
)
def test_help_has_examples_and_exit_codes(argv: list[str], capsys: pytest.CaptureFixture[str]) -> None:
    with pytest.raises(SystemExit) as exited:
        main([*argv, "--help"])
    assert exited.value.code == 0
    out = capsys.readouterr().out
    assert "example" in out and "exit codes: 0" in out and "--config" in out

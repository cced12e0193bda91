"""Thin SQS calls the bridge makes, the clients that send them, and how batch results are read.

The bridge sends its calls through :class:`SqsCalls`: by default the lean
:class:`~jobs.bridge.sqsjson.SqsJsonClient` (:func:`make_bridge_client`), or any
boto3 SQS client (injected, or with ``bridge.sqs_transport: boto3``).

Batch requests (DeleteMessageBatch, ChangeMessageVisibilityBatch) take at most
10 entries and can partly fail: :func:`split_outcome` sorts the entries into
succeeded, retryable (server-side failures) and rejected (sender faults, e.g. a
receipt handle that expired — retrying cannot help, the message reappears).
"""

from __future__ import annotations

import logging
import urllib.request
from collections.abc import Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import urlsplit

import boto3
import botocore.session
from botocore.config import Config as BotoConfig
from botocore.httpsession import get_cert_path

from jobs.bridge.sqsjson import SqsJsonClient
from jobs.config import SilverlineConfig

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.literals import MessageSystemAttributeNameType, QueueAttributeNameType
    from mypy_boto3_sqs.type_defs import (
        ChangeMessageVisibilityBatchRequestEntryTypeDef,
        ChangeMessageVisibilityBatchRequestTypeDef,
        ChangeMessageVisibilityBatchResultTypeDef,
        DeleteMessageBatchRequestEntryTypeDef,
        DeleteMessageBatchRequestTypeDef,
        DeleteMessageBatchResultTypeDef,
        GetQueueAttributesRequestTypeDef,
        GetQueueAttributesResultTypeDef,
        MessageTypeDef,
        ReceiveMessageRequestTypeDef,
        ReceiveMessageResultTypeDef,
    )
    from typing_extensions import Unpack

log = logging.getLogger(__name__)

BATCH_LIMIT = 10
#: SQS system attributes asked for with every receive (they feed the bronze line).
RECEIVE_ATTRIBUTES: tuple[MessageSystemAttributeNameType, ...] = ("ApproximateReceiveCount", "SentTimestamp")
_BACKLOG_ATTRIBUTES: tuple[QueueAttributeNameType, ...] = (
    "ApproximateNumberOfMessages",
    "ApproximateNumberOfMessagesNotVisible",
    "ApproximateNumberOfMessagesDelayed",
)


class SqsCalls(Protocol):
    """The SQS calls the bridge makes, as a boto3 SQS client offers them."""

    def receive_message(self, **kwargs: Unpack[ReceiveMessageRequestTypeDef]) -> ReceiveMessageResultTypeDef:
        """ReceiveMessage."""
        ...

    def delete_message_batch(
        self, **kwargs: Unpack[DeleteMessageBatchRequestTypeDef]
    ) -> DeleteMessageBatchResultTypeDef:
        """DeleteMessageBatch."""
        ...

    def change_message_visibility_batch(
        self, **kwargs: Unpack[ChangeMessageVisibilityBatchRequestTypeDef]
    ) -> ChangeMessageVisibilityBatchResultTypeDef:
        """ChangeMessageVisibilityBatch."""
        ...

    def get_queue_attributes(
        self, **kwargs: Unpack[GetQueueAttributesRequestTypeDef]
    ) -> GetQueueAttributesResultTypeDef:
        """GetQueueAttributes."""
        ...

    def close(self) -> None:
        """Close the client's connections."""
        ...


def make_sqs_client(config: SilverlineConfig, session: boto3.session.Session | None = None) -> SQSClient:
    """Build an SQS client for the configured endpoint (AWS, or moto's server).

    Args:
        config: The job configuration.
        session: The boto3 session (default: a new one).

    Returns:
        A thread-safe boto3 client with a connection per concurrent caller.
    """
    settings = BotoConfig(
        max_pool_connections=2 * config.bridge.receivers + 4,
        read_timeout=config.bridge.wait_time_seconds + 30,
        retries={"mode": "standard", "max_attempts": 3},
    )
    session = session or boto3.session.Session()
    return session.client(
        "sqs", region_name=config.aws.region, endpoint_url=config.sqs_endpoint_url, config=settings
    )


def _behind_proxy(endpoint_url: str) -> bool:
    """Whether the environment routes ``endpoint_url`` through an HTTP proxy (boto3 honours those)."""
    parts = urlsplit(endpoint_url)
    proxied = parts.scheme in urllib.request.getproxies()
    return proxied and not urllib.request.proxy_bypass(parts.hostname or "")


def make_bridge_client(config: SilverlineConfig) -> SqsCalls:
    """The bridge's default SQS client: :class:`SqsJsonClient`, or boto3 where that cannot serve.

    Endpoint, region, credentials and CA bundle are resolved by boto3 in either case.
    A boto3 client is used with ``bridge.sqs_transport: boto3`` and when an HTTP proxy
    applies to the endpoint.

    Args:
        config: The job configuration.

    Returns:
        A thread-safe client.
    """
    core = botocore.session.get_session()
    client = make_sqs_client(config, boto3.session.Session(botocore_session=core))
    endpoint = client.meta.endpoint_url
    if config.bridge.sqs_transport == "boto3":
        return client
    if _behind_proxy(endpoint):
        log.info("SQS endpoint %s is behind an HTTP proxy: the bridge uses boto3's client", endpoint)
        return client
    ca_bundle = core.get_config_variable("ca_bundle")
    return SqsJsonClient(
        endpoint,
        client.meta.region_name,
        core.get_credentials(),
        timeout=config.bridge.wait_time_seconds + 30,
        verify=str(ca_bundle) if ca_bundle else str(get_cert_path(True)),
    )


def chunks(items: Sequence[Any], size: int = BATCH_LIMIT) -> Iterator[Sequence[Any]]:
    """Split a sequence into consecutive slices of at most ``size``.

    Args:
        items: The sequence.
        size: Slice length.

    Yields:
        The slices, in order.
    """
    for start in range(0, len(items), size):
        yield items[start : start + size]


@dataclass
class BatchOutcome:
    """How the entries of one batch request ended, as receipt handles.

    Attributes:
        succeeded: Done.
        retryable: Failed on the server's side, try again: ``(handle, error code)``.
        rejected: Failed as the sender's fault: ``(handle, error code)``.
    """

    succeeded: list[str] = field(default_factory=list)
    retryable: list[tuple[str, str]] = field(default_factory=list)
    rejected: list[tuple[str, str]] = field(default_factory=list)


def split_outcome(handles: Sequence[str], response: Mapping[str, Any]) -> BatchOutcome:
    """Sort a batch response's entries; entry ``Id`` is the handle's index.

    Args:
        handles: The receipt handles sent, in order.
        response: The batch call's response (``Successful`` / ``Failed``).

    Returns:
        The outcome. An entry the response does not mention counts as retryable.
    """
    outcome = BatchOutcome()
    seen: set[int] = set()
    for entry in response.get("Successful", []):
        index = int(entry["Id"])
        seen.add(index)
        outcome.succeeded.append(handles[index])
    for entry in response.get("Failed", []):
        index = int(entry["Id"])
        seen.add(index)
        code = str(entry.get("Code", "Unknown"))
        target = outcome.rejected if entry.get("SenderFault") else outcome.retryable
        target.append((handles[index], code))
    for index, handle in enumerate(handles):
        if index not in seen:
            outcome.retryable.append((handle, "MissingFromResponse"))
    return outcome


def receive(
    client: SqsCalls, queue_url: str, *, max_messages: int, wait_seconds: int, visibility_seconds: int
) -> list[MessageTypeDef]:
    """One long-poll ReceiveMessage call.

    Args:
        client: SQS client.
        queue_url: The queue.
        max_messages: At most this many (SQS allows 10).
        wait_seconds: Long-poll wait.
        visibility_seconds: Visibility timeout of the received messages.

    Returns:
        The messages (possibly none).
    """
    response = client.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max_messages,
        WaitTimeSeconds=wait_seconds,
        VisibilityTimeout=visibility_seconds,
        MessageSystemAttributeNames=list(RECEIVE_ATTRIBUTES),
    )
    return list(response.get("Messages", []))


def delete_batch(client: SqsCalls, queue_url: str, handles: Sequence[str]) -> BatchOutcome:
    """One DeleteMessageBatch call for at most 10 receipt handles.

    Args:
        client: SQS client.
        queue_url: The queue.
        handles: Receipt handles.

    Returns:
        The outcome per handle.
    """
    entries: list[DeleteMessageBatchRequestEntryTypeDef] = [
        {"Id": str(i), "ReceiptHandle": h} for i, h in enumerate(handles)
    ]
    response = client.delete_message_batch(QueueUrl=queue_url, Entries=entries)
    return split_outcome(handles, response)


def change_visibility_batch(
    client: SqsCalls, queue_url: str, handles: Sequence[str], seconds: int
) -> BatchOutcome:
    """One ChangeMessageVisibilityBatch call for at most 10 receipt handles.

    Args:
        client: SQS client.
        queue_url: The queue.
        handles: Receipt handles.
        seconds: The new visibility timeout, counted from now.

    Returns:
        The outcome per handle.
    """
    entries: list[ChangeMessageVisibilityBatchRequestEntryTypeDef] = [
        {"Id": str(i), "ReceiptHandle": h, "VisibilityTimeout": seconds} for i, h in enumerate(handles)
    ]
    response = client.change_message_visibility_batch(QueueUrl=queue_url, Entries=entries)
    return split_outcome(handles, response)


def queue_backlog(client: SqsCalls, queue_url: str) -> int:
    """Messages in the queue: visible, in flight (held by anyone) and delayed.

    Args:
        client: SQS client.
        queue_url: The queue.

    Returns:
        The approximate total SQS reports.
    """
    response = client.get_queue_attributes(QueueUrl=queue_url, AttributeNames=list(_BACKLOG_ATTRIBUTES))
    attributes = response.get("Attributes", {})
    return sum(int(attributes.get(name) or "0") for name in _BACKLOG_ATTRIBUTES)

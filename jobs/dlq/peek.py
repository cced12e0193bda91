"""Receive dead-lettered messages without consuming them.

A received message is invisible to everyone else for its visibility timeout.
:func:`holding` remembers every receipt handle of a run and, in ``finally``,
sets each held message's visibility back to 0, so the messages are receivable
again at once, also when the run fails half-way. If even that fails (e.g. the
endpoint went away), they reappear on their own after the visibility timeout.
"""

from __future__ import annotations

import logging
from collections.abc import Iterable, Iterator, Sequence
from contextlib import contextmanager
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from jobs.bridge.sqsapi import BATCH_LIMIT, RECEIVE_ATTRIBUTES, change_visibility_batch, chunks

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

log = logging.getLogger(__name__)

#: Long-poll wait of each receive: > 0 asks every SQS server, so an empty answer means empty.
WAIT_SECONDS = 1


class HeldMessages:
    """Receipt handles of the messages a run received and has not deleted."""

    def __init__(self) -> None:
        """Start with nothing held."""
        self._handles: dict[str, str] = {}  # message id -> latest receipt handle

    def add(self, messages: Iterable[MessageTypeDef]) -> None:
        """Hold received messages (a message received again keeps only its newest handle)."""
        for message in messages:
            self._handles[message["MessageId"]] = message["ReceiptHandle"]

    def forget(self, message_ids: Iterable[str]) -> None:
        """Stop holding messages that were deleted."""
        for message_id in message_ids:
            self._handles.pop(message_id, None)

    @property
    def handles(self) -> list[str]:
        """The receipt handles still held."""
        return list(self._handles.values())


def receive_batch(
    sqs: SQSClient, queue_url: str, *, max_messages: int, visibility_seconds: int
) -> list[MessageTypeDef]:
    """One ReceiveMessage call that also returns message attributes and receive metadata.

    Args:
        sqs: SQS client.
        queue_url: The queue.
        max_messages: 1..10.
        visibility_seconds: How long the messages stay invisible to others.

    Returns:
        The messages (none when the queue has no visible message).
    """
    response = sqs.receive_message(
        QueueUrl=queue_url,
        MaxNumberOfMessages=max(1, min(max_messages, BATCH_LIMIT)),
        WaitTimeSeconds=WAIT_SECONDS,
        VisibilityTimeout=visibility_seconds,
        MessageSystemAttributeNames=list(RECEIVE_ATTRIBUTES),
        MessageAttributeNames=["All"],
    )
    return list(response.get("Messages", []))


def release(sqs: SQSClient, queue_url: str, handles: Sequence[str]) -> int:
    """Make messages visible again now (visibility timeout 0).

    Args:
        sqs: SQS client.
        queue_url: The queue they were received from.
        handles: Their receipt handles.

    Returns:
        How many could not be released (they reappear after their visibility timeout).
    """
    failed = 0
    for chunk in chunks(handles):
        try:
            outcome = change_visibility_batch(sqs, queue_url, chunk, 0)
        except (ClientError, BotoCoreError) as exc:
            log.warning("could not make %d messages visible again: %s", len(chunk), exc)
            failed += len(chunk)
            continue
        for _, code in [*outcome.retryable, *outcome.rejected]:
            log.warning("could not make a message visible again: %s", code)
        failed += len(outcome.retryable) + len(outcome.rejected)
    return failed


@contextmanager
def holding(sqs: SQSClient, queue_url: str) -> Iterator[HeldMessages]:
    """Hold messages for a block; whatever is still held afterwards is released, also on errors.

    Args:
        sqs: SQS client.
        queue_url: The queue messages are received from.

    Yields:
        The held messages: add what you receive, forget what you delete.
    """
    held = HeldMessages()
    try:
        yield held
    finally:
        handles = held.handles
        if handles:
            failed = release(sqs, queue_url, handles)
            log.debug("released %d of %d held messages", len(handles) - failed, len(handles))


def peek(sqs: SQSClient, queue_url: str, *, limit: int, visibility_seconds: int) -> list[MessageTypeDef]:
    """Receive up to ``limit`` distinct messages and leave all of them in the queue, visible.

    Args:
        sqs: SQS client.
        queue_url: The queue (the DLQ).
        limit: At most this many messages.
        visibility_seconds: How long they are held while the run lasts (released at its end).

    Returns:
        The messages in the order received.
    """
    seen: dict[str, MessageTypeDef] = {}
    with holding(sqs, queue_url) as held:
        while len(seen) < limit:
            batch = receive_batch(
                sqs, queue_url, max_messages=limit - len(seen), visibility_seconds=visibility_seconds
            )
            held.add(batch)
            fresh = [m for m in batch if m["MessageId"] not in seen]
            if not fresh:  # empty, or only messages whose hold ran out and came round again
                break
            for message in fresh[: limit - len(seen)]:
                seen[message["MessageId"]] = message
    return list(seen.values())

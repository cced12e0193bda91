"""Move dead-lettered messages back to the main queue: send first, delete after.

A message is deleted from the DLQ only after SendMessageBatch reported it sent,
so nothing is lost; a crash between send and delete leaves a copy in both
queues (at-least-once: the stream's dedupe drops the second one). Messages that
could not be sent stay held (invisible) until the run ends, so one run never
tries them twice, and are then released back into the DLQ.
"""

from __future__ import annotations

import collections
import logging
from collections.abc import Callable, Iterator, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

from botocore.exceptions import BotoCoreError, ClientError

from jobs.bridge.sqsapi import BATCH_LIMIT, delete_batch, split_outcome
from jobs.dlq.peek import HeldMessages, holding, receive_batch

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import (
        MessageAttributeValueTypeDef,
        MessageTypeDef,
        SendMessageBatchRequestEntryTypeDef,
    )

log = logging.getLogger(__name__)

#: SendMessageBatch's limit on the summed size of the bodies and attributes of one call.
MAX_BATCH_BYTES = 256 * 1024


@dataclass
class RedriveResult:
    """What a redrive run did.

    Attributes:
        moved: Sent to the main queue and deleted from the DLQ.
        failed: Not sent; still in the DLQ.
        not_deleted: Sent, but the delete from the DLQ failed: they are in both queues
            (a later redrive sends them again; the stream dedupes them).
        would_move: Dry run: messages that would have been moved.
        errors: Error codes of the failures, counted.
        stopped: Why the run stopped before the DLQ was empty or the limit reached.
    """

    moved: int = 0
    failed: int = 0
    not_deleted: int = 0
    would_move: int = 0
    errors: collections.Counter[str] = field(default_factory=collections.Counter)
    stopped: str | None = None

    @property
    def ok(self) -> bool:
        """Whether every message handled was moved (or, in a dry run, could be)."""
        return not (self.failed or self.not_deleted or self.stopped)


#: Called after each received batch with the running result and the batch.
Progress = Callable[[RedriveResult, Sequence["MessageTypeDef"]], None]


def send_attributes(message: MessageTypeDef) -> dict[str, MessageAttributeValueTypeDef]:
    """The message attributes of a received message in the shape SendMessage takes.

    Args:
        message: The received message.

    Returns:
        Name -> value (data type and string or binary value).
    """
    out: dict[str, MessageAttributeValueTypeDef] = {}
    for name, value in message.get("MessageAttributes", {}).items():
        entry: MessageAttributeValueTypeDef = {"DataType": value["DataType"]}
        if "StringValue" in value:
            entry["StringValue"] = value["StringValue"]
        if "BinaryValue" in value:
            entry["BinaryValue"] = value["BinaryValue"]
        out[name] = entry
    return out


def _size(message: MessageTypeDef) -> int:
    size = len(message.get("Body", "").encode("utf-8"))
    for name, value in message.get("MessageAttributes", {}).items():
        size += len(name.encode("utf-8")) + len(value["DataType"].encode("utf-8"))
        size += len(value.get("StringValue", "").encode("utf-8")) + len(value.get("BinaryValue", b""))
    return size


def send_groups(messages: Sequence[MessageTypeDef]) -> Iterator[list[MessageTypeDef]]:
    """Split messages into SendMessageBatch calls: at most 10 and :data:`MAX_BATCH_BYTES` each.

    Args:
        messages: Received messages.

    Yields:
        Groups in order (a message bigger than the limit goes alone).
    """
    group: list[MessageTypeDef] = []
    size = 0
    for message in messages:
        message_size = _size(message)
        if group and (len(group) == BATCH_LIMIT or size + message_size > MAX_BATCH_BYTES):
            yield group
            group, size = [], 0
        group.append(message)
        size += message_size
    if group:
        yield group


def _entries(group: Sequence[MessageTypeDef]) -> list[SendMessageBatchRequestEntryTypeDef]:
    entries: list[SendMessageBatchRequestEntryTypeDef] = []
    for index, message in enumerate(group):
        entry: SendMessageBatchRequestEntryTypeDef = {"Id": str(index), "MessageBody": message["Body"]}
        attributes = send_attributes(message)
        if attributes:
            entry["MessageAttributes"] = attributes
        entries.append(entry)
    return entries


def _move_group(
    sqs: SQSClient, dlq_url: str, queue_url: str, group: Sequence[MessageTypeDef], held: HeldMessages
) -> RedriveResult:
    """Send one group to the main queue, then delete from the DLQ what was sent."""
    result = RedriveResult()
    by_handle = {m["ReceiptHandle"]: m["MessageId"] for m in group}
    try:
        response = sqs.send_message_batch(QueueUrl=queue_url, Entries=_entries(group))
    except (ClientError, BotoCoreError) as exc:
        result.failed = len(group)
        result.errors[_code(exc)] += len(group)
        result.stopped = f"sending to {queue_url} failed: {exc}"
        return result
    sent = split_outcome(list(by_handle), response)
    for handle, code in [*sent.retryable, *sent.rejected]:
        log.warning("message %s not sent: %s (it stays in the DLQ)", by_handle[handle], code)
        result.errors[code] += 1
    result.failed = len(sent.retryable) + len(sent.rejected)
    if not sent.succeeded:
        return result
    try:
        deleted = delete_batch(sqs, dlq_url, sent.succeeded)
    except (ClientError, BotoCoreError) as exc:
        result.not_deleted = len(sent.succeeded)
        result.errors[_code(exc)] += len(sent.succeeded)
        result.stopped = f"deleting sent messages from {dlq_url} failed: {exc}"
        return result
    held.forget(by_handle[handle] for handle in deleted.succeeded)
    for handle, code in [*deleted.retryable, *deleted.rejected]:
        log.warning("message %s sent but not deleted from the DLQ: %s", by_handle[handle], code)
        result.errors[code] += 1
    result.moved = len(deleted.succeeded)
    result.not_deleted = len(deleted.retryable) + len(deleted.rejected)
    return result


def _code(exc: Exception) -> str:
    if isinstance(exc, ClientError):
        return str(exc.response.get("Error", {}).get("Code", "ClientError"))
    return type(exc).__name__


def _add(total: RedriveResult, part: RedriveResult) -> None:
    total.moved += part.moved
    total.failed += part.failed
    total.not_deleted += part.not_deleted
    total.errors.update(part.errors)
    total.stopped = total.stopped or part.stopped


def redrive(
    sqs: SQSClient,
    dlq_url: str,
    queue_url: str,
    *,
    limit: int | None = None,
    dry_run: bool = False,
    visibility_seconds: int = 300,
    on_batch: Progress | None = None,
) -> RedriveResult:
    """Move messages from the DLQ to the main queue until the DLQ is empty or ``limit`` is reached.

    Args:
        sqs: SQS client.
        dlq_url: The dead-letter queue.
        queue_url: The main queue.
        limit: At most this many messages (None: all).
        dry_run: Only receive and count; every message is left in the DLQ, visible.
        visibility_seconds: How long received messages are held while the run lasts.
        on_batch: Progress callback.

    Returns:
        The counts.
    """
    result = RedriveResult()
    handled = 0
    with holding(sqs, dlq_url) as held:
        while limit is None or handled < limit:
            want = BATCH_LIMIT if limit is None else min(BATCH_LIMIT, limit - handled)
            batch = receive_batch(sqs, dlq_url, max_messages=want, visibility_seconds=visibility_seconds)
            if not batch:
                break
            held.add(batch)
            handled += len(batch)
            if dry_run:
                result.would_move += len(batch)
            else:
                done = 0
                for group in send_groups(batch):
                    _add(result, _move_group(sqs, dlq_url, queue_url, group, held))
                    done += len(group)
                    if result.stopped:
                        result.failed += len(batch) - done  # received, never sent: back to the DLQ
                        break
            if on_batch is not None:
                on_batch(result, batch)
            if result.stopped:
                break
    return result

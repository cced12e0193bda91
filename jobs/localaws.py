"""The local AWS APIs of the embedded mode: moto's server, in-process, on a loopback port."""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager
from typing import Any

log = logging.getLogger(__name__)

# moto accepts any credentials; these keep boto3 from looking for real ones.
TEST_CREDENTIALS = {
    "AWS_ACCESS_KEY_ID": "testing",
    "AWS_SECRET_ACCESS_KEY": "testing",
    "AWS_SESSION_TOKEN": "testing",
}


def free_port() -> int:
    """A TCP port on 127.0.0.1 that is free right now."""
    with socket.socket() as sock:
        sock.bind(("127.0.0.1", 0))
        port: int = sock.getsockname()[1]
        return port


def serialise_moto_sqs() -> None:
    """Make moto's SQS queues receive and delete under the lock sends take, one call at a time.

    moto 5.2 answers calls on many threads but guards a queue's messages only where it
    appends one. Its ``Queue.delete_message`` rebuilds the message list from the list it
    started with: two deletes at once (the bridge deletes in parallel) and a send between
    them lost the sent message and brought a deleted one back. Its receive checks that a
    message is visible, then marks it received: a second receive in between delivered it
    twice, and the second copy's delete then failed. The checks of R7 (the demo's, the
    tests') would blame silverline for either. A receive's long poll waits on the lock's
    condition, which lets the lock go meanwhile. Idempotent.
    """
    from moto.sqs.models import Queue, SQSBackend

    delete, receive = Queue.delete_message, SQSBackend.receive_message

    @functools.wraps(delete)
    def serialised_delete(self: Queue, receipt_handle: str) -> None:
        with self._messages_lock:  # the lock add_message appends under (re-entrant)
            delete(self, receipt_handle)

    @functools.wraps(receive)
    def serialised_receive(self: SQSBackend, queue_name: str, *args: Any, **kwargs: Any) -> Any:
        with self.get_queue(queue_name)._messages_lock:
            return receive(self, queue_name, *args, **kwargs)

    if not getattr(delete, "serialised", False):
        serialised_delete.serialised = True  # type: ignore[attr-defined]
        Queue.delete_message = serialised_delete  # type: ignore[method-assign]
    if not getattr(receive, "serialised", False):
        serialised_receive.serialised = True  # type: ignore[attr-defined]
        SQSBackend.receive_message = serialised_receive  # type: ignore[method-assign]


@contextmanager
def local_aws(port: int | None = None, *, set_credentials: bool = True) -> Iterator[str]:
    """Run moto's server (real SQS/S3/DynamoDB wire APIs) for the duration of the block.

    Args:
        port: The port (default: a free one).
        set_credentials: Put test credentials in the environment when none are set,
            so boto3 clients (also in Spark's Python workers) sign requests.

    Yields:
        The endpoint URL, e.g. ``http://127.0.0.1:50123``.
    """
    from moto.server import ThreadedMotoServer

    serialise_moto_sqs()
    if set_credentials and not os.environ.get("AWS_ACCESS_KEY_ID"):
        os.environ.update(TEST_CREDENTIALS)
    port = port or free_port()
    server = ThreadedMotoServer(ip_address="127.0.0.1", port=port, verbose=False)
    server.start()
    endpoint = f"http://127.0.0.1:{port}"
    log.info("local AWS APIs (moto) at %s", endpoint)
    try:
        yield endpoint
    finally:
        server.stop()

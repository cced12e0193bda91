"""The local AWS APIs of the embedded mode: moto's server, in-process, on a loopback port."""

from __future__ import annotations

import functools
import logging
import os
import socket
from collections.abc import Iterator
from contextlib import contextmanager

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
    """Make moto's SQS queues delete one message at a time, under the lock sends take.

    moto 5.2's ``Queue.delete_message`` rebuilds the queue's message list from the list it
    started with, without a lock, while its server answers calls on many threads. Two deletes
    at once (the bridge deletes in parallel) and a send between them lose the sent message and
    bring a deleted one back. Real SQS has no such race, and R7 checks (the demo's, the tests')
    would report a lost message that silverline did not lose. Idempotent.
    """
    from moto.sqs.models import Queue

    delete = Queue.delete_message
    if getattr(delete, "serialised", False):
        return

    @functools.wraps(delete)
    def serialised_delete(self: Queue, receipt_handle: str) -> None:
        with self._messages_lock:  # the lock add_message appends under (re-entrant)
            delete(self, receipt_handle)

    serialised_delete.serialised = True  # type: ignore[attr-defined]
    Queue.delete_message = serialised_delete  # type: ignore[method-assign]


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

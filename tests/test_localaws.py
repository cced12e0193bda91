"""The local AWS APIs: moto's SQS must not lose a message sent while another is deleted."""

from __future__ import annotations

import threading

import pytest
from moto.sqs import models as sqs_models

from jobs.localaws import local_aws, serialise_moto_sqs

ACCOUNT, REGION = "123456789012", "eu-west-1"


@pytest.fixture
def queue():
    backend = sqs_models.sqs_backends[ACCOUNT][REGION]
    made = backend.create_queue("localaws-race")
    yield backend, made
    backend.delete_queue(made.name)


def test_a_message_sent_while_two_are_deleted_stays_in_the_queue(queue, monkeypatch):
    # moto's Queue.delete_message rebuilds the message list from the one it started with.
    # With two deletes at once (the bridge deletes in parallel) and a send between them, the
    # slower delete wrote back a list without the new message: three notifications of the
    # heavy demo vanished that way, and a deleted one came back. The interleaving is forced
    # here: while delete A walks the list, another thread deletes B and sends C.
    backend, made = queue
    serialise_moto_sqs()
    for body in ("a", "b"):
        backend.send_message(made.name, body)
    handles = {m.body: m.receipt_handle for m in backend.receive_message(made.name, 10, 0, 30)}

    def delete_b_and_send_c():
        backend.delete_message(made.name, handles["b"])
        backend.send_message(made.name, "c")

    calls = {"n": 0}
    other = threading.Thread(target=delete_b_and_send_c)
    original = sqs_models.Message.had_receipt_handle

    def had_receipt_handle(self, receipt_handle):
        calls["n"] += 1
        if calls["n"] == 2:  # delete A's first look while rebuilding (the first is its `any` check)
            other.start()
            other.join(timeout=1.0)  # serialised behind delete A, it cannot finish now
        return original(self, receipt_handle)

    monkeypatch.setattr(sqs_models.Message, "had_receipt_handle", had_receipt_handle)
    backend.delete_message(made.name, handles["a"])
    other.join(timeout=10)

    assert calls["n"] >= 2
    assert not other.is_alive()
    assert [m.body for m in made._messages] == ["c"]


def test_two_receives_at_once_deliver_a_message_once(queue, monkeypatch):
    # moto's receive checks a message's visibility, then marks it received: a second receive
    # between the two delivered it again, and the first copy's delete made the second's fail
    # (ReceiptHandleIsInvalid), a delivery the bridge counts as never deleted. Forced here:
    # while receive A marks the message, another thread receives.
    backend, made = queue
    serialise_moto_sqs()
    backend.send_message(made.name, "once")
    got: list[str] = []
    other = threading.Thread(
        target=lambda: got.extend(m.body for m in backend.receive_message(made.name, 10, 0, 30))
    )
    original = sqs_models.Message.mark_received

    def mark_received(self, visibility_timeout=None):
        if not other.is_alive() and other.ident is None:
            other.start()
            other.join(timeout=1.0)  # serialised behind receive A, it cannot finish now
        return original(self, visibility_timeout)

    monkeypatch.setattr(sqs_models.Message, "mark_received", mark_received)
    got.extend(m.body for m in backend.receive_message(made.name, 10, 0, 30))
    other.join(timeout=10)

    assert not other.is_alive()
    assert got == ["once"]


def test_serialising_twice_wraps_once():
    serialise_moto_sqs()
    wrapped = (sqs_models.Queue.delete_message, sqs_models.SQSBackend.receive_message)
    serialise_moto_sqs()
    assert (sqs_models.Queue.delete_message, sqs_models.SQSBackend.receive_message) == wrapped


def test_the_local_aws_apis_serialise_deletes(monkeypatch):
    unwrapped = getattr(sqs_models.Queue.delete_message, "__wrapped__", sqs_models.Queue.delete_message)
    monkeypatch.setattr(sqs_models.Queue, "delete_message", unwrapped)
    with local_aws(set_credentials=False):
        assert getattr(sqs_models.Queue.delete_message, "serialised", False)

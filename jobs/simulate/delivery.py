"""Delivery the way SQS and S3 really behave: pairs, SNS envelopes, extras, swaps, duplicates, delays.

Each step takes and returns the list of :class:`Message` in publish order and
says exactly how many of each disturbance it injected.
"""

from __future__ import annotations

import random
from dataclasses import dataclass, replace

from jobs.simulate.notifications import MALFORMED_KINDS, NotificationFactory
from jobs.simulate.plan import Operation
from jobs.simulate.spec import DATASETS


@dataclass(frozen=True)
class Message:
    """One body to publish.

    Attributes:
        body: The SQS message body.
        records: Records the parser finds in it (1 for test events and malformed bodies).
        raw: Whether it carries raw-zone records (uploads, bad files, deletes).
        keys: The raw-zone keys it names.
        copy: Whether it is an injected duplicate of an earlier message.
    """

    body: str
    records: int
    raw: bool = False
    keys: tuple[str, ...] = ()
    copy: bool = False


def originals(messages: list[Message]) -> int:
    """Raw-zone messages that are not injected duplicates."""
    return sum(m.raw and not m.copy for m in messages)


def raw_messages(
    operations: list[Operation], factory: NotificationFactory, rng: random.Random, *, pairs: int, sns: float
) -> tuple[list[Message], int]:
    """One message per operation, ``pairs`` of them carrying two consecutive records.

    Returns:
        (messages, how many were wrapped in an SNS envelope: ``round(messages * sns)``).
    """
    records = [factory.record(op.key, op.event_name, op.moment, op.sequencer, op.data) for op in operations]
    starts = {2 * k for k in rng.sample(range(len(records) // 2), pairs)}
    messages: list[Message] = []
    index = 0
    while index < len(records):
        size = 2 if index in starts else 1
        keys = tuple(op.key for op in operations[index : index + size])
        messages.append(Message(factory.message(records[index : index + size]), size, raw=True, keys=keys))
        index += size
    wrapped = rng.sample(range(len(messages)), round(len(messages) * sns))
    for position in wrapped:
        first = operations[min(position, len(operations) - 1)].moment
        body = factory.sns_envelope(messages[position].body, first)
        messages[position] = replace(messages[position], body=body)
    return messages, len(wrapped)


def with_extras(
    messages: list[Message],
    operations: list[Operation],
    factory: NotificationFactory,
    rng: random.Random,
    *,
    tenants: list[str],
    tests: int,
    non_raw: int,
    malformed: int,
) -> list[Message]:
    """Insert test events, events on the silver zone and malformed bodies at random positions."""

    def moment_and_sequencer() -> tuple[Operation, str]:
        return rng.choice(operations), f"{rng.getrandbits(64):018X}"

    extras: list[Message] = []
    for _ in range(tests):
        extras.append(Message(factory.test_event(rng.choice(operations).moment), 1))
    for _ in range(non_raw):
        op, sequencer = moment_and_sequencer()
        tenant, dataset = rng.choice(tenants), rng.choice(DATASETS)
        extras.append(Message(factory.non_raw(tenant, dataset, op.moment, sequencer), 1))
    for number in range(malformed):
        op, sequencer = moment_and_sequencer()
        kind = MALFORMED_KINDS[number % len(MALFORMED_KINDS)]
        extras.append(Message(factory.malformed(kind, rng.choice(tenants), op.moment, sequencer), 1))
    out = list(messages)
    for extra in extras:
        out.insert(rng.randint(0, len(out)), extra)
    return out


def reorder(messages: list[Message], swaps: int, rng: random.Random) -> int:
    """Swap raw-zone messages in place: every other swap between two events of one key.

    Returns:
        Swaps made (``swaps``, or 0 with fewer than two raw-zone messages).
    """
    positions = [i for i, m in enumerate(messages) if m.raw]
    if len(positions) < 2:
        return 0
    last_of_key: dict[str, int] = {}
    same_key: list[tuple[int, int]] = []
    for position in positions:
        for key in messages[position].keys:
            if key in last_of_key:
                same_key.append((last_of_key[key], position))
            last_of_key[key] = position
    for number in range(swaps):
        if number % 2 == 0 and same_key:
            first, second = same_key.pop(rng.randrange(len(same_key)))
        else:
            at = rng.randrange(len(positions) - 1)
            first, second = positions[at], positions[min(at + rng.randint(1, 3), len(positions) - 1)]
        messages[first], messages[second] = messages[second], messages[first]
    return swaps


def duplicate(messages: list[Message], copies: int, rng: random.Random) -> list[Message]:
    """Publish ``copies`` raw-zone messages a second time, each copy somewhere after its original."""
    candidates = [i for i, m in enumerate(messages) if m.raw and not m.copy]
    timed = [(float(i), 0, m) for i, m in enumerate(messages)]
    for position in rng.sample(candidates, min(copies, len(candidates))):
        copy = replace(messages[position], copy=True)
        timed.append((rng.uniform(position + 0.01, len(messages)), 1, copy))
    return [m for _, _, m in sorted(timed, key=lambda t: (t[0], t[1]))]


def delay(messages: list[Message], count: int, rng: random.Random) -> list[Message]:
    """Hold back ``count`` original raw-zone messages and publish them last, in their order."""
    candidates = [i for i, m in enumerate(messages) if m.raw and not m.copy]
    held = set(rng.sample(candidates, min(count, len(candidates))))
    return [m for i, m in enumerate(messages) if i not in held] + [messages[i] for i in sorted(held)]

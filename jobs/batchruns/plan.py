"""What a backfill or a replay will hand to the writer: pure functions, no I/O.

A backfill compares the listing with the ledger as it was read *before* the
listing started: objects the ledger does not know are created, objects whose
eTag differs (or that the ledger holds as deleted) are updated, and with
``--delete-missing`` objects the ledger holds but the listing lacks are
removed. Every such event names the ledger event it supersedes, so it applies
only if nothing newer landed in the meantime (:mod:`jobs.stream.ledger`). Its time is
the object's ``LastModified``; a removal takes the superseded event's time, so
any real event that follows still wins.

Synthetic events are built as S3 notification records and parsed by the same
parser as the stream's (:func:`jobs.events.parse.parse_message`): the same key
checks (R2) and the same identity (R3) apply.
"""

from __future__ import annotations

import collections
import json
from collections.abc import Iterable, Mapping
from dataclasses import dataclass, field
from datetime import UTC, datetime
from typing import Any
from urllib.parse import quote_plus

from jobs.batchruns.listing import RawObject, normalise_etag
from jobs.events import model as m
from jobs.events.parse import parse_message
from jobs.stream.handoff import BACKFILL, REPLAY

CREATE = "create"  # the ledger does not know the object
UPDATE = "update"  # the listed version differs from the ledger's
DELETE = "delete"  # the ledger holds an object the listing lacks (--delete-missing)
REAPPLY = "reapply"  # replay --force: apply the ledger's current version again
RESUBMIT = "resubmit"  # replay: a landed event the ledger does not hold; judged like a new one
CURRENT = "current"  # nothing to do
OUT_OF_RANGE = "out_of_range"  # outside --since/--until
SKIPPED = "skipped"  # not a usable raw-zone key (the stream would reject or ignore it too)
ACTIONS = (CREATE, UPDATE, DELETE, REAPPLY, RESUBMIT, CURRENT, OUT_OF_RANGE, SKIPPED)
_CHANGES = (CREATE, UPDATE, DELETE, REAPPLY, RESUBMIT)
LIVE_STATES = ("live", "quarantined")


@dataclass(frozen=True)
class LedgerEntry:
    """An object's row in the ledger."""

    key: str
    state: str
    etag: str | None
    event_id: str
    event_time: datetime
    sequencer: str | None = None
    version_id: str | None = None


@dataclass
class Plan:
    """Events to hand over, and what was decided for every object looked at."""

    events: list[dict[str, Any]] = field(default_factory=list)
    counts: collections.Counter[tuple[str, str, str]] = field(default_factory=collections.Counter)
    examples: dict[str, list[str]] = field(default_factory=dict)

    def note(self, action: str, key: str, tenant: str | None, dataset: str | None) -> None:
        """Count one object's action (and keep a few example keys per action)."""
        self.counts[(tenant or "?", dataset or "?", action)] += 1
        sample = self.examples.setdefault(action, [])
        if len(sample) < 5:
            sample.append(key)

    def total(self, action: str) -> int:
        """Objects with ``action``."""
        return sum(n for (_, _, a), n in self.counts.items() if a == action)

    @property
    def changes(self) -> int:
        """Objects whose events are handed over."""
        return sum(self.total(a) for a in _CHANGES)


def _utc(moment: datetime) -> datetime:
    return moment.replace(tzinfo=UTC) if moment.tzinfo is None else moment.astimezone(UTC)


def synthetic_event(
    bucket: str,
    key: str,
    event_name: str,
    event_time: datetime,
    *,
    etag: str | None = None,
    size: int | None = None,
) -> tuple[dict[str, Any] | None, str | None]:
    """Parse one synthetic S3 record: (event fields, None) or (None, why it is not an event)."""
    obj: dict[str, Any] = {"key": quote_plus(key, safe="/")}
    if etag:
        obj["eTag"] = etag
    if size is not None:
        obj["size"] = size
    record = {
        "eventSource": "aws:s3",
        "eventName": event_name,
        "eventTime": _utc(event_time).strftime("%Y-%m-%dT%H:%M:%S.%fZ"),
        "s3": {"bucket": {"name": bucket}, "object": obj},
    }
    parsed = parse_message(json.dumps({"Records": [record]}))[0]
    if parsed.outcome != m.EVENT:
        return None, parsed.reason or parsed.outcome
    return {
        "bucket": parsed.bucket,
        "key": parsed.key,
        "tenant": parsed.tenant,
        "dataset": parsed.dataset,
        "event_kind": parsed.event_kind,
        "event_name": parsed.event_name,
        "event_time": parsed.event_time,
        "sequencer": parsed.sequencer,
        "version_id": parsed.version_id,
        "etag": parsed.etag,
        "size": parsed.size,
        "event_id": parsed.event_id,
    }, None


def _directed(
    event: dict[str, Any], directive: str, expect: str | None, request_id: str, now: datetime
) -> dict[str, Any]:
    return {
        **event,
        "directive": directive,
        "expect_event_id": expect,
        "message_id": request_id,
        "received_at": now,
    }


def _in_range(moment: datetime, since: datetime | None, until: datetime | None) -> bool:
    moment = _utc(moment)
    return (since is None or moment >= _utc(since)) and (until is None or moment < _utc(until))


def plan_backfill(
    bucket: str,
    listing: Iterable[RawObject],
    ledger: Mapping[str, LedgerEntry],
    *,
    request_id: str,
    now: datetime,
    delete_missing: bool = False,
    since: datetime | None = None,
    until: datetime | None = None,
) -> Plan:
    """Decide, per object, what a backfill hands over.

    Args:
        bucket: The tenant group's bucket.
        listing: The raw objects listed (after the ledger was read).
        ledger: The ledger entries of the same scope, by key, read before the listing.
        request_id: The request's id (the events' ``message_id``).
        now: When the plan was made (the events' ``received_at``).
        delete_missing: Also remove objects the listing lacks.
        since: Only objects modified (created) or last changed (removed) at or after this.
        until: ... and before this.

    Returns:
        The plan.
    """
    plan = Plan()
    seen: set[str] = set()
    for obj in listing:
        seen.add(obj.key)
        entry = ledger.get(obj.key)
        etag = normalise_etag(obj.etag)
        tenant, dataset = _tenant_dataset(obj.key)
        if not _in_range(obj.last_modified, since, until):
            plan.note(OUT_OF_RANGE, obj.key, tenant, dataset)
            continue
        if entry is not None and entry.state in LIVE_STATES and normalise_etag(entry.etag) == etag:
            plan.note(CURRENT, obj.key, tenant, dataset)
            continue
        action = CREATE if entry is None else UPDATE
        name = f"{m.CREATED_PREFIX}Backfill"
        event, why = synthetic_event(bucket, obj.key, name, obj.last_modified, etag=etag, size=obj.size)
        if event is None:
            plan.note(SKIPPED, f"{obj.key} ({why})", tenant, dataset)
            continue
        expect = None if entry is None else entry.event_id
        plan.events.append(_directed(event, BACKFILL, expect, request_id, now))
        plan.note(action, obj.key, tenant, dataset)
    if delete_missing:
        for key, entry in sorted(ledger.items()):
            if key in seen or entry.state not in LIVE_STATES:
                continue
            tenant, dataset = _tenant_dataset(key)
            if not _in_range(entry.event_time, since, until):
                plan.note(OUT_OF_RANGE, key, tenant, dataset)
                continue
            event, why = synthetic_event(bucket, key, "ObjectRemoved:Backfill", entry.event_time)
            if event is None:
                plan.note(SKIPPED, f"{key} ({why})", tenant, dataset)
                continue
            plan.events.append(_directed(event, BACKFILL, entry.event_id, request_id, now))
            plan.note(DELETE, key, tenant, dataset)
    return plan


def plan_replay(
    bucket: str,
    landed: Iterable[Mapping[str, Any]],
    ledger: Mapping[str, LedgerEntry],
    *,
    request_id: str,
    now: datetime,
    force: bool = False,
) -> Plan:
    """Decide, per object, what a replay of landed events hands over.

    Args:
        bucket: The tenant group's bucket.
        landed: The newest landed event of each object in scope (parsed bronze records).
        ledger: The ledger entries of the same scope, by key.
        request_id: The request's id.
        now: When the plan was made.
        force: Re-apply objects whose landed event the ledger already holds (and, for
            objects the ledger holds from a backfill, the ledger's version).

    Returns:
        The plan.
    """
    plan = Plan()
    for landed_event in landed:
        event = dict(landed_event)
        key = str(event["key"])
        entry = ledger.get(key)
        tenant, dataset = event.get("tenant"), event.get("dataset")
        if entry is None or (entry.event_id != event["event_id"] and not force):
            plan.events.append({**event, "directive": None, "expect_event_id": None, "received_at": now})
            plan.note(RESUBMIT, key, tenant, dataset)
            continue
        if not force or entry.state not in LIVE_STATES:
            plan.note(CURRENT, key, tenant, dataset)
            continue
        if entry.event_id != event["event_id"]:  # the ledger's version came from elsewhere (a backfill)
            name = f"{m.CREATED_PREFIX}Replay"
            rebuilt, why = synthetic_event(bucket, key, name, entry.event_time, etag=entry.etag)
            if rebuilt is None:
                plan.note(SKIPPED, f"{key} ({why})", tenant, dataset)
                continue
            event = {**rebuilt, "sequencer": entry.sequencer, "version_id": entry.version_id}
        plan.events.append(_directed(event, REPLAY, entry.event_id, request_id, now))
        plan.note(REAPPLY, key, tenant, dataset)
    return plan


def _tenant_dataset(key: str) -> tuple[str | None, str | None]:
    parts = key.split("/")
    return (parts[0] if parts else None), (parts[2] if len(parts) > 2 else None)

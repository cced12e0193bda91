"""What the demo run did, gathered from the job's own records, and the conservation check (R7).

Everything here reads files the job wrote (the JSON-lines batch metrics, the
bronze log, the ``stream_progress`` ops table) and the simulator's ground truth;
the silver tables themselves are checked by :func:`jobs.simulate.verify`.
"""

from __future__ import annotations

import json
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.events.parse import parse_message
from jobs.stream.accounting import OUTCOMES

TABLE_OUTCOMES = ("applied", "duplicate", "stale", "quarantined", "deferred", "parked")


def read_batches(metrics_dir: Path) -> list[dict[str, Any]]:
    """Every batch's metrics from the JSON-lines copy (``<ops_root>metrics/batches/``).

    Args:
        metrics_dir: The directory.

    Returns:
        One dict per batch (and retry pass), by batch id.
    """
    batches = []
    for path in sorted(metrics_dir.rglob("*.jsonl")):
        batches += [json.loads(line) for line in path.read_text(encoding="utf-8").splitlines() if line]
    return sorted(batches, key=lambda b: (b["batch_id"] < 0, abs(b["batch_id"])))


def bronze_bodies(bronze_dir: Path) -> list[tuple[str, str | None]]:
    """(message id, body) of every landed line, temporary files excluded."""
    landed = []
    for path in sorted(bronze_dir.rglob("*.jsonl")):
        if "_tmp" in path.parts:
            continue
        for line in path.read_text(encoding="utf-8").splitlines():
            if line:
                item = json.loads(line)
                landed.append((item["message_id"], item.get("body")))
    return landed


@dataclass
class TableActivity:
    """What the job did to one tenant table over the whole run."""

    tenant: str
    dataset: str
    files: int = 0
    rows_written: int = 0
    deleted: int = 0
    outcomes: Counter[str] = field(default_factory=Counter)


def table_activity(batches: list[dict[str, Any]]) -> dict[tuple[str, str], TableActivity]:
    """Sum the per-table counters of every batch.

    Args:
        batches: From :func:`read_batches`.

    Returns:
        (tenant, dataset) -> activity.
    """
    out: dict[tuple[str, str], TableActivity] = {}
    for batch in batches:
        for name, stats in (batch.get("tables") or {}).items():
            tenant, dataset = name.split("/", 1)
            activity = out.setdefault((tenant, dataset), TableActivity(tenant, dataset))
            activity.files += int(stats.get("files", 0))
            activity.rows_written += int(stats.get("rows_written", 0))
            activity.deleted += int(stats.get("deleted", 0))
            activity.outcomes.update({o: int(stats.get(o, 0)) for o in TABLE_OUTCOMES if stats.get(o)})
    return out


@dataclass(frozen=True)
class Conservation:
    """The R7 check over a whole run.

    Attributes:
        sent: Messages the simulator published.
        landed: Distinct messages in the bronze log.
        left_in_queue: Messages still in the queue (visible or in flight).
        in_dlq: Messages in the dead-letter queue.
        records_landed: Records in the bronze log, parsed independently here
            (every landed line, so a message landed twice counts twice).
        dedupe_dropped: Records the stream's watermark dedupe removed.
        records_in: Records that reached the batch writer.
        retried_in: Events re-entered from the retry table.
        outcomes: Sum of each outcome over all batches.
        unbalanced_batches: Batches whose outcomes do not add up.
    """

    sent: int
    landed: int
    left_in_queue: int
    in_dlq: int
    records_landed: int
    dedupe_dropped: int
    records_in: int
    retried_in: int
    outcomes: dict[str, int]
    unbalanced_batches: list[int]

    @property
    def messages_ok(self) -> bool:
        """Every published message is in bronze, and none is left behind."""
        return self.landed == self.sent and self.left_in_queue == 0 and self.in_dlq == 0

    @property
    def records_ok(self) -> bool:
        """Every landed record reached the writer or was counted as a duplicate, and ended in one outcome."""
        return (
            self.records_landed == self.records_in + self.dedupe_dropped
            and sum(self.outcomes.values()) == self.records_in + self.retried_in
            and not self.unbalanced_batches
        )

    @property
    def ok(self) -> bool:
        """Both checks hold."""
        return self.messages_ok and self.records_ok

    def lines(self) -> list[str]:
        """Human-readable lines."""
        outcome_text = " + ".join(f"{v} {k}" for k, v in self.outcomes.items() if v) or "nothing"
        return [
            f"messages: {self.sent} published = {self.landed} landed in bronze "
            f"(left in queue {self.left_in_queue}, dead-lettered {self.in_dlq}) "
            f"[{'ok' if self.messages_ok else 'MISMATCH'}]",
            f"records:  {self.records_landed} landed = {self.dedupe_dropped} dropped by the watermark dedupe "
            f"+ {self.records_in} to the writer; {self.records_in} (+{self.retried_in} retried) = "
            f"{outcome_text} [{'ok' if self.records_ok else 'MISMATCH'}]",
        ]


def conservation(
    *,
    sent: int,
    bronze: list[tuple[str, str | None]],
    queue_left: int,
    dlq: int,
    batches: list[dict[str, Any]],
    dedupe_dropped: int,
) -> Conservation:
    """Build the R7 check from the run's records.

    Args:
        sent: Messages published.
        bronze: From :func:`bronze_bodies`.
        queue_left: Messages left in the queue.
        dlq: Messages in the DLQ.
        batches: From :func:`read_batches`.
        dedupe_dropped: Sum of ``stream_progress.duplicates_dropped``.

    Returns:
        The check.
    """
    return Conservation(
        sent=sent,
        landed=len({message_id for message_id, _ in bronze}),
        left_in_queue=queue_left,
        in_dlq=dlq,
        records_landed=sum(len(parse_message(body)) for _, body in bronze),
        dedupe_dropped=dedupe_dropped,
        records_in=sum(int(b["records_in"]) for b in batches),
        retried_in=sum(int(b["retried_in"]) for b in batches),
        outcomes={o: sum(int(b.get(o, 0)) for b in batches) for o in OUTCOMES},
        unbalanced_batches=[int(b["batch_id"]) for b in batches if not b.get("balanced", False)],
    )

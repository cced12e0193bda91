"""Per-batch accounting (R7): every record in ends in exactly one outcome."""

from __future__ import annotations

import dataclasses
import json
import math
import time
from collections.abc import Iterator, Sequence
from contextlib import contextmanager
from datetime import datetime
from typing import Any

# Outcomes a record can end in, in the order they are reported.
OUTCOMES = (
    "applied",
    "duplicate",
    "stale",
    "ignored",
    "test",
    "parked",
    "quarantined",
    "rejected",
    "deferred",
    "dropped",
)


@dataclasses.dataclass
class BatchCounts:
    """Counts and timings of one micro-batch.

    ``records_in + retried_in`` equals the sum of the outcomes: ``deferred``
    counts events whose tenant table failed to commit, or that were over their
    tenant's cap, and that will be retried in a later batch (they come back as
    ``retried_in``, as do held events released when their tenant becomes active).
    """

    batch_id: int
    query_id: str
    started_at: datetime
    finished_at: datetime | None = None
    records_in: int = 0
    retried_in: int = 0
    applied: int = 0
    duplicate: int = 0
    stale: int = 0
    ignored: int = 0
    test: int = 0
    parked: int = 0
    quarantined: int = 0
    rejected: int = 0
    deferred: int = 0
    dropped: int = 0  # events of offboarded tenants
    superseded: int = 0  # part of `stale`: the object changed or vanished before it was read (R9)
    tables_committed: int = 0
    tables_failed: int = 0
    files_read: int = 0
    rows_read: int = 0
    rows_written: int = 0
    rows_quarantined: int = 0  # rows of applied objects that went to quarantine tables
    freshness_p50_s: float | None = None
    freshness_p95_s: float | None = None
    phase_seconds: dict[str, float] = dataclasses.field(default_factory=dict)
    # Per tenant table ("<tenant>/<dataset>"): files, rows_read, rows_written, status.
    tables: dict[str, dict[str, Any]] = dataclasses.field(default_factory=dict)
    freshness_samples: list[float] = dataclasses.field(default_factory=list, repr=False)
    # Per tenant: seconds from the oldest event applied, held back or deferred in this batch
    # to the batch's end (how far behind the tenant is).
    tenant_lag_s: dict[str, float] = dataclasses.field(default_factory=dict)

    def add(self, outcome: str, n: int, *, tenant: str | None = None, dataset: str | None = None) -> None:
        """Add ``n`` records to an outcome (and to the tenant table's counts when named)."""
        if outcome not in OUTCOMES:
            raise ValueError(f"unknown outcome {outcome!r}")
        setattr(self, outcome, getattr(self, outcome) + n)
        if tenant is not None and dataset is not None:
            stats = self.table(tenant, dataset)
            stats[outcome] = stats.get(outcome, 0) + n

    def table(self, tenant: str, dataset: str) -> dict[str, Any]:
        """The per-table counters of ``tenant``'s ``dataset`` (created on first use)."""
        return self.tables.setdefault(
            f"{tenant}/{dataset}", {"files": 0, "rows_read": 0, "rows_written": 0, "status": "planned"}
        )

    def note_lag(self, tenant: str, event_time: datetime, now: datetime) -> None:
        """Keep the tenant's largest event-time-to-now delay in ``tenant_lag_s``."""
        lag = round((now - event_time).total_seconds(), 3)
        self.tenant_lag_s[tenant] = max(lag, self.tenant_lag_s.get(tenant, lag))

    @property
    def tenants(self) -> int:
        """Distinct tenants with a table in this batch."""
        return len({name.split("/", 1)[0] for name in self.tables})

    @property
    def outcomes_total(self) -> int:
        """Sum over every outcome."""
        return sum(getattr(self, o) for o in OUTCOMES)

    @property
    def balanced(self) -> bool:
        """Whether the outcomes add up to the records in (R7)."""
        return self.outcomes_total == self.records_in + self.retried_in

    @contextmanager
    def phase(self, name: str) -> Iterator[None]:
        """Time a phase of the batch into ``phase_seconds``."""
        start = time.perf_counter()
        try:
            yield
        finally:
            self.phase_seconds[name] = round(
                self.phase_seconds.get(name, 0.0) + time.perf_counter() - start, 3
            )

    def summary(self) -> str:
        """One concise log line."""
        parts = " ".join(f"{o}={getattr(self, o)}" for o in OUTCOMES if getattr(self, o))
        balance = "balanced" if self.balanced else "UNBALANCED"
        p95 = f"{self.freshness_p95_s:.1f}s" if self.freshness_p95_s is not None else "-"
        phases = " ".join(f"{k}={v:.2f}s" for k, v in self.phase_seconds.items())
        return (
            f"in={self.records_in}+{self.retried_in} {parts or 'nothing'} [{balance}] "
            f"tenants={self.tenants} tables={self.tables_committed} failed={self.tables_failed} "
            f"files={self.files_read} "
            f"rows={self.rows_written} bad_rows={self.rows_quarantined} p95_fresh={p95} {phases}"
        )

    def as_dict(self) -> dict[str, Any]:
        """JSON-ready dict (no raw samples)."""
        data = dataclasses.asdict(self)
        data.pop("freshness_samples")
        data["balanced"] = self.balanced
        for key in ("started_at", "finished_at"):
            value = data[key]
            data[key] = value.isoformat() if value else None
        return data

    def as_row(self) -> tuple[Any, ...]:
        """Row for the ``batch_metrics`` ops table (column order of its DDL)."""
        details = {
            "superseded": self.superseded,
            "rows_read": self.rows_read,
            "rows_quarantined": self.rows_quarantined,
            "phase_seconds": self.phase_seconds,
            "balanced": self.balanced,
            "tables": self.tables,
            "tenant_lag_s": self.tenant_lag_s,
        }
        return (
            self.batch_id, self.query_id, self.started_at, self.finished_at, self.records_in, self.retried_in,
            self.applied, self.duplicate, self.stale, self.ignored, self.test, self.parked, self.quarantined,
            self.rejected, self.deferred, self.tables_committed, self.tables_failed, self.files_read,
            self.rows_written, self.freshness_p50_s, self.freshness_p95_s, json.dumps(details), self.dropped,
        )  # fmt: skip


def freshness_percentiles(samples: Sequence[float]) -> tuple[float | None, float | None]:
    """p50 and p95 (nearest rank) of event-time-to-commit delays in seconds."""
    if not samples:
        return None, None
    ordered = sorted(samples)

    def rank(p: float) -> float:
        return round(ordered[max(0, math.ceil(p * len(ordered)) - 1)], 3)

    return rank(0.50), rank(0.95)

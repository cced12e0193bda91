"""Which tenants' events the stream applies now: the registry's statuses and the per-tenant cap.

The stream keeps a cached copy of its group's tenants (refreshed every
``registry.refresh_seconds``). Events of unknown or suspended tenants are held
(outcome ``parked``, ops table ``held``) and applied once the tenant is created
or resumed; events of offboarded tenants are dropped (outcome ``dropped``, kept
in ``held`` for inspection). Without a registry every tenant is active.
"""

from __future__ import annotations

import logging
import time
from collections import defaultdict
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, NamedTuple

from jobs.tenants.registry import ACTIVE, OFFBOARDED, SUSPENDED, TenantRegistry

if TYPE_CHECKING:
    from pyspark.sql import Row

log = logging.getLogger(__name__)

# Reasons in the `held` table; the first two are released when the tenant becomes active.
TENANT_UNKNOWN = "tenant_unknown"
TENANT_SUSPENDED = "tenant_suspended"
TENANT_OFFBOARDED = "tenant_offboarded"
RELEASABLE = (TENANT_UNKNOWN, TENANT_SUSPENDED)


class TenantGate:
    """A cached view of one group's tenant statuses."""

    def __init__(
        self,
        registry: TenantRegistry | None,
        group: str,
        refresh_seconds: float = 30.0,
        clock: Callable[[], float] = time.monotonic,
    ) -> None:
        """Create the gate and load the registry once (an unreadable registry fails here, loudly).

        Args:
            registry: The registry, or None: every tenant is active.
            group: The tenant group the stream serves.
            refresh_seconds: How often :meth:`refresh` re-reads the registry.
            clock: Monotonic seconds (tests pass a fake).
        """
        self.registry = registry
        self.group = group
        self.refresh_seconds = refresh_seconds
        self._clock = clock
        self._statuses: dict[str, str] = {}
        self._loaded_at = -float("inf")
        self.version = 0  # grows whenever a refresh changes a status
        if registry is not None:
            self._load()

    @property
    def open(self) -> bool:
        """True without a registry: every tenant prefix is active and nothing is held."""
        return self.registry is None

    def _load(self) -> None:
        assert self.registry is not None
        statuses = {t.name: t.status for t in self.registry.list_tenants(self.group)}
        self._loaded_at = self._clock()
        if statuses != self._statuses:
            self._statuses = statuses
            self.version += 1
            log.info(
                "tenant registry: %d tenants in group %s (%d active)",
                len(statuses),
                self.group,
                sum(s == ACTIVE for s in statuses.values()),
            )

    def refresh(self, *, force: bool = False) -> None:
        """Re-read the registry when the refresh interval has passed (or ``force``).

        A failed read keeps the cached statuses and logs a warning: a registry
        outage delays status changes, it never stops the stream.
        """
        if self.registry is None or (not force and self._clock() - self._loaded_at < self.refresh_seconds):
            return
        try:
            self._load()
        except Exception as exc:  # any backend failure: keep serving from the cache
            self._loaded_at = self._clock()
            log.warning("tenant registry refresh failed, keeping the cached statuses: %s", exc)

    def status(self, tenant: str) -> str | None:
        """The tenant's status (ACTIVE without a registry), or None for an unknown tenant."""
        if self.registry is None:
            return ACTIVE
        return self._statuses.get(tenant)

    def active(self) -> list[str]:
        """The active tenants (empty without a registry, where nothing is ever held)."""
        return sorted(t for t, s in self._statuses.items() if s == ACTIVE)

    def hold_reason(self, tenant: str) -> str | None:
        """Why the tenant's events cannot be applied now (None: they can)."""
        status = self.status(tenant)
        if status == ACTIVE:
            return None
        if status == OFFBOARDED:
            return TENANT_OFFBOARDED
        return TENANT_SUSPENDED if status == SUSPENDED else TENANT_UNKNOWN


class Admission(NamedTuple):
    """The judged events the ledger lets through, sorted by what happens to them now."""

    apply: list[Row]
    held: list[tuple[Row, str]]  # (event, reason): parked until the tenant is active
    dropped: list[Row]  # events of offboarded tenants
    deferred: list[Row]  # over the tenant's cap: back to the retry table for a later batch


def admit(rows: Sequence[Row], gate: TenantGate, max_files_per_tenant: int | None) -> Admission:
    """Sort events by their tenant's status and cap each tenant's objects per batch.

    The cap keeps one tenant's burst from starving the others: each tenant gets
    at most ``max_files_per_tenant`` objects applied in a batch, oldest events
    first; the rest wait for the next batch (the ledger judged one event per
    object, so the cap counts objects).

    Args:
        rows: Judged events with the ``apply`` verdict.
        gate: The tenant statuses.
        max_files_per_tenant: The per-tenant cap (None: no cap).

    Returns:
        The events to apply, hold, drop and defer.
    """
    admitted: dict[str, list[Row]] = defaultdict(list)
    held: list[tuple[Row, str]] = []
    dropped: list[Row] = []
    for row in rows:
        reason = gate.hold_reason(row["tenant"])
        if reason is None:
            admitted[row["tenant"]].append(row)
        elif reason == TENANT_OFFBOARDED:
            dropped.append(row)
        else:
            held.append((row, reason))
    apply: list[Row] = []
    deferred: list[Row] = []
    for events in admitted.values():
        if max_files_per_tenant is not None and len(events) > max_files_per_tenant:
            events = sorted(events, key=lambda r: (r["event_time"], r["key"]))
            apply.extend(events[:max_files_per_tenant])
            deferred.extend(events[max_files_per_tenant:])
        else:
            apply.extend(events)
    return Admission(apply, held, dropped, deferred)

"""What the tenant commands print: provisioning steps, the tenant table, offboarding results."""

from __future__ import annotations

import sys
from collections.abc import Sequence

from rich.console import Console
from rich.table import Table

from jobs.tenants.bucket import CREATED, UPDATED
from jobs.tenants.provision import Change, GroupResult
from jobs.tenants.purge import OffboardResult
from jobs.tenants.registry import Tenant


def group_result(result: GroupResult, extra: Sequence[Change], backend: str) -> str:
    """One line per provisioning step, then the queue URLs and what to do with them."""
    group = result.group
    changes = [*extra, *result.changes]
    width = max(len(c.resource) for c in changes)
    lines = [f"tenant group {group.name}: bucket {group.bucket} ({group.region})"]
    lines += [f"  {c.resource:<{width}}  {c.action:<9}  {c.name}" for c in changes]
    lines += [f"  queue URL: {group.queue_url}", f"  DLQ URL:   {group.dlq_url}"]
    created = sum(c.action == CREATED for c in changes)
    updated = sum(c.action == UPDATED for c in changes)
    if created or updated:
        lines.append(
            f"done: {created} created, {updated} updated, {len(changes) - created - updated} in place"
        )
    else:
        lines.append("nothing to do: the group was complete already")
    if backend == "none":
        lines.append("no registry configured (registry.backend: none): no group record written")
    lines.append("the bridge reads this queue: set sqs.queue_url (or pass --queue-url)")
    return "\n".join(lines)


def tenant_table(tenants: Sequence[Tenant], group: str | None) -> None:
    """Print the tenants as a table on stdout (one group, or all groups when ``group`` is None)."""
    if not tenants:
        print(f"no tenants in group {group}" if group else "no tenants")
        return
    table = Table(
        title=f"tenants of group {group}" if group else "tenants of all groups", title_justify="left"
    )
    columns = ([] if group else ["group"]) + ["tenant", "status", "prefix", "created", "updated"]
    for column in columns:
        table.add_column(column, no_wrap=True)
    for t in tenants:
        cells = ([] if group else [t.group]) + [t.name, t.status, f"s3://{t.bucket}/{t.base_prefix}"]
        table.add_row(*cells, t.created_at, t.updated_at)
    Console(highlight=False, width=None if sys.stdout.isatty() else 200).print(table)


def offboard_result(result: OffboardResult, purge: bool) -> str:
    """What offboarding changed and deleted."""
    tenant = result.tenant
    state = "offboarded" if result.status_changed else "offboarded already"
    lines = [f"tenant {tenant.name} (group {tenant.group}): {state}; the stream drops its events from now on"]
    if not purge:
        lines.append(f"  data kept under s3://{tenant.bucket}/{tenant.base_prefix} (--purge deletes it)")
        return "\n".join(lines)
    lines.append(
        f"  deleted {result.objects_deleted} objects under s3://{tenant.bucket}/{tenant.base_prefix}"
    )
    lines += [f"  removed {path}" for path in result.directories_removed]
    lines += [f"  not purged (not a local lake): {root}" for root in result.roots_not_purged]
    return "\n".join(lines)

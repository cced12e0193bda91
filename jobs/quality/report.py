"""What validation found: pass rates, top failing expectations, quarantined examples.

Per tenant and dataset the rows checked and failed; the expectations with the most
failed rows, each with example rows from the tenants' quarantine tables.

Reads the ``validation_results`` ops table and the quarantine tables with pyiceberg
straight from their newest metadata file: no catalog, no Spark.
"""

from __future__ import annotations

from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]
from rich.console import Console
from rich.markup import escape
from rich.table import Table

from jobs.config import SilverlineConfig
from jobs.quality.verdicts import ALL_EXPECTATIONS
from jobs.storage import QUARANTINE, silver_location

# A replayed micro-batch writes its rows again: the last write of each key counts once.
RESULT_KEY = ("query_id", "batch_id", "dataset", "suite", "tenant", "expectation")
EXAMPLES_PER_EXPECTATION = 3
MAX_TENANTS_SEARCHED = 20  # quarantine tables read per expectation, most failed rows first
_VALUE_WIDTH = 80


@dataclass(frozen=True)
class TenantSummary:
    """Rows of one tenant's dataset validated so far, and how many failed anything."""

    tenant: str
    dataset: str
    rows_checked: int
    rows_failed: int

    @property
    def pass_rate(self) -> float:
        """Share of rows that passed (1.0 when no row was checked)."""
        return 1.0 if not self.rows_checked else (self.rows_checked - self.rows_failed) / self.rows_checked


@dataclass(frozen=True)
class Failure:
    """One expectation of one dataset, with its failed rows over all batches (and tenants)."""

    dataset: str
    expectation: str
    column: str | None
    rows_failed: int
    tenants: tuple[str, ...]  # the tenants with failed rows, most failed first


def read_table(
    table: str | Path, config: SilverlineConfig, columns: Sequence[str] | None = None, row_filter: Any = None
) -> pa.Table | None:
    """An Iceberg table's rows (local or ``s3://``) from its newest metadata; None without a table."""
    from jobs.lakeread import read_iceberg

    return read_iceberg(table, config, columns, row_filter)


def read_results(
    table: str | Path, config: SilverlineConfig, *, tenant: str | None = None, dataset: str | None = None
) -> pa.Table | None:
    """The ``validation_results`` rows (optionally of one tenant and/or dataset), replays counted once."""
    from pyiceberg.expressions import AlwaysTrue, And, BooleanExpression, EqualTo, Reference
    from pyiceberg.expressions.literals import literal

    wanted: BooleanExpression = AlwaysTrue()
    for name, value in (("tenant", tenant), ("dataset", dataset)):
        if value is not None:
            wanted = And(wanted, EqualTo(term=Reference(name), value=literal(value)))
    rows = read_table(table, config, row_filter=wanted)
    if rows is None or rows.num_rows == 0:
        return rows
    ordered = rows.sort_by([("validated_at", "ascending")])
    latest = ordered.group_by(list(RESULT_KEY), use_threads=False).aggregate(
        [("rows_checked", "last"), ("rows_failed", "last"), ("column_name", "last")]
    )
    return latest.rename_columns([c.removesuffix("_last") for c in latest.column_names])


def tenant_summaries(results: pa.Table) -> list[TenantSummary]:
    """Rows checked and failed per tenant and dataset (from the ``*`` rows), sorted."""
    summary = results.filter(pc.equal(results["expectation"], ALL_EXPECTATIONS))
    sums = summary.group_by(["tenant", "dataset"]).aggregate(
        [("rows_checked", "sum"), ("rows_failed", "sum")]
    )
    found = [
        TenantSummary(r["tenant"], r["dataset"], r["rows_checked_sum"], r["rows_failed_sum"])
        for r in sums.to_pylist()
    ]
    return sorted(found, key=lambda s: (s.tenant, s.dataset))


def top_failures(results: pa.Table, top: int) -> list[Failure]:
    """The ``top`` expectations with the most failed rows (ties by name), built-in checks included."""
    failing = results.filter(
        pc.and_(pc.not_equal(results["expectation"], ALL_EXPECTATIONS), pc.greater(results["rows_failed"], 0))
    )
    per_tenant = failing.group_by(["dataset", "expectation", "tenant"]).aggregate(
        [("rows_failed", "sum"), ("column_name", "max")]
    )
    grouped: dict[tuple[str, str], list[dict[str, Any]]] = {}
    for row in per_tenant.to_pylist():
        grouped.setdefault((row["dataset"], row["expectation"]), []).append(row)
    failures = []
    for (dataset, expectation), rows in grouped.items():
        rows.sort(key=lambda r: (-r["rows_failed_sum"], r["tenant"]))
        failures.append(
            Failure(
                dataset=dataset,
                expectation=expectation,
                column=rows[0]["column_name_max"],
                rows_failed=sum(r["rows_failed_sum"] for r in rows),
                tenants=tuple(r["tenant"] for r in rows),
            )
        )
    failures.sort(key=lambda f: (-f.rows_failed, f.dataset, f.expectation))
    return failures[:top]


def results_location(config: SilverlineConfig) -> str:
    """Where the ``validation_results`` ops table lives."""
    from jobs.lakeread import ops_location
    from jobs.quality.results import TABLE_NAME

    return ops_location(config, TABLE_NAME)


def examples(
    config: SilverlineConfig, failure: Failure, limit: int = EXAMPLES_PER_EXPECTATION
) -> list[dict[str, Any]]:
    """Up to ``limit`` quarantined rows that failed ``failure.expectation``, tenant by tenant.

    Args:
        config: The configuration (the lake root and the group's bucket).
        failure: The expectation (its tenants with the most failures are searched first,
            at most :data:`MAX_TENANTS_SEARCHED`).
        limit: How many rows.

    Returns:
        Rows (``_tenant`` added), in table order.
    """
    found: list[dict[str, Any]] = []
    for tenant in failure.tenants[:MAX_TENANTS_SEARCHED]:
        where = silver_location(config.lake.root, config.group.bucket, tenant, failure.dataset, QUARANTINE)
        rows = read_table(where, config)
        if rows is None or "_failed_expectations" not in rows.column_names or not rows.num_rows:
            continue
        lists = rows["_failed_expectations"].combine_chunks()
        hits = pc.fill_null(pc.equal(pc.list_flatten(lists), failure.expectation), False)
        parents = pc.unique(pc.filter(pc.list_parent_indices(lists), hits))  # ascending: table order
        picked = rows.take(parents[: limit - len(found)]).to_pylist()
        found += [{"_tenant": tenant, **row} for row in picked]
        if len(found) >= limit:
            break
    return found


def _count(n: int, noun: str) -> str:
    return f"{n:,} {noun}{'' if n == 1 else 's'}"


def _cell(value: Any) -> str:
    text = "∅" if value is None else str(value)
    return escape(text if len(text) <= _VALUE_WIDTH else text[: _VALUE_WIDTH - 1] + "…")


def _example_value(row: dict[str, Any], column: str | None) -> str:
    """The failing value(s), and the original text when a value did not convert."""
    parts = [f"{c}={_cell(row.get(c))}" for c in (column or "").split(",") if c and c in row]
    if row.get("_raw") is not None and (
        not parts or any(row.get(c) is None for c in (column or "").split(","))
    ):
        parts.append(f"raw={_cell(row['_raw'])}")
    return " ".join(parts) or _cell(row.get("_raw"))


def render(
    console: Console,
    summaries: Sequence[TenantSummary],
    failures: Sequence[Failure],
    found: dict[tuple[str, str], list[dict[str, Any]]],
) -> None:
    """Print the pass-rate table, then each top failing expectation with its examples.

    Args:
        console: Where to print.
        summaries: Per tenant and dataset.
        failures: The top failing expectations.
        found: Example rows by (dataset, expectation).
    """
    table = Table(title="Validation by tenant and dataset", title_justify="left")
    for name, justify in (("tenant", "left"), ("dataset", "left"), ("rows checked", "right"),
                          ("rows failed", "right"), ("pass rate", "right")):  # fmt: skip
        table.add_column(name, justify=justify)  # type: ignore[arg-type]
    for s in summaries:
        table.add_row(
            escape(s.tenant), s.dataset, f"{s.rows_checked:,}", f"{s.rows_failed:,}", f"{s.pass_rate:.2%}"
        )
    console.print(table)
    if not failures:
        console.print("No expectation failed.")
        return
    console.print(f"\nTop {len(failures)} failing expectations")
    for rank, failure in enumerate(failures, start=1):
        rows_in = f"{_count(failure.rows_failed, 'row')} in {_count(len(failure.tenants), 'tenant')}"
        console.print(f"{rank}. {failure.dataset}: {escape(failure.expectation)} — {rows_in}")
        rows = found.get((failure.dataset, failure.expectation), [])
        if not rows:
            console.print("   (no example found in the quarantine tables)")
            continue
        ex = Table(show_header=True, box=None, padding=(0, 1, 0, 3))
        for name in ("tenant", "object", "row", "value", "failed"):
            ex.add_column(name)
        for row in rows:
            ex.add_row(
                escape(row["_tenant"]),
                _cell(row.get("_source_key")),
                _cell(row.get("_row_number")),
                _example_value(row, failure.column),
                escape(", ".join(row.get("_failed_expectations") or [])),
            )
        console.print(ex)

"""Row verdicts of one validation call, and the row-level checks that need no great-expectations.

The batch writer validates ONE Arrow table per dataset (and suite) per micro-batch:
every tenant's rows of that dataset, concatenated, with a ``_tenant`` column. This
module holds what comes back (:class:`RowVerdicts`) and the checks done with
pyarrow alone: values that failed type conversion (``_conversion_errors``) and the
contract's primary key (not null; unique within one source object).
"""

from __future__ import annotations

from collections.abc import Iterable, Mapping, Sequence
from dataclasses import dataclass
from typing import Any, NamedTuple

import numpy as np
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

TENANT_COLUMN = "_tenant"
CONVERSION_ERRORS_COLUMN = "_conversion_errors"
# A primary key is unique within one object: the rows of one (bucket, key).
OBJECT_COLUMNS = ("_source_bucket", "_source_key")
PRIMARY_KEY_NOT_NULL = "primary_key_not_null"
PRIMARY_KEY_UNIQUE = "primary_key_unique"
CONVERSION_TYPE = "conversion"
# The per-tenant summary: rows checked and rows that failed anything (the quarantined rows).
ALL_EXPECTATIONS = "*"
ALL_EXPECTATIONS_TYPE = "all_expectations"


def conversion_id(column: str) -> str:
    """The verdict of a value that did not convert to its column's type: ``conversion(<column>)``."""
    return f"{CONVERSION_TYPE}({column})"


class TenantCounts(NamedTuple):
    """One tenant's share of an expectation's rows."""

    rows_checked: int
    rows_failed: int
    success: bool


@dataclass(frozen=True)
class ExpectationResult:
    """One expectation (or built-in check) over the validated table.

    Attributes:
        expectation: Its identifier (``jobs.quality.suites.expectation_id``, ``conversion(<col>)``,
            ``primary_key_not_null``, ``primary_key_unique`` or ``*`` for the summary).
        expectation_type: GE's type, or ``conversion`` / ``primary_key_*`` / ``all_expectations``.
        column: The column it checks (columns joined with ``,``), None for table-level ones.
        kwargs: Its kwargs as JSON (sorted keys, without GE's runtime ``batch_id``).
        rows_checked: Rows of the table.
        rows_failed: Rows it failed (0 for table-level expectations: they cannot split rows).
        success: GE's verdict for the whole table (``mostly`` applied); built-in checks: no failure.
        severity: ``critical`` (failing rows are quarantined), ``warning`` or ``info`` (reported only).
        by_tenant: Rows checked / failed and success per tenant. A table-level expectation
            was evaluated on all tenants' rows together: each tenant gets that one success.
    """

    expectation: str
    expectation_type: str
    column: str | None
    kwargs: str
    rows_checked: int
    rows_failed: int
    success: bool
    severity: str
    by_tenant: Mapping[str, TenantCounts]


@dataclass(frozen=True)
class RowVerdicts:
    """What one validation call found.

    Attributes:
        dataset: The dataset validated.
        suite: The suite's name ("" when the contract names none).
        failed: Per input row, in order, the sorted identifiers of what it failed
            (critical expectations, ``conversion(<col>)``, ``primary_key_*``); empty = good.
        results: One entry per expectation and built-in check, then the ``*`` summary.
        result_json: GE's validation result as JSON-ready data, without the per-row lists
            (``unexpected_list``, ``unexpected_index_list``, ``unexpected_index_query``).
        seconds: Wall time of the call.
        row_level: The suite's expectations that judge rows one by one (GE's map
            expectations); the others are table-level.
    """

    dataset: str
    suite: str
    failed: list[list[str]]
    results: list[ExpectationResult]
    result_json: dict[str, Any]
    seconds: float
    row_level: frozenset[str] = frozenset()

    @property
    def rows_failed(self) -> int:
        """Rows that failed anything."""
        return sum(1 for f in self.failed if f)


class TenantIndex:
    """Which tenant each row belongs to, for per-tenant counts in one pass."""

    def __init__(self, table: pa.Table) -> None:
        """Index the ``_tenant`` column of ``table``.

        Args:
            table: The validated table.

        Raises:
            ValueError: It has no ``_tenant`` column, or a null tenant.
        """
        if TENANT_COLUMN not in table.column_names:
            raise ValueError(f"the table to validate needs a {TENANT_COLUMN!r} column")
        column = table[TENANT_COLUMN]
        if column.null_count:
            raise ValueError(f"{TENANT_COLUMN!r} must not be null")
        encoded = pc.dictionary_encode(column.combine_chunks())
        self.tenants: list[str] = encoded.dictionary.to_pylist()
        self.codes = encoded.indices.to_numpy(zero_copy_only=False).astype(np.int64)
        self.rows = np.bincount(self.codes, minlength=len(self.tenants))

    def failed_per_tenant(self, rows: np.ndarray) -> np.ndarray:
        """How many of ``rows`` (row indices) each tenant holds."""
        return np.bincount(self.codes[rows], minlength=len(self.tenants))

    def breakdown(
        self, rows: np.ndarray | None, *, success: bool | None = None, mostly: float | None = None
    ) -> dict[str, TenantCounts]:
        """Rows checked, failed and success per tenant.

        Args:
            rows: Indices of the failed rows; None for a table-level result (no row fails).
            success: The table-level success every tenant gets (when ``rows`` is None).
            mostly: GE's ``mostly``: a tenant succeeds when this share of its rows passed.

        Returns:
            Counts by tenant.
        """
        failed = np.zeros(len(self.tenants), np.int64) if rows is None else self.failed_per_tenant(rows)
        counts = {}
        for tenant, checked, bad in zip(self.tenants, self.rows.tolist(), failed.tolist(), strict=True):
            if rows is None:
                ok = bool(success)
            elif mostly is None:
                ok = bad == 0
            else:
                ok = checked == 0 or (checked - bad) / checked >= mostly
            counts[tenant] = TenantCounts(checked, bad, ok)
        return counts


def conversion_failures(table: pa.Table) -> dict[str, np.ndarray]:
    """Rows whose value of a column did not convert, by column (from ``_conversion_errors``).

    Args:
        table: The validated table (no ``_conversion_errors`` column: no failures).

    Returns:
        Sorted row indices by column name.
    """
    if CONVERSION_ERRORS_COLUMN not in table.column_names:
        return {}
    errors = table[CONVERSION_ERRORS_COLUMN].combine_chunks()
    names = pc.list_flatten(errors)
    parents = pc.list_parent_indices(errors).to_numpy(zero_copy_only=False)
    found = {}
    for name in pc.unique(names.drop_null()).to_pylist():
        mask = pc.fill_null(pc.equal(names, name), False).to_numpy(zero_copy_only=False)
        found[str(name)] = np.unique(parents[mask])
    return found


def primary_key_failures(table: pa.Table, primary_key: Sequence[str]) -> dict[str, np.ndarray]:
    """Rows with a null in the key, and rows whose key repeats within their object.

    Every row sharing a repeated key fails (none of them can be told to be the right one);
    the same key in two different objects is fine.

    Args:
        table: The validated table.
        primary_key: The contract's key columns (empty: no checks).

    Returns:
        ``{"primary_key_not_null": rows, "primary_key_unique": rows}`` (sorted indices),
        empty without a key.
    """
    if not primary_key:
        return {}
    missing = [c for c in primary_key if c not in table.column_names]
    if missing:
        raise ValueError(f"primary key columns not in the table: {', '.join(missing)}")
    null_mask = np.zeros(table.num_rows, bool)
    for column in primary_key:
        null_mask |= table[column].is_null().to_numpy(zero_copy_only=False)
    scope = [c for c in OBJECT_COLUMNS if c in table.column_names]
    keyed = table.select([*scope, *primary_key]).append_column("_i", pa.array(np.arange(table.num_rows)))
    keyed = keyed.filter(pa.array(~null_mask))
    groups = keyed.group_by([*scope, *primary_key], use_threads=False).aggregate([("_i", "list")])
    lists = groups["_i_list"].combine_chunks()
    repeated = pc.filter(lists, pc.greater(pc.list_value_length(lists), 1))
    duplicates = np.sort(pc.list_flatten(repeated).to_numpy(zero_copy_only=False))
    return {PRIMARY_KEY_NOT_NULL: np.flatnonzero(null_mask), PRIMARY_KEY_UNIQUE: duplicates}


def row_lists(num_rows: int, failures: Iterable[tuple[str, np.ndarray]]) -> list[list[str]]:
    """Per row, the sorted identifiers it failed.

    Args:
        num_rows: Rows in the table.
        failures: (identifier, failed row indices) pairs.

    Returns:
        One list per row (empty for a good row).
    """
    failed: list[list[str]] = [[] for _ in range(num_rows)]
    for ident, rows in failures:
        for row in rows.tolist():
            failed[row].append(ident)
    for names in failed:
        if len(names) > 1:
            names.sort()
    return failed


def any_failure(failed: Sequence[Sequence[str]]) -> np.ndarray:
    """Indices of the rows that failed anything."""
    return np.flatnonzero(np.fromiter((bool(f) for f in failed), bool, count=len(failed)))

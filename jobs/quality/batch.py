"""The batch writer's quality step: validate each dataset once per batch, split good from bad rows.

Every tenant table read in a micro-batch is one :class:`TableRead`. Reads of the
same dataset and expectation suite are concatenated with a ``_tenant`` column and
validated in ONE call (:func:`jobs.quality.validate.validate_rows`), so the cost
grows with the datasets in the batch, not with tenants or files. The verdicts are
cut back per table: good rows go to silver; bad rows go to the tenant's quarantine
table with what they failed — or, under ``on_bad_rows: reject_file``, every row of
an object with any bad row does, and the object counts as quarantined.
"""

from __future__ import annotations

import logging
from collections import defaultdict
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import TYPE_CHECKING

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

from jobs.contracts import DatasetContract

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite

    from jobs.quality.verdicts import RowVerdicts

log = logging.getLogger(__name__)

TENANT = "_tenant"
FAILED = "_failed"
LINEAGE = (
    "_source_bucket",
    "_source_key",
    "_source_version_id",
    "_source_etag",
    "_source_sequencer",
    "_event_time",
)
REASON_ROWS = "failed_expectations"
REASON_FILE = "reject_file"


@dataclass
class TableRead:
    """One tenant table's objects as read in this batch, and what the quality step made of them.

    Attributes:
        bucket: The bucket.
        tenant: The tenant.
        dataset: The dataset.
        contract: The contract as it applies to the tenant.
        table: The reader's rows (declared columns, ``_rescued``, ``_row_number``,
            ``_conversion_errors``, ``_raw``, lineage).
        checked: ``table`` plus each row's verdict: ``_failed`` (what it failed; empty for
            a good row) and ``_quarantine_reason``; set by :func:`check`.
        bad_rows: Rows with a non-empty ``_failed``.
        rejected_keys: Objects quarantined whole (``reject_file``); keys set before
            :func:`check` are rejected whatever their rows.
    """

    bucket: str
    tenant: str
    dataset: str
    contract: DatasetContract
    table: pa.Table
    checked: pa.Table | None = None
    bad_rows: int = 0
    rejected_keys: set[str] = field(default_factory=set)


def check(reads: Sequence[TableRead], suites: Mapping[str, ExpectationSuite]) -> list[RowVerdicts]:
    """Validate every read (one call per dataset and suite) and fill in ``good``, ``bad``, ``rejected_keys``.

    Args:
        reads: The tenant tables read (by one task: its share of the batch).
        suites: The suites the reads' contracts name, by name.

    Returns:
        One :class:`RowVerdicts` per validation call.
    """
    from jobs.quality.validate import validate_rows

    groups: dict[tuple[str, str | None], list[TableRead]] = defaultdict(list)
    for read in reads:
        groups[(read.dataset, read.contract.expectations)].append(read)
    all_verdicts = []
    for (dataset, suite_name), members in sorted(groups.items(), key=lambda g: (g[0][0], g[0][1] or "")):
        with_rows = [m for m in members if m.table.num_rows]
        for read in members:
            if not read.table.num_rows:
                _split(read, [])
        if not with_rows:
            continue
        suite = suites[suite_name] if suite_name else None
        combined = pa.concat_tables(
            [
                m.table.append_column(TENANT, pa.array([m.tenant] * m.table.num_rows, pa.string()))
                for m in with_rows
            ]
        )
        verdicts = validate_rows(
            combined, suite, primary_key=with_rows[0].contract.primary_key, dataset=dataset
        )
        all_verdicts.append(verdicts)
        offset = 0
        for read in with_rows:
            _split(read, verdicts.failed[offset : offset + read.table.num_rows])
            offset += read.table.num_rows
        log.debug("validated %s (%s): %d rows, %d bad, %.3fs", dataset, suite_name, combined.num_rows,
                  verdicts.rows_failed, verdicts.seconds)  # fmt: skip
    return all_verdicts


def _split(read: TableRead, failed: list[list[str]]) -> None:
    """Attach each row's verdict (``_failed``, ``_quarantine_reason``) by its failures and the policy."""
    table = read.table
    failed_array = pa.array(failed or [[] for _ in range(table.num_rows)], pa.list_(pa.string()))
    bad_mask = _has_failures(failed_array)
    reasons = pa.array([REASON_ROWS] * table.num_rows, pa.string())
    if read.contract.on_bad_rows == "reject_file" and table.num_rows:
        keys = table["_source_key"]
        # keys rejected beforehand (every row of theirs goes) and keys with a bad row here
        read.rejected_keys = read.rejected_keys | set(pc.unique(pc.filter(keys, bad_mask)).to_pylist())
        if read.rejected_keys:
            in_rejected = pc.is_in(keys, value_set=pa.array(sorted(read.rejected_keys), pa.string()))
            innocent = pc.and_not(in_rejected, bad_mask)  # good rows of a rejected file go with it
            reasons = pc.if_else(innocent, pa.scalar(REASON_FILE), reasons)
            failed_array = pc.if_else(innocent, pa.scalar([REASON_FILE], pa.list_(pa.string())), failed_array)
            bad_mask = pc.or_(bad_mask, in_rejected)
    read.bad_rows = pc.sum(bad_mask).as_py() or 0
    read.checked = table.append_column(FAILED, failed_array).append_column("_quarantine_reason", reasons)


def split_checked(checked: pa.Table) -> tuple[pa.Table, pa.Table]:
    """``(good, bad)`` rows of a checked read: bad rows have a non-empty ``_failed``."""
    bad_mask = _has_failures(checked[FAILED])
    return checked.filter(pc.invert(bad_mask)), checked.filter(bad_mask)


def _has_failures(failed: pa.Array | pa.ChunkedArray) -> pa.Array:
    """Per row: does its ``_failed`` list name anything (null or empty: no)."""
    return pc.greater(pc.fill_null(pc.list_value_length(failed), 0), 0)


def quarantine_summary(read: TableRead, key: str) -> str:
    """Why an object was rejected whole: how many rows failed what (for the ops quarantine record)."""
    if read.checked is None:
        return ""
    rows = read.checked.filter(pc.equal(read.checked["_source_key"], key))
    failed: dict[str, int] = defaultdict(int)
    bad = 0
    for names in rows[FAILED].to_pylist():
        real = [n for n in names or [] if n != REASON_FILE]
        bad += bool(real)
        for name in real:
            failed[name] += 1
    detail = ", ".join(f"{name} x{count}" for name, count in sorted(failed.items()))
    return f"{bad} of {rows.num_rows} rows bad: {detail}"

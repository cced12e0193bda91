"""Check silver against a simulation's ground truth, reading every table independently with pyiceberg.

Tables are found on disk at ``<lake_root>/<bucket>/<tenant>/silver/<dataset>`` and
read straight from their newest metadata file (``vN.metadata.json`` of a hadoop
catalog, or ``NNNNN-<uuid>.metadata.json`` of other catalogs), so no catalog and
no Spark is involved. Rows are compared as multisets on the data columns
(lineage columns start with ``_``).
"""

from __future__ import annotations

import logging
import re
from collections import Counter
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from jobs.simulate.truth import GroundTruth, JsonValue, row_tuples

log = logging.getLogger(__name__)

_HADOOP_METADATA = re.compile(r"^v(\d+)\.metadata\.json$")
_NUMBERED_METADATA = re.compile(r"^(\d+)-[0-9a-fA-F-]+\.metadata\.json$")
EXAMPLES = 5


@dataclass(frozen=True)
class TableResult:
    """One tenant table compared with the truth.

    Attributes:
        tenant: The tenant.
        dataset: The dataset.
        expected: Whether the truth expects this table (an unexpected one may only be empty).
        location: The table directory (None when there is no table).
        expected_rows: Rows the truth expects.
        actual_rows: Rows in the table.
        missing: Expected rows not in the table (counting multiplicity).
        unexpected: Rows in the table the truth does not expect (counting multiplicity).
        duplicates: Extra copies of rows the table holds more than once.
        snapshots: Snapshots in the table's metadata.
        quarantined_rows: Rows in the tenant's quarantine table of this dataset.
        quarantine_missing: Bad rows (key, row number) the truth expects there but not found.
        quarantine_unexpected: Rows found there that the truth does not expect (or twice).
        error: Why the table could not be compared (unreadable, columns differ), else None.
        examples: Up to five rows each of ``missing``, ``unexpected`` and ``duplicates``.
    """

    tenant: str
    dataset: str
    expected: bool
    location: str | None
    expected_rows: int
    actual_rows: int
    missing: int = 0
    unexpected: int = 0
    duplicates: int = 0
    snapshots: int = 0
    quarantined_rows: int = 0
    quarantine_missing: int = 0
    quarantine_unexpected: int = 0
    error: str | None = None
    examples: dict[str, list[list[JsonValue]]] = field(default_factory=dict)

    @property
    def ok(self) -> bool:
        """No difference and no error."""
        silver = self.missing or self.unexpected or self.duplicates
        quarantine = self.quarantine_missing or self.quarantine_unexpected
        return self.error is None and not silver and not quarantine

    def describe(self) -> str:
        """One line for humans."""
        state = "ok" if self.ok else "MISMATCH"
        line = (
            f"{state:8} {self.tenant}/{self.dataset}: {self.actual_rows} rows "
            f"(expected {self.expected_rows}), missing {self.missing}, unexpected {self.unexpected}, "
            f"duplicates {self.duplicates}, {self.snapshots} snapshots; "
            f"quarantine {self.quarantined_rows} rows "
            f"(missing {self.quarantine_missing}, unexpected {self.quarantine_unexpected})"
        )
        return line + (f" — {self.error}" if self.error else "")


@dataclass(frozen=True)
class Verification:
    """Every table's result."""

    tables: list[TableResult]

    @property
    def ok(self) -> bool:
        """Every table matches the truth."""
        return all(t.ok for t in self.tables)

    def summary(self) -> str:
        """One line per table, then a verdict."""
        bad = sum(not t.ok for t in self.tables)
        verdict = "silver matches the truth" if not bad else f"{bad} of {len(self.tables)} tables differ"
        return "\n".join([*(t.describe() for t in self.tables), verdict])


def metadata_version(name: str) -> tuple[int, int] | None:
    """How new an Iceberg metadata file named ``name`` is, as a sortable key (None: not one).

    ``NNNNN-<uuid>.metadata.json`` (catalogs such as Glue) ranks below ``vN.metadata.json``
    (a hadoop catalog), each by its number.
    """
    for rank, pattern in enumerate((_NUMBERED_METADATA, _HADOOP_METADATA)):
        match = pattern.fullmatch(name)
        if match:
            return rank, int(match.group(1))
    return None


def latest_metadata(table_dir: Path) -> Path | None:
    """The newest metadata file of an Iceberg table directory, or None when there is none."""
    versions = [
        (v, p) for p in (table_dir / "metadata").glob("*.metadata.json") if (v := metadata_version(p.name))
    ]
    return max(versions)[1] if versions else None


def find_tables(lake_root: Path, bucket: str) -> list[tuple[str, str, Path]]:
    """Every (tenant, dataset, directory) under ``<lake_root>/<bucket>/*/silver/*`` with metadata."""
    found = []
    for table_dir in sorted((lake_root / bucket).glob("*/silver/*")):
        if table_dir.is_dir() and latest_metadata(table_dir) is not None:
            found.append((table_dir.parent.parent.name, table_dir.name, table_dir))
    return found


def verify(lake_root: str | Path, truth: GroundTruth) -> Verification:
    """Compare every silver table of the truth's bucket with the truth.

    Args:
        lake_root: The local lake directory (``<lake_root>/<bucket>/...``).
        truth: The simulation's ground truth.

    Returns:
        One result per table the truth expects and per unexpected table found.
    """
    root = Path(lake_root)
    on_disk = {(t, d): path for t, d, path in find_tables(root, truth.bucket)}
    results = []
    for tenant, dataset in sorted(set(truth.table_pairs()) | set(on_disk)):
        expected = (tenant, dataset) in set(truth.table_pairs())
        table_dir = on_disk.get((tenant, dataset))
        result = _check_table(tenant, dataset, expected, table_dir, truth)
        results.append(_with_quarantine(result, root, truth))
    verification = Verification(results)
    log.info("verified %d tables: %s", len(results), "ok" if verification.ok else "differences found")
    return verification


def expected_bad_rows(truth: GroundTruth, tenant: str, dataset: str) -> Counter[tuple[str, int]]:
    """(key, row number) of every bad row the truth expects in a tenant's quarantine table."""
    return Counter(
        (key, number)
        for key, rows in truth.bad_rows.items()
        if key.split("/")[0] == tenant and key.split("/")[2] == dataset
        for number, _ in rows
    )


def _with_quarantine(result: TableResult, root: Path, truth: GroundTruth) -> TableResult:
    from dataclasses import replace

    want = expected_bad_rows(truth, result.tenant, result.dataset)
    table_dir = root / truth.bucket / result.tenant / "quarantine" / result.dataset
    got: Counter[tuple[str, int]] = Counter()
    if latest_metadata(table_dir) is not None:
        from pyiceberg.table import StaticTable

        table = StaticTable.from_metadata(str(latest_metadata(table_dir)))
        rows = table.scan(selected_fields=("_source_key", "_row_number")).to_arrow().to_pylist()
        got = Counter((r["_source_key"], r["_row_number"]) for r in rows)
    return replace(
        result,
        quarantined_rows=sum(got.values()),
        quarantine_missing=sum((want - got).values()),
        quarantine_unexpected=sum((got - want).values()),
    )


def _check_table(
    tenant: str, dataset: str, expected: bool, table_dir: Path | None, truth: GroundTruth
) -> TableResult:
    want = truth.expected_rows(tenant, dataset) if expected else []
    base: dict[str, Any] = {"tenant": tenant, "dataset": dataset, "expected": expected}
    if table_dir is None:
        missing = len(want)
        examples = {"missing": [list(r) for r in want[:EXAMPLES]]} if want else {}
        return TableResult(
            **base, location=None, expected_rows=len(want), actual_rows=0, missing=missing, examples=examples
        )
    try:
        columns, got, snapshots = _read(table_dir, truth.columns.get(dataset))
    except Exception as exc:  # any reader failure is a finding, not a crash of the check
        return TableResult(
            **base,
            location=str(table_dir),
            expected_rows=len(want),
            actual_rows=0,
            error=f"unreadable: {exc}",
        )
    base.update(location=str(table_dir), expected_rows=len(want), actual_rows=len(got), snapshots=snapshots)
    if expected and set(columns) != set(truth.columns.get(dataset, columns)):
        return TableResult(**base, error=f"data columns {columns} differ from {truth.columns.get(dataset)}")
    if not expected:
        error = None if not got else "table not expected by the truth"
        return TableResult(**base, unexpected=len(got), error=error, examples=_examples(unexpected=got))
    return _compare(base, want, got)


def _compare(
    base: dict[str, Any], want: list[tuple[JsonValue, ...]], got: list[tuple[JsonValue, ...]]
) -> TableResult:
    want_counts, got_counts = Counter(want), Counter(got)
    missing = sorted((want_counts - got_counts).elements(), key=repr)
    unexpected = sorted((got_counts - want_counts).elements(), key=repr)
    duplicates = sorted(
        (row for row, n in got_counts.items() for _ in range(n - max(want_counts[row], 1))), key=repr
    )
    return TableResult(
        **base,
        missing=len(missing),
        unexpected=len(unexpected),
        duplicates=len(duplicates),
        examples=_examples(missing=missing, unexpected=unexpected, duplicates=duplicates),
    )


def _examples(**rows: list[tuple[JsonValue, ...]]) -> dict[str, list[list[JsonValue]]]:
    return {name: [list(r) for r in found[:EXAMPLES]] for name, found in rows.items() if found}


def _read(table_dir: Path, columns: list[str] | None) -> tuple[list[str], list[tuple[JsonValue, ...]], int]:
    """(data columns, normalised rows, snapshot count) of the table in ``table_dir``."""
    from pyiceberg.table import StaticTable

    metadata = latest_metadata(table_dir)
    table = StaticTable.from_metadata(str(metadata))
    data_columns = [f.name for f in table.schema().fields if not f.name.startswith("_")]
    arrow = table.scan(selected_fields=tuple(data_columns) or ("*",)).to_arrow()
    rows = arrow.select(data_columns).to_pylist()
    return data_columns, row_tuples(rows, columns or data_columns), len(table.metadata.snapshots)

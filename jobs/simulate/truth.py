"""Ground truth of a simulation: what silver must hold, what must be quarantined, what was injected.

Rows are kept JSON-friendly (see :func:`normalise_value`), so the truth file can
be compared with tables read back by any reader once both sides are normalised.
"""

from __future__ import annotations

import datetime as dt
import json
from collections.abc import Iterable, Mapping, Sequence
from dataclasses import asdict, dataclass, field, fields
from decimal import Decimal
from pathlib import Path
from typing import Any

Row = dict[str, Any]
JsonValue = str | int | float | bool | None


def normalise_value(value: Any) -> JsonValue:
    """Turn a Python value from pyarrow / pyiceberg (or the simulator) into its JSON-friendly form.

    Decimals become plain strings (``"12.30"``), datetimes ISO-8601 UTC strings
    ending in ``Z`` (naive ones are taken as UTC; microseconds only when set),
    dates ``YYYY-MM-DD``; strings, numbers, booleans and None are kept.

    Args:
        value: The value.

    Returns:
        The normalised value.

    Raises:
        TypeError: A type the simulator never produces (bytes, lists, ...).
    """
    if value is None or isinstance(value, str | bool | int | float):
        return value
    if isinstance(value, Decimal):
        return format(value, "f")
    if isinstance(value, dt.datetime):
        moment = value if value.tzinfo is not None else value.replace(tzinfo=dt.UTC)
        moment = moment.astimezone(dt.UTC)
        text = moment.strftime("%Y-%m-%dT%H:%M:%S")
        return f"{text}.{moment.microsecond:06d}Z" if moment.microsecond else f"{text}Z"
    if isinstance(value, dt.date):
        return value.isoformat()
    raise TypeError(f"cannot normalise a {type(value).__name__}: {value!r}")


def normalise_row(row: Mapping[str, Any]) -> Row:
    """Normalise every value of a row (see :func:`normalise_value`)."""
    return {name: normalise_value(value) for name, value in row.items()}


def row_tuples(rows: Iterable[Mapping[str, Any]], columns: Sequence[str]) -> list[tuple[JsonValue, ...]]:
    """Rows as normalised tuples of ``columns`` (missing columns are None), sorted by ``repr``."""
    return sorted(
        (tuple(normalise_value(row.get(c)) for c in columns) for row in rows),
        key=repr,
    )


@dataclass
class Injected:
    """Counters of what a simulation injected."""

    uploads: int = 0
    new_keys: int = 0
    overwrites: int = 0
    deletes: int = 0
    bad_files: int = 0
    multipart: int = 0
    duplicates: int = 0
    reordered: int = 0
    delayed: int = 0
    malformed: int = 0
    test_events: int = 0
    non_raw_events: int = 0
    sns_wrapped: int = 0
    multi_record_messages: int = 0
    messages: int = 0
    records: int = 0

    def summary(self) -> str:
        """One line of the non-zero counters."""
        return ", ".join(f"{value} {name.replace('_', ' ')}" for name, value in asdict(self).items() if value)


@dataclass
class GroundTruth:
    """What a simulation did and what silver must look like afterwards.

    Attributes:
        bucket: The tenant group's bucket.
        mode: ``files`` (local lake) or ``s3-api`` (moto's S3 sent the notifications).
        spec: The simulation spec as a dict.
        columns: Data columns of each declared dataset, in order.
        tables: tenant -> dataset -> live key -> rows (normalised); a table whose keys
            were all deleted stays, empty.
        quarantined: Key of every bad file -> the reason the job should give.
        bad_rows: Live key -> the 1-based row numbers (in its latest version) that carry a
            bad value and must be in the tenant's quarantine table, with the kind of value.
        operations: Every upload and delete in operation order (key, kind, event name,
            sequencer, event time, eTag, size).
        injected: The counters.
    """

    bucket: str
    mode: str = "files"
    spec: dict[str, Any] = field(default_factory=dict)
    columns: dict[str, list[str]] = field(default_factory=dict)
    tables: dict[str, dict[str, dict[str, list[Row]]]] = field(default_factory=dict)
    quarantined: dict[str, str] = field(default_factory=dict)
    bad_rows: dict[str, list[tuple[int, str]]] = field(default_factory=dict)
    operations: list[dict[str, Any]] = field(default_factory=list)
    injected: Injected = field(default_factory=Injected)

    # ---- recording ---------------------------------------------------------------------------------
    def record_put(self, tenant: str, dataset: str, key: str, rows: Iterable[Mapping[str, Any]]) -> None:
        """A good object (new or overwritten): its rows replace any earlier version's.

        Rows marked bad (``_bad``, see :data:`jobs.simulate.content.BAD`) are expected in
        the quarantine table instead of silver.
        """
        good, bad = [], []
        for number, row in enumerate(rows, start=1):
            if row.get("_bad"):
                bad.append((number, str(row["_bad"])))
            else:
                good.append(normalise_row(row))
        self.tables.setdefault(tenant, {}).setdefault(dataset, {})[key] = good
        if bad:
            self.bad_rows[key] = bad
        else:
            self.bad_rows.pop(key, None)

    def record_delete(self, tenant: str, dataset: str, key: str) -> None:
        """A deleted object: its rows disappear; the table stays expected (maybe empty)."""
        self.tables.setdefault(tenant, {}).setdefault(dataset, {}).pop(key, None)
        self.bad_rows.pop(key, None)

    def record_bad(self, key: str, reason: str) -> None:
        """A bad file the job must quarantine with ``reason``."""
        self.quarantined[key] = reason

    # ---- reading -----------------------------------------------------------------------------------
    def table_pairs(self) -> list[tuple[str, str]]:
        """Every (tenant, dataset) that must have a silver table (possibly empty), sorted."""
        return sorted((t, d) for t, datasets in self.tables.items() for d in datasets)

    def live_keys(self, tenant: str, dataset: str) -> list[str]:
        """Keys whose rows must be in the table, sorted."""
        return sorted(self.tables.get(tenant, {}).get(dataset, {}))

    def expected_rows(
        self, tenant: str, dataset: str, columns: Sequence[str] | None = None
    ) -> list[tuple[JsonValue, ...]]:
        """The rows the table must hold, as sorted tuples.

        Args:
            tenant: The tenant.
            dataset: The dataset.
            columns: Columns to project (default: the dataset's data columns).

        Returns:
            Normalised tuples sorted by ``repr`` (compare with :func:`row_tuples` of actual rows).
        """
        cols = list(columns) if columns is not None else self.columns.get(dataset, [])
        objects = self.tables.get(tenant, {}).get(dataset, {})
        return row_tuples((row for rows in objects.values() for row in rows), cols)

    # ---- persistence -------------------------------------------------------------------------------
    def to_dict(self) -> dict[str, Any]:
        """The whole truth as JSON-ready data."""
        return {f.name: getattr(self, f.name) for f in fields(self) if f.name != "injected"} | {
            "injected": asdict(self.injected)
        }

    def save(self, path: str | Path) -> Path:
        """Write the truth as JSON (parent directories are created); returns the path."""
        target = Path(path)
        target.parent.mkdir(parents=True, exist_ok=True)
        target.write_text(json.dumps(self.to_dict(), ensure_ascii=False, indent=1), encoding="utf-8")
        return target

    @classmethod
    def from_dict(cls, data: Mapping[str, Any]) -> GroundTruth:
        """The truth :meth:`to_dict` produced."""
        known = {f.name for f in fields(Injected)}
        injected = Injected(**{k: v for k, v in data.get("injected", {}).items() if k in known})
        return cls(
            bucket=data["bucket"],
            mode=data.get("mode", "files"),
            spec=dict(data.get("spec", {})),
            columns={k: list(v) for k, v in data.get("columns", {}).items()},
            tables=data.get("tables", {}),
            quarantined=dict(data.get("quarantined", {})),
            bad_rows={k: [(int(n), str(kind)) for n, kind in v] for k, v in data.get("bad_rows", {}).items()},
            operations=list(data.get("operations", [])),
            injected=injected,
        )

    @classmethod
    def load(cls, path: str | Path) -> GroundTruth:
        """Read a truth file written by :meth:`save`."""
        return cls.from_dict(json.loads(Path(path).read_text(encoding="utf-8")))

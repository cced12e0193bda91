"""What one simulation injects: the validated, frozen :class:`SimulationSpec`.

Rates become exact counts, ``round(rate * base)`` with Python's ``round``, so a
test can compute every counter from the spec alone:

* ``overwrites = round(objects * overwrite_rate)`` (at least one upload makes a new key),
  ``new keys = objects - overwrites``;
* ``deletes = round(new keys * delete_rate)``, ``bad files = round(objects * bad_rate)``,
  ``malformed = round(objects * malformed_rate)``;
* raw records = ``objects + bad files + deletes``; ``pairs = min(round(raw records *
  pair_rate / 2), raw records // 2)`` messages carry two records, so raw messages =
  raw records - pairs;
* ``duplicates``, ``reordered`` (swaps) and ``delayed`` = ``round(raw messages * rate)``,
  ``sns wrapped = round(raw messages * sns_rate)``;
* messages = raw messages + duplicates + malformed + test_events + non_raw_events.
"""

from __future__ import annotations

import datetime as dt
import re
from dataclasses import asdict, dataclass, fields
from typing import Any

DATASETS: tuple[str, ...] = ("orders", "clicks", "inventory")
UNKNOWN_DATASET = "unknown_ds"
TENANT_NAMES: tuple[str, ...] = (
    "acme",
    "globex-eu",
    "initech",
    "umbrella-labs",
    "hooli",
    "stark-ind",
    "wayne-ent",
    "soylent",
    "tyrell",
    "cyberdyne",
    "wonka-uk",
    "vandelay",
)
_BUCKET_RE = re.compile(r"^[a-z0-9][a-z0-9.-]{1,61}[a-z0-9]$")
_RATES = (
    "overwrite_rate",
    "delete_rate",
    "dup_rate",
    "reorder_rate",
    "delay_rate",
    "bad_rate",
    "malformed_rate",
    "sns_rate",
    "pair_rate",
    "multipart_rate",
    "gzip_rate",
    "odd_name_rate",
    "bad_row_rate",
)


def tenant_names(count: int) -> list[str]:
    """Lower-case, path-safe tenant names: ``acme``, ``globex-eu``, ... then ``acme-2``, ..."""
    names = list(TENANT_NAMES[:count])
    round_no = 2
    while len(names) < count:
        names += [f"{n}-{round_no}" for n in TENANT_NAMES[: count - len(names)]]
        round_no += 1
    return names


@dataclass(frozen=True)
class SimulationSpec:
    """The traffic of one simulated tenant group (one bucket, one queue).

    Attributes:
        tenants: Tenants uploading.
        objects: Good uploads in total across the datasets (new keys and overwrites).
        overwrite_rate: Share of ``objects`` that overwrite an earlier key with new content.
        delete_rate: Share of new keys deleted later.
        dup_rate: Share of raw-zone messages published twice.
        reorder_rate: Raw-zone messages swapped with another one, as a share of them.
        delay_rate: Share of raw-zone messages held back and published last.
        bad_rate: Bad files (wrong CSV header, corrupt gzip, empty, undeclared dataset),
            as a share of ``objects``; they come on top of ``objects``.
        malformed_rate: Malformed bodies (not JSON, JSON without Records, a traversal
            key), as a share of ``objects``.
        sns_rate: Share of raw-zone messages wrapped in an SNS envelope.
        pair_rate: Share of raw-zone records sent two to a message.
        multipart_rate: Share of uploads notified as ``ObjectCreated:CompleteMultipartUpload``.
        gzip_rate: Share of orders files written as ``.csv.gz``.
        odd_name_rate: Share of file names with spaces, ``+``, unicode, ...
        bad_row_rate: Share of rows in good files given a bad value (out of range, not
            in the allowed set, a missing key, or text that is no number); the job must
            quarantine exactly those rows and land the rest of the file.
        test_events: ``s3:TestEvent`` messages.
        non_raw_events: Events on other zones (``<tenant>/silver/...``) the job must ignore.
        rows_per_object: (min, max) rows per good file.
        start: Event time of the first operation (ISO-8601 with a zone); default
            ``2024-03-04T08:00:00Z``, so a seed always gives the same bodies.
        step_ms: (min, max) milliseconds between consecutive operations.
        seed: Random seed; the same spec gives the same bodies and truth.
        bucket: The tenant group's bucket.
        region: AWS region written into the notifications.
    """

    tenants: int = 5
    objects: int = 60
    overwrite_rate: float = 0.15
    delete_rate: float = 0.1
    dup_rate: float = 0.1
    reorder_rate: float = 0.1
    delay_rate: float = 0.05
    bad_rate: float = 0.07
    malformed_rate: float = 0.05
    sns_rate: float = 0.1
    pair_rate: float = 0.1
    multipart_rate: float = 0.1
    gzip_rate: float = 0.3
    odd_name_rate: float = 0.2
    bad_row_rate: float = 0.03
    test_events: int = 2
    non_raw_events: int = 3
    rows_per_object: tuple[int, int] = (3, 12)
    start: str | None = None
    step_ms: tuple[int, int] = (20, 60_000)
    seed: int = 7
    bucket: str = "demo-lake"
    region: str = "us-east-1"

    def __post_init__(self) -> None:
        """Validate every field; raise ``ValueError`` naming the first bad one."""
        for name in _RATES:
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int | float) or not 0 <= value <= 1:
                raise ValueError(f"{name} must be a number between 0 and 1, got {value!r}")
        for name, low in (("tenants", 1), ("objects", 1), ("test_events", 0), ("non_raw_events", 0)):
            value = getattr(self, name)
            if isinstance(value, bool) or not isinstance(value, int) or value < low:
                raise ValueError(f"{name} must be an integer >= {low}, got {value!r}")
        rows = self.rows_per_object
        if len(rows) != 2 or not all(isinstance(r, int) for r in rows) or not 1 <= rows[0] <= rows[1]:
            raise ValueError(f"rows_per_object must be (min, max) with 1 <= min <= max, got {rows!r}")
        steps = self.step_ms
        if len(steps) != 2 or not all(isinstance(r, int) for r in steps) or not 1 <= steps[0] <= steps[1]:
            raise ValueError(f"step_ms must be (min, max) with 1 <= min <= max, got {steps!r}")
        if self.start is not None:
            try:
                moment = dt.datetime.fromisoformat(self.start)
            except ValueError:
                moment = None
            if moment is None or moment.tzinfo is None:
                raise ValueError(f"start must be an ISO-8601 time with a zone, got {self.start!r}")
        if not _BUCKET_RE.fullmatch(self.bucket) or ".." in self.bucket:
            raise ValueError(f"bucket must be a valid S3 bucket name, got {self.bucket!r}")

    def start_time(self) -> dt.datetime:
        """The event time of the first operation, in UTC."""
        if self.start is None:
            return dt.datetime(2024, 3, 4, 8, 0, tzinfo=dt.UTC)
        return dt.datetime.fromisoformat(self.start).astimezone(dt.UTC)

    def to_dict(self) -> dict[str, Any]:
        """JSON-ready fields."""
        data = asdict(self)
        data["rows_per_object"] = list(self.rows_per_object)
        data["step_ms"] = list(self.step_ms)
        return data

    @classmethod
    def from_dict(cls, data: dict[str, Any]) -> SimulationSpec:
        """The spec :meth:`to_dict` wrote (unknown keys are ignored)."""
        known = {f.name for f in fields(cls)}
        values = {k: v for k, v in data.items() if k in known}
        for name in ("rows_per_object", "step_ms"):
            if name in values:
                values[name] = tuple(values[name])
        return cls(**values)

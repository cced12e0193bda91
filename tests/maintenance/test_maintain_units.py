"""Units of maintenance: conflict retries, checkpoint reading for bronze retention, identifiers."""

from __future__ import annotations

import json
import os
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobs.config import SilverlineConfig, load_config
from jobs.maintenance.retention import expire_bronze, relative_name, taken_files
from jobs.maintenance.tables import split_identifier, sql_timestamp
from jobs.silver.conflicts import is_conflict, retry_on_conflict

pytestmark = pytest.mark.unit

MISSING = "org.apache.iceberg.exceptions.ValidationException: Cannot commit, missing data files: [a.parquet]"


def test_conflicts_are_recognised_and_other_errors_are_not() -> None:
    assert is_conflict(RuntimeError(MISSING))
    assert is_conflict(RuntimeError("CommitFailedException: Version 7 already exists"))
    assert not is_conflict(RuntimeError("CommitStateUnknownException: timed out"))
    assert not is_conflict(RuntimeError("TABLE_OR_VIEW_NOT_FOUND"))
    assert not is_conflict(RuntimeError(""))


def test_a_file_a_concurrent_expiry_deleted_is_a_conflict() -> None:
    """A write planned from a snapshot that ``maintain`` expired meanwhile reads a manifest (or data
    file) that is gone: planning it again from the new table state succeeds."""
    gone = (
        "java.io.FileNotFoundException: File file:/lake/_ops/g/tables/ops/stream_progress/metadata/"
        "70cb0960-d82a-46f4-88bc-ce3adcb71f3c-m0.avro does not exist"
    )
    assert is_conflict(RuntimeError(f"org.apache.iceberg.exceptions.RuntimeIOException: {gone}"))
    assert is_conflict(
        RuntimeError("java.io.FileNotFoundException: File file:/l/t/data/x.parquet does not exist")
    )
    # Not a table's file: a missing bronze file or checkpoint is not retried.
    assert not is_conflict(
        RuntimeError("java.io.FileNotFoundException: File file:/l/bronze/x.jsonl does not exist")
    )


def test_a_conflict_is_retried_until_the_write_succeeds() -> None:
    calls, sleeps = [], []

    def write() -> str:
        calls.append(1)
        if len(calls) < 3:
            raise RuntimeError(MISSING)
        return "done"

    assert retry_on_conflict(write, "t", sleep=sleeps.append) == "done"
    assert len(calls) == 3 and len(sleeps) == 2 and sleeps[1] > sleeps[0] * 0.6


def test_the_last_conflict_and_any_other_error_are_raised() -> None:
    def conflict() -> None:
        raise RuntimeError(MISSING)

    with pytest.raises(RuntimeError, match="missing data files"):
        retry_on_conflict(conflict, "t", attempts=3, sleep=lambda _s: None)
    calls = []

    def broken() -> None:
        calls.append(1)
        raise ValueError("no such codec")

    with pytest.raises(ValueError):
        retry_on_conflict(broken, "t", sleep=lambda _s: None)
    assert calls == [1]


def test_relative_names_across_uri_spellings() -> None:
    assert (
        relative_name("file:///lake/_ops/g/bronze/dt=1/a.jsonl", "file:/lake/_ops/g/bronze/")
        == "dt=1/a.jsonl"
    )
    assert relative_name("s3a://ops/g/bronze/x%20y.jsonl", "s3://ops/g/bronze/") == "x y.jsonl"
    assert relative_name("s3://other/g/bronze/a.jsonl", "s3://ops/g/bronze/") is None
    assert relative_name("file:///lake/_ops/g/bronzeX/a.jsonl", "file:///lake/_ops/g/bronze/") is None


def test_identifiers_and_timestamps() -> None:
    assert split_identifier("silverline.`demo-lake`.acme.silver.orders") == (
        "silverline",
        "`demo-lake`.acme.silver.orders",
    )
    assert split_identifier("`silverline_ops`.`ops`.`ledger`") == ("silverline_ops", "`ops`.`ledger`")
    moment = datetime(2026, 11, 24, 3, 4, 5, tzinfo=UTC)
    assert sql_timestamp(moment) == "TIMESTAMP '2026-11-24 03:04:05.000000+00:00'"


def _config(tmp_path: Path, days: float | None) -> SilverlineConfig:
    return load_config(
        None,
        environ={"SILVERLINE__MAINTENANCE__BRONZE_RETENTION_DAYS": "null" if days is None else str(days)},
        overrides={"lake": {"root": str(tmp_path / "lake")}},
    )


def _checkpoint(tmp_path: Path, entries: dict[int, list[tuple[str, int]]], committed: list[int]) -> None:
    """A file-source log and commit log in Spark's format (``v1`` then one JSON entry per line)."""
    root = tmp_path / "lake" / "_ops" / "demo" / "checkpoints" / "ingest"
    (root / "sources" / "0").mkdir(parents=True)
    (root / "commits").mkdir(parents=True)
    bronze = (tmp_path / "lake" / "_ops" / "demo" / "bronze").resolve()
    for batch, files in entries.items():
        lines = ["v1"] + [
            json.dumps({"path": (bronze / name).as_uri(), "timestamp": ms, "batchId": batch})
            for name, ms in files
        ]
        (root / "sources" / "0" / str(batch)).write_text("\n".join(lines), encoding="utf-8")
    for batch in committed:
        (root / "commits" / str(batch)).write_text('v1\n{"nextBatchWatermarkMs":0}', encoding="utf-8")


def test_bronze_retention_deletes_only_old_files_of_committed_batches(tmp_path: Path) -> None:
    config = _config(tmp_path, 1.0)
    bronze = Path(config.ops_root.removeprefix("file://")) / "bronze"
    now = datetime(2026, 11, 24, tzinfo=UTC)
    old = int((now - timedelta(days=3)).timestamp() * 1000)
    new = int((now - timedelta(hours=1)).timestamp() * 1000)
    names = [
        "dt=1/old-committed.jsonl",
        "dt=1/new-committed.jsonl",
        "dt=1/old-uncommitted.jsonl",
        "dt=1/un.jsonl",
    ]
    for name in names:
        (bronze / name).parent.mkdir(parents=True, exist_ok=True)
        (bronze / name).write_text("{}\n", encoding="utf-8")
    _checkpoint(
        tmp_path,
        {0: [(names[0], old), (names[1], new)], 1: [(names[2], old)]},
        committed=[0],
    )
    assert set(taken_files(config)) == {names[0], names[1]}
    assert expire_bronze(config, now=now, dry_run=True) == (1, 2)
    assert all((bronze / n).exists() for n in names)
    assert expire_bronze(config, now=now) == (1, 2)
    assert sorted(str(p.relative_to(bronze)) for p in bronze.rglob("*.jsonl")) == sorted(names[1:])


def test_bronze_retention_without_a_checkpoint_or_when_off_deletes_nothing(tmp_path: Path) -> None:
    config = _config(tmp_path, None)
    bronze = Path(config.ops_root.removeprefix("file://")) / "bronze"
    bronze.mkdir(parents=True)
    (bronze / "a.jsonl").write_text("{}\n", encoding="utf-8")
    os.utime(bronze / "a.jsonl", (0, 0))
    now = datetime.now(UTC)
    assert expire_bronze(config, now=now) == (0, 0)
    assert expire_bronze(_config(tmp_path, 1.0), now=now) == (0, 1)
    assert (bronze / "a.jsonl").exists()

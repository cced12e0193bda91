"""Per-object work in Spark tasks: fetch, decode, check and write the rows of a batch's objects.

The driver plans (:mod:`jobs.stream.plan`): which objects each tenant table reads,
and where its rows go. It packs those reads into *bins*, one Spark task each
(:func:`pack`), and runs :func:`run_bin` on the executors. A task:

1. reads its objects with one :class:`jobs.objects.reader.ObjectReader` (one S3
   client per task; the reader's limits bound each object, R11);
2. validates its rows with great-expectations, one call per dataset and suite
   (:func:`jobs.quality.batch.check`), which gives every row its verdict;
3. writes the good rows of a plain append as Parquet data files straight into the
   tenant table's data location (:func:`jobs.silver.fastappend.write_data_files`),
   and the good rows of a replacement and the bad rows as staged Parquet files for
   the driver's MERGE;
4. returns, per tenant table, what happened to each object, the files it wrote and
   its counts, and its validation results without the per-row lists.

No row reaches the driver: only outcomes, file names and counts. A read that raises
(storage refusing to serve, R10) fails its unit only; the other units of the task
go on, and the driver sends that table's events to the retry table.
"""

from __future__ import annotations

import logging
import math
import time
from collections.abc import Callable, Iterable, Iterator, Mapping, Sequence
from dataclasses import dataclass, field
from datetime import datetime
from typing import TYPE_CHECKING, Any

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

from jobs.config import SilverlineConfig
from jobs.contracts import DatasetContract
from jobs.objects.reader import ObjectReader, ObjectRef, Piece, ReadOutcome
from jobs.quality import batch as batch_quality
from jobs.quality.split import FAILED_COLUMN, FAILED_EXPECTATIONS_COLUMN
from jobs.silver.commit import one_line, silver_columns
from jobs.silver.fastappend import FileTarget, WrittenFile, delete_local, put_local, write_data_files
from jobs.silver.staging import stage
from jobs.storage import QUARANTINE

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite

    from jobs.quality.verdicts import RowVerdicts

log = logging.getLogger(__name__)

# A unit is one tenant table's objects read by one task: at most this many objects and bytes.
UNIT_OBJECTS = 1000
UNIT_BYTES = 64 << 20
# A task takes units up to about this many bytes before another task is started.
BIN_BYTES = 256 << 20
# What an object of unknown size (a re-read of the current version) is taken to weigh.
_OBJECT_WEIGHT = 64 << 10


@dataclass(frozen=True)
class ReadUnit:
    """Objects of one tenant table, read by one task.

    Attributes:
        table: The tenant table.
        bucket: The bucket.
        tenant: The tenant.
        dataset: The dataset.
        contract: The contract as it applies to the tenant.
        refs: The object versions to read; ``current`` marks a read of whatever version is
            current now (a removal that named one version, R5).
        target: The table's data files target; None: the good rows are staged for a MERGE
            that replaces the objects' old rows.
    """

    table: str
    bucket: str
    tenant: str
    dataset: str
    contract: DatasetContract
    refs: tuple[tuple[ObjectRef, bool], ...]
    target: FileTarget | None

    @property
    def weight(self) -> int:
        """Bytes to read (known sizes; a nominal size for the others)."""
        return sum(ref.size if ref.size is not None else _OBJECT_WEIGHT for ref, _ in self.refs)


@dataclass(frozen=True)
class TaskSpec:
    """What every task of a batch needs besides its units (sent with the tasks).

    Attributes:
        config: The job configuration (objects root, S3 settings, reader limits, ops root).
        suites: The expectation suites the batch's contracts name, by name.
        batch_id: The micro-batch id (``_batch_id`` of the rows).
        ingest_time: The rows' ``_ingest_time`` (one per batch).
        staging_uri: Where staged files go (``<ops_root>staging/``).
    """

    config: SilverlineConfig
    suites: Mapping[str, ExpectationSuite]
    batch_id: int
    ingest_time: datetime
    staging_uri: str


@dataclass
class UnitResult:
    """What one unit's task made of its objects.

    Attributes:
        table: The tenant table.
        error: Why the unit could not be read (its table's events are retried), else None.
        outcomes: One per ref, in order (the ref as served: version and eTag of a current read).
        files: Data files (plain append) or staged files of the good rows (MERGE).
        bad_files: Staged files of the bad rows (for the quarantine table).
        good_rows: Rows in ``files``.
        bad_rows: Rows in ``bad_files``.
        rejected: Objects quarantined whole (``reject_file``), with a summary of why.
    """

    table: str
    error: str | None = None
    outcomes: list[ReadOutcome] = field(default_factory=list)
    files: list[WrittenFile] = field(default_factory=list)
    bad_files: list[str] = field(default_factory=list)
    good_rows: int = 0
    bad_rows: int = 0
    rejected: dict[str, str] = field(default_factory=dict)


@dataclass
class BinResult:
    """What one task returns: its units' results, its validation results and where its time went."""

    units: list[UnitResult]
    verdicts: list[RowVerdicts]
    seconds: dict[str, float]


def pack(units: Sequence[ReadUnit], parallelism: int) -> list[list[ReadUnit]]:
    """Pack units into bins, one Spark task each: small reads together, large ones spread.

    At least ``parallelism`` bins when there are that many units (every core gets work),
    more when the bytes call for it; heaviest units first, each into the lightest bin.

    Args:
        units: The batch's units.
        parallelism: Tasks the cluster runs at once (``defaultParallelism``).

    Returns:
        The non-empty bins.
    """
    if not units:
        return []
    total = sum(unit.weight for unit in units)
    count = min(len(units), max(1, parallelism, math.ceil(total / BIN_BYTES)))
    bins: list[list[ReadUnit]] = [[] for _ in range(count)]
    loads = [0] * count
    for unit in sorted(units, key=lambda u: (-u.weight, u.table)):
        lightest = loads.index(min(loads))
        bins[lightest].append(unit)
        loads[lightest] += unit.weight
    return [b for b in bins if b]


def split_refs(refs: Sequence[tuple[ObjectRef, bool]]) -> list[tuple[tuple[ObjectRef, bool], ...]]:
    """One table's refs in chunks of at most :data:`UNIT_OBJECTS` objects and about :data:`UNIT_BYTES`."""
    chunks: list[tuple[tuple[ObjectRef, bool], ...]] = []
    current: list[tuple[ObjectRef, bool]] = []
    weight = 0
    for item in refs:
        size = item[0].size if item[0].size is not None else _OBJECT_WEIGHT
        if current and (len(current) >= UNIT_OBJECTS or weight + size > UNIT_BYTES):
            chunks.append(tuple(current))
            current, weight = [], 0
        current.append(item)
        weight += size
    if current:
        chunks.append(tuple(current))
    return chunks


def run_bins(spec: TaskSpec, bins: Iterable[Sequence[ReadUnit]]) -> Iterator[BinResult]:
    """The task function: every bin of a partition (one, as :func:`pack` plans them)."""
    for units in bins:
        yield run_bin(spec, units)


def run_bin(spec: TaskSpec, units: Sequence[ReadUnit]) -> BinResult:
    """Read, check and write one bin of units (see the module docstring).

    Objects that fit in one block are read whole, then checked together (one
    great-expectations call per dataset and suite) and written. Each larger object then
    goes a block at a time: read, check, write (R11); its files count only when the whole
    object ends ``ok``, else they are deleted.
    """
    seconds = {"read": 0.0, "validate": 0.0, "write": 0.0}
    config = spec.config
    started = time.perf_counter()
    reader = ObjectReader(
        config.objects_root,
        s3_client=_s3_client(config),
        max_workers=config.stream.read_threads,
        max_object_bytes=config.stream.max_object_bytes,
        max_decompressed_bytes=config.stream.max_decompressed_bytes,
        max_row_bytes=config.stream.max_row_bytes,
        block_bytes=config.stream.read_block_bytes,
    )
    works: list[_UnitWork] = []
    reads: list[tuple[batch_quality.TableRead, _UnitWork]] = []  # what fits in a block, per unit
    for unit in units:
        work = _UnitWork(unit, UnitResult(unit.table), [None] * len(unit.refs))
        works.append(work)
        try:
            pieces = reader.read_pieces([ref for ref, _ in unit.refs], unit.contract)
            first = next(pieces)
        except Exception as exc:  # R10: this table's change fails, not the batch
            work.fail(f"read failed: {one_line(exc)}")
            continue
        work.pieces = pieces
        work.note(first.outcomes)
        read = batch_quality.TableRead(unit.bucket, unit.tenant, unit.dataset, unit.contract, first.table)
        reads.append((read, work))
    seconds["read"] = time.perf_counter() - started
    started = time.perf_counter()
    verdicts = _check([(read, work.result, work.unit) for read, work in reads], spec)
    seconds["validate"] = time.perf_counter() - started
    started = time.perf_counter()
    writer = _Writer(spec)
    for read, work in reads:
        if work.result.error is not None:
            continue
        try:
            work.add(_write(read, work.unit, spec, writer))
        except Exception as exc:  # e.g. the table's location refusing the write: retried
            work.fail(f"write failed: {one_line(exc)}", writer)
    seconds["write"] = time.perf_counter() - started
    for work in works:
        if work.result.error is None and work.pieces is not None:
            verdicts.extend(_run_streamed(work, reader, spec, writer, seconds))
        work.finish()
    stripped = [_without_rows(v) for v in verdicts]
    return BinResult([w.result for w in works], stripped, {k: round(s, 3) for k, s in seconds.items()})


@dataclass
class _Written:
    """What writing one checked read made: files, row counts, objects rejected whole."""

    files: list[WrittenFile] = field(default_factory=list)
    bad_files: list[str] = field(default_factory=list)
    good_rows: int = 0
    bad_rows: int = 0
    rejected: dict[str, str] = field(default_factory=dict)
    verdicts: list[RowVerdicts] = field(default_factory=list)

    def add(self, other: _Written) -> None:
        self.files.extend(other.files)
        self.bad_files.extend(other.bad_files)
        self.good_rows += other.good_rows
        self.bad_rows += other.bad_rows
        self.rejected.update(other.rejected)
        self.verdicts.extend(other.verdicts)

    def paths(self) -> list[str]:
        return [f.path for f in self.files] + self.bad_files


@dataclass
class _UnitWork:
    """One unit in a task: its result so far, its pieces still to read, its outcomes by ref."""

    unit: ReadUnit
    result: UnitResult
    outcomes: list[ReadOutcome | None]
    pieces: Iterator[Piece] | None = None
    written: _Written = field(default_factory=_Written)

    def note(self, outcomes: Iterable[tuple[int, ReadOutcome]]) -> None:
        for index, outcome in outcomes:
            self.outcomes[index] = outcome

    def add(self, written: _Written) -> None:
        self.written.add(written)

    def fail(self, error: str, writer: _Writer | None = None) -> None:
        """The unit's table is retried: nothing it wrote counts (the files are deleted)."""
        self.result.error = error
        log.warning("%s: %s (%d objects to retry)", self.unit.table, error, len(self.unit.refs))
        if writer is not None:
            writer.delete(self.written.paths())
        self.written = _Written()

    def finish(self) -> None:
        """Fill in the result (outcomes in ref order)."""
        result, written = self.result, self.written
        if result.error is not None:
            return
        assert all(o is not None for o in self.outcomes)  # every ref ends in one outcome (R7)
        result.outcomes = [o for o in self.outcomes if o is not None]
        result.files, result.bad_files = written.files, written.bad_files
        result.good_rows, result.bad_rows, result.rejected = (
            written.good_rows,
            written.bad_rows,
            written.rejected,
        )


def _run_streamed(
    work: _UnitWork, reader: ObjectReader, spec: TaskSpec, writer: _Writer, seconds: dict[str, float]
) -> list[RowVerdicts]:
    """The unit's objects larger than a block: each read, checked and written a block at a time.

    An object's files and verdicts count only when it ends ``ok``. Under ``reject_file``, an
    object with a bad row in any block is read again and every row goes to quarantine.
    """
    assert work.pieces is not None
    unit = work.unit
    verdicts: list[RowVerdicts] = []
    current = _Written()
    try:
        for piece in _timed(work.pieces, seconds):
            if piece.table.num_rows:
                current.add(_check_and_write(piece.table, unit, spec, writer, seconds, set()))
            ended = piece.outcomes
            del piece  # its rows are written: not held while the next block is read
            if not ended:
                continue
            ((_, outcome),) = ended
            if outcome.status != "ok":
                writer.delete(current.paths())
            elif current.rejected:
                writer.delete(current.paths())
                current = _rejected_whole(outcome.ref, current, reader, unit, spec, writer, seconds)
            work.note(ended)
            if outcome.status == "ok":
                work.add(current)
                verdicts.extend(current.verdicts)
            current = _Written()
    except Exception as exc:  # R10: this table's change fails, not the batch
        writer.delete(current.paths())
        work.fail(f"read failed: {one_line(exc)}", writer)
        return []
    return verdicts


def _rejected_whole(
    ref: ObjectRef,
    first: _Written,
    reader: ObjectReader,
    unit: ReadUnit,
    spec: TaskSpec,
    writer: _Writer,
    seconds: dict[str, float],
) -> _Written:
    """A streamed object rejected whole (``reject_file``): read again, every row to quarantine."""
    again = _Written()
    for piece in _timed(reader.read_pieces([ref], unit.contract), seconds):
        if piece.table.num_rows:
            again.add(_check_and_write(piece.table, unit, spec, writer, seconds, {ref.key}))
        ended = piece.outcomes
        del piece
        for _, outcome in ended:
            if outcome.status != "ok":  # it changed since: the later event covers it
                writer.delete(again.paths())
                raise RuntimeError(f"{ref.key} changed while it was read again: {outcome.reason}")
    again.rejected = {ref.key: first.rejected.get(ref.key, "") + " (first block with a bad row)"}
    return again


def _check_and_write(
    rows: pa.Table,
    unit: ReadUnit,
    spec: TaskSpec,
    writer: _Writer,
    seconds: dict[str, float],
    rejected: set[str],
) -> _Written:
    """Check one block's rows and write them (``rejected``: keys whose every row goes to quarantine)."""
    started = time.perf_counter()
    read = batch_quality.TableRead(unit.bucket, unit.tenant, unit.dataset, unit.contract, rows)
    read.rejected_keys = set(rejected)
    verdicts = batch_quality.check([read], spec.suites)
    seconds["validate"] += time.perf_counter() - started
    started = time.perf_counter()
    written = _write(read, unit, spec, writer)
    written.verdicts = verdicts
    seconds["write"] += time.perf_counter() - started
    return written


def _timed(pieces: Iterator[Piece], seconds: dict[str, float]) -> Iterator[Piece]:
    """The pieces, the time spent producing them added to ``seconds["read"]``."""
    while True:
        started = time.perf_counter()
        try:
            piece = next(pieces)
        except StopIteration:
            return
        finally:
            seconds["read"] += time.perf_counter() - started
        yield piece
        del piece  # not held while the next block is read


def _check(
    reads: Sequence[tuple[batch_quality.TableRead, UnitResult, ReadUnit]], spec: TaskSpec
) -> list[RowVerdicts]:
    """Validate the reads, one call per dataset and suite; a call that raises fails only its units."""
    groups: dict[tuple[str, str | None], list[tuple[batch_quality.TableRead, UnitResult]]] = {}
    for read, result, unit in reads:
        groups.setdefault((unit.dataset, unit.contract.expectations), []).append((read, result))
    verdicts: list[RowVerdicts] = []
    for (dataset, _), members in groups.items():
        try:
            verdicts.extend(batch_quality.check([read for read, _ in members], spec.suites))
        except Exception as exc:  # R10: retried (then parked) with the reason, the others go on
            error = f"validate failed: {one_line(exc)}"
            log.warning("%s: %s (%d tables to retry)", dataset, error, len(members))
            for _, result in members:
                result.error = error
    return verdicts


def run_isolated(
    run: Callable[[list[list[ReadUnit]]], list[BinResult]], bins: list[list[ReadUnit]]
) -> list[BinResult]:
    """Run the bins in one Spark job; if the job fails, each table alone, so only failing tables fail.

    A task that dies (a Python worker killed for its memory, a crash in a native decoder)
    fails the whole job. Rather than failing the batch, which would be replayed into the
    same failure, each table's units are then run as a job of their own: a table whose job
    fails again gets the error (its events are retried, then parked), the others go on (R10).

    Args:
        run: Runs bins as one Spark job and returns their results.
        bins: The batch's bins.

    Returns:
        The results.
    """
    try:
        return run(bins)
    except Exception as exc:
        log.warning("the read stage failed (%s): reading each table on its own", one_line(exc))
    by_table: dict[str, list[ReadUnit]] = {}
    for units in bins:
        for unit in units:
            by_table.setdefault(unit.table, []).append(unit)
    results: list[BinResult] = []
    for table, units in by_table.items():
        try:
            results.extend(run([units]))
        except Exception as exc:
            error = f"read failed: {one_line(exc)}"
            log.warning("%s: %s", table, error)
            results.append(BinResult([UnitResult(unit.table, error=error) for unit in units], [], {}))
    return results


def _write(read: batch_quality.TableRead, unit: ReadUnit, spec: TaskSpec, writer: _Writer) -> _Written:
    """Write a checked read's good and bad rows; note the rejected objects."""
    assert read.checked is not None  # set by batch_quality.check
    written = _Written()
    good, bad = batch_quality.split_checked(read.checked)
    silver = [n for n, _ in silver_columns(unit.contract) if n not in ("_ingest_time", "_batch_id")]
    good = _with_ingest(good.select(silver), spec)
    if unit.target is not None:
        written.files = write_data_files(good, unit.target, writer.put)
    else:
        written.files = [WrittenFile(writer.stage(good, spec.batch_id), 0, good.num_rows, None)]
    written.good_rows = good.num_rows
    if bad.num_rows:
        names = [
            n for n, _ in silver_columns(unit.contract, QUARANTINE) if n not in ("_ingest_time", "_batch_id")
        ]
        bad = bad.rename_columns(
            [FAILED_EXPECTATIONS_COLUMN if n == FAILED_COLUMN else n for n in bad.column_names]
        )
        written.bad_files = [writer.stage(_with_ingest(bad.select(names), spec), spec.batch_id)]
        written.bad_rows = bad.num_rows
    written.rejected = {
        key: batch_quality.quarantine_summary(read, key) for key in sorted(read.rejected_keys)
    }
    return written


def _with_ingest(rows: pa.Table, spec: TaskSpec) -> pa.Table:
    """``rows`` with ``_ingest_time`` and ``_batch_id`` appended, the batch's values."""
    count = rows.num_rows
    moment = pa.scalar(spec.ingest_time, pa.timestamp("us", tz="UTC"))
    rows = rows.append_column("_ingest_time", pa.repeat(moment, count))
    return rows.append_column("_batch_id", pa.repeat(pa.scalar(spec.batch_id, pa.int64()), count))


def _without_rows(verdicts: RowVerdicts) -> RowVerdicts:
    """The verdicts without their per-row lists (the rows' verdicts stayed with the rows)."""
    from dataclasses import replace

    return replace(verdicts, failed=[])


class _Writer:
    """Writes a task's files: local paths directly, ``s3://`` through one S3 client."""

    def __init__(self, spec: TaskSpec) -> None:
        self._spec = spec
        self._s3: Any = None

    def put(self, uri: str, data: bytes) -> None:
        if uri.startswith("file:"):
            put_local(uri, data)
            return
        bucket, key = self._s3_object(uri)
        self._s3.put_object(Bucket=bucket, Key=key, Body=data)

    def delete(self, uris: Sequence[str]) -> None:
        """Delete files this task wrote that will not be committed (best effort: orphans otherwise)."""
        for uri in uris:
            try:
                if uri.startswith("file:"):
                    delete_local(uri)
                else:
                    bucket, key = self._s3_object(uri)
                    self._s3.delete_object(Bucket=bucket, Key=key)
            except Exception as exc:  # an orphan: table maintenance removes it
                log.warning("could not delete %s, left for orphan removal: %s", uri, one_line(exc))

    def _s3_object(self, uri: str) -> tuple[str, str]:
        """(bucket, key) of an ``s3://`` location, the task's S3 client made on first use."""
        if not uri.startswith("s3://"):
            raise ValueError(f"cannot write {uri!r}: expected file: or s3://")
        if self._s3 is None:
            self._s3 = _s3_client(self._spec.config, force=True)
        bucket, _, key = uri.removeprefix("s3://").partition("/")
        return bucket, key

    def stage(self, rows: pa.Table, batch_id: int) -> str:
        """Write ``rows`` as a staged Parquet file; returns its location."""
        return stage(rows, self._spec.staging_uri, f"batch{batch_id}", self.put)


def _s3_client(config: SilverlineConfig, *, force: bool = False) -> Any:
    """The task's S3 client: for an ``s3://`` objects root (or ``force``), else None."""
    if not force and not config.objects_root.startswith("s3:"):
        return None
    from jobs.bridge.landing import s3_client_for

    return s3_client_for(config)

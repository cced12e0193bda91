"""Read the raw objects named by winning ObjectCreated events as Arrow tables.

An I/O adapter: fetch each object's bytes (local lake or the S3 API), decode
them with :mod:`jobs.objects.formats`, and append the lineage columns (R8).
Objects that fit in one block (``stream.read_block_bytes``, decompressed) are
read whole; larger ones a block at a time, so memory never grows with an
object's size (R11, :meth:`ObjectReader.read_pieces`).
A value that does not convert to its declared type costs its row, not the file:
the row is marked (``_conversion_errors``, ``_raw``) and the batch writer decides
what to do with it; see :func:`silver_arrow_schema` for every column.
Objects are read concurrently on a thread pool; pyarrow and socket reads release
the GIL, so a few threads keep both cores busy on small files.

Every ref ends in exactly one :class:`ReadOutcome` (R7): ``ok``, ``superseded``
(the named version is gone or changed — a later event covers it, R9) or
``quarantined`` (bad bytes). Only programming errors and unavailable storage
raise, so the caller can retry the tenant. On S3 the job's role needs
``s3:ListBucket``: without it S3 answers 403, not 404, for a missing key, and
that is raised rather than taken as superseded.
"""

from __future__ import annotations

import dataclasses
import itertools
import logging
import os
import time
from collections.abc import Callable, Iterator, Sequence
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from datetime import UTC, datetime
from typing import TYPE_CHECKING, Any, TypeVar

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.compute as pc  # type: ignore[import-untyped, unused-ignore]

from jobs.contracts import DatasetContract
from jobs.objects.fetch import (
    Body,
    UnreadableError,
    default_s3_client,
    file_uri_to_path,
    open_file,
    open_object,
)
from jobs.objects.formats import (
    DEFAULT_BLOCK,
    DEFAULT_LIMIT,
    DEFAULT_OBJECT_LIMIT,
    DEFAULT_ROW_LIMIT,
    READ_FIELDS,
    UTC_MICROS,
    ContractDecoder,
    DecodedObject,
    DecodeError,
    OverOneBlock,
    contract_schema,
)
from jobs.objects.rows import read_columns
from jobs.storage import object_uri

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

_T = TypeVar("_T")
_R = TypeVar("_R")
LINEAGE_FIELDS: tuple[pa.Field, ...] = (
    pa.field("_source_bucket", pa.string()),
    pa.field("_source_key", pa.string()),
    pa.field("_source_version_id", pa.string()),
    pa.field("_source_etag", pa.string()),
    pa.field("_source_sequencer", pa.string()),
    pa.field("_event_time", UTC_MICROS),
)


@dataclass(frozen=True)
class ObjectRef:
    """One winning ObjectCreated event: the object version to read."""

    bucket: str
    key: str
    tenant: str
    dataset: str
    version_id: str | None
    etag: str | None
    sequencer: str | None
    event_time: datetime | None
    size: int | None


@dataclass(frozen=True)
class ReadOutcome:
    """What happened to one ref.

    Attributes:
        ref: The ref.
        status: ``ok``, ``superseded`` or ``quarantined``.
        reason: Stable code (``object_gone``, ``version_gone``, ``etag_changed``,
            ``unparseable``, ``wrong_header``, ...); None when ok.
        detail: Human-readable explanation; None when ok.
        rows: Rows read (0 unless ok), including ``rows_with_errors``.
        rows_with_errors: Rows with a value that did not convert to its declared type
            (``_conversion_errors`` is set).
    """

    ref: ObjectRef
    status: str
    reason: str | None
    detail: str | None
    rows: int
    rows_with_errors: int = 0


@dataclass(frozen=True)
class Piece:
    """Rows of a read, and the outcomes of the objects whose reading ended with them.

    Attributes:
        table: Rows (schema :func:`silver_arrow_schema`).
        outcomes: ``(index of the ref, outcome)`` of each object that ended here.
        streamed: The ref index when the rows are one block of an object larger than a
            block (read a block at a time); None for the objects read whole. A streamed
            object's outcome comes in an empty piece after its last block: when it is not
            ``ok``, the rows of its earlier blocks must be dropped.
    """

    table: pa.Table
    outcomes: list[tuple[int, ReadOutcome]]
    streamed: int | None


def silver_arrow_schema(contract: DatasetContract) -> pa.Schema:
    """Schema of :meth:`ObjectReader.read`'s table.

    The declared columns (values that did not convert are null), then:

    - ``_rescued`` (string): the row's values in columns the contract does not
      declare (CSV header columns, JSON keys, Parquet columns) as one compact JSON
      object: text for CSV, JSON values for JSON lines, JSON-friendly values for
      Parquet (dates, timestamps and decimals as text). Null values are left out;
      null when nothing is left.
    - ``_row_number`` (int32): 1-based row of the object (CSV: data rows, the header
      not counted; JSON lines: non-blank lines; Parquet: row index + 1).
    - ``_conversion_errors`` (list<string>): the declared columns whose value did not
      convert, in contract order (``["_line"]`` for a JSON line that is not a JSON
      object); null when the row converted cleanly.
    - ``_raw`` (string): for rows with conversion errors only, the row as read: a
      JSON object of every column's text (CSV, header order), the line itself (JSON
      lines) or a JSON object of every column (Parquet); else null.
    - the lineage columns of :data:`LINEAGE_FIELDS` (R8).

    Args:
        contract: The dataset contract.

    Returns:
        The Arrow schema, every field nullable.
    """
    return pa.schema([*contract_schema(contract), *READ_FIELDS, *LINEAGE_FIELDS])


class ObjectReader:
    """Reads object versions from the lake root (``file:`` or ``s3://``)."""

    def __init__(
        self,
        objects_root: str,
        *,
        s3_client: Any | None = None,
        max_workers: int = 8,
        max_object_bytes: int = DEFAULT_OBJECT_LIMIT,
        max_decompressed_bytes: int = DEFAULT_LIMIT,
        max_row_bytes: int = DEFAULT_ROW_LIMIT,
        block_bytes: int = DEFAULT_BLOCK,
    ) -> None:
        """Create a reader.

        Args:
            objects_root: ``file:///abs/lake/`` (the lake mirrors buckets) or ``s3://``.
            s3_client: A boto3 S3 client for ``s3://`` roots; default: a new one.
            max_workers: Objects read at once.
            max_object_bytes: Larger objects are quarantined unread (``object_bytes_limit``).
            max_decompressed_bytes: Compressed objects expanding past this are quarantined
                (``decompressed_bytes_limit``), after expanding at most this much (R11).
            max_row_bytes: CSV and JSON-lines objects with a longer line are quarantined
                (``row_bytes_limit``).
            block_bytes: Objects (decompressed) larger than this are read a block at a time
                (:meth:`read_pieces`), never whole.

        Raises:
            ValueError: Unsupported root, ``max_workers`` or ``block_bytes`` below 1.
        """
        if max_workers < 1 or block_bytes < 1:
            raise ValueError("max_workers and block_bytes must be at least 1")
        self._block_bytes = block_bytes
        self._root = objects_root
        self._bucket_dirs: dict[str, str] = {}  # local lake: bucket -> its directory
        self._max_workers = max_workers
        self._max_object_bytes = max_object_bytes
        self._max_decompressed_bytes = max_decompressed_bytes
        self._max_row_bytes = max_row_bytes
        self._s3: S3Client | None = None
        if objects_root.startswith("s3://"):
            self._s3 = s3_client or default_s3_client(max_workers)
        elif not objects_root.startswith("file:"):
            raise ValueError(f"unsupported objects root {objects_root!r}: expected file: or s3://")

    def read(
        self, refs: Sequence[ObjectRef], contract: DatasetContract
    ) -> tuple[pa.Table, list[ReadOutcome]]:
        """Read the objects of one tenant's dataset into one table (all rows in memory).

        For callers that want every row at once; the stream's tasks use :meth:`read_pieces`.

        Args:
            refs: Winning created-events of one (bucket, tenant, dataset).
            contract: The dataset's contract.

        Returns:
            The rows of every ``ok`` object (schema :func:`silver_arrow_schema`): the objects
            that fit in one block in ref order, then the larger ones in ref order; and one
            outcome per ref, in ref order.

        Raises:
            See :meth:`read_pieces`.
        """
        parts: list[tuple[int | None, pa.Table]] = []
        outcomes: list[ReadOutcome | None] = [None] * len(refs)
        for piece in self.read_pieces(refs, contract):
            parts.append((piece.streamed, piece.table))
            for index, outcome in piece.outcomes:
                outcomes[index] = outcome
        done = [outcome for outcome in outcomes if outcome is not None]
        assert len(done) == len(refs)  # every ref ends in one outcome (R7)
        tables = [t for i, t in parts if t.num_rows and (i is None or done[i].status == "ok")]
        table = pa.concat_tables(tables) if tables else silver_arrow_schema(contract).empty_table()
        return table, done

    def read_pieces(self, refs: Sequence[ObjectRef], contract: DatasetContract) -> Iterator[Piece]:
        """Read the objects of one tenant's dataset, a piece at a time (R11).

        The first piece holds every object that fits in one block (``block_bytes``,
        decompressed), read whole and concurrently. Each larger object then comes a block at
        a time (a second GET, then :meth:`ContractDecoder.decode_blocks`), its outcome in an
        empty piece after its last block (see :class:`Piece`).

        Args:
            refs: Winning created-events of one (bucket, tenant, dataset).
            contract: The dataset's contract.

        Yields:
            Pieces; over all of them, exactly one outcome per ref.

        Raises:
            ValueError: The refs mix buckets, tenants or datasets, or do not match the contract.
            botocore.exceptions.BotoCoreError: S3 is unreachable.
            botocore.exceptions.ClientError: Any S3 error but the superseded ones
                (NoSuchBucket, AccessDenied, SlowDown, ...).
            OSError: The local bucket directory is missing or a file cannot be read.
        """
        _check_one_table(refs, contract)
        started = time.perf_counter()
        decoder = ContractDecoder(contract, self._max_decompressed_bytes, self._max_row_bytes)
        results = _map_in_order(lambda ref: self._read_one(ref, decoder), refs, self._max_workers)
        whole = [(i, outcome, rows) for i, (_, outcome, rows) in enumerate(results) if outcome is not None]
        table = _assemble([(o.ref, rows) for _, o, rows in whole if rows is not None], contract)
        log.debug(
            "read %d objects of %s (%d ok, %d rows) in %.3fs",
            len(whole),
            contract.name,
            sum(o.status == "ok" for _, o, _ in whole),
            table.num_rows,
            time.perf_counter() - started,
        )
        yield Piece(table, [(i, o) for i, o, _ in whole], None)
        for index, (ref, outcome, _) in enumerate(results):
            if outcome is None:
                yield from self._stream(index, ref, decoder, contract)

    def _read_one(
        self, ref: ObjectRef, decoder: ContractDecoder
    ) -> tuple[ObjectRef, ReadOutcome | None, DecodedObject | None]:
        """Read and decode an object that fits in one block; no outcome: it is larger (stream it)."""
        try:
            body, ref = self._open(ref)
            with body:
                if body.size > self._block_bytes:
                    return ref, None, None
                data = body.read_all()
            decoded = decoder.decode_object(data, ref.key, self._block_bytes)
        except OverOneBlock:
            return ref, None, None
        except UnreadableError as exc:
            log.debug("%s s3://%s/%s: %s (%s)", exc.status, ref.bucket, ref.key, exc.reason, exc.detail)
            return ref, ReadOutcome(ref, exc.status, exc.reason, exc.detail, 0), None
        except DecodeError as exc:
            log.warning("quarantined s3://%s/%s: %s (%s)", ref.bucket, ref.key, exc.reason, exc.detail)
            return ref, ReadOutcome(ref, "quarantined", exc.reason, exc.detail, 0), None
        bad_rows = decoded.rows_with_errors
        if bad_rows:
            log.debug("s3://%s/%s: %d rows with values that do not convert", ref.bucket, ref.key, bad_rows)
        return ref, ReadOutcome(ref, "ok", None, None, decoded.rows.num_rows, bad_rows), decoded

    def _stream(
        self, index: int, ref: ObjectRef, decoder: ContractDecoder, contract: DatasetContract
    ) -> Iterator[Piece]:
        """One object larger than a block, a block at a time; its outcome last."""
        started = time.perf_counter()
        rows = bad_rows = blocks = 0
        try:
            body, ref = self._open(ref)
            with body:
                for decoded in decoder.decode_blocks(body, ref.key, self._block_bytes):
                    rows += decoded.rows.num_rows
                    bad_rows += decoded.rows_with_errors
                    blocks += 1
                    piece = Piece(_assemble([(ref, decoded)], contract), [], index)
                    del decoded
                    yield piece
                    del piece  # one block alive at a time
        except UnreadableError as exc:
            log.debug("%s s3://%s/%s: %s (%s)", exc.status, ref.bucket, ref.key, exc.reason, exc.detail)
            outcome = ReadOutcome(ref, exc.status, exc.reason, exc.detail, 0)
        except DecodeError as exc:
            where = f"s3://{ref.bucket}/{ref.key}"
            log.warning("quarantined %s after %d blocks: %s (%s)", where, blocks, exc.reason, exc.detail)
            outcome = ReadOutcome(ref, "quarantined", exc.reason, exc.detail, 0)
        else:
            outcome = ReadOutcome(ref, "ok", None, None, rows, bad_rows)
            log.info(
                "read s3://%s/%s in %d blocks: %d rows in %.1fs",
                ref.bucket,
                ref.key,
                blocks,
                rows,
                time.perf_counter() - started,
            )
        yield Piece(silver_arrow_schema(contract).empty_table(), [(index, outcome)], index)

    def _open(self, ref: ObjectRef) -> tuple[Body, ObjectRef]:
        """The object opened, and the ref as served.

        A ref that named no version (a re-read of the current one) takes the version and
        eTag S3 served (R8).
        """
        if self._s3 is None:  # the path is the URI's, without building and parsing a URI per file
            bucket_dir = self._bucket_dir(ref.bucket)
            path = os.path.join(bucket_dir, *ref.key.split("/"))
            body = open_file(path, ref.key, ref.etag, bucket_dir=bucket_dir, max_bytes=self._max_object_bytes)
            return body, ref
        uri = object_uri(self._root, ref.bucket, ref.key)
        body, version, etag = open_object(
            self._s3, uri, ref.version_id, ref.etag, max_bytes=self._max_object_bytes
        )
        if ref.version_id is None and ref.etag is None and (version or etag):
            ref = dataclasses.replace(ref, version_id=version, etag=etag)
        return body, ref

    def _bucket_dir(self, bucket: str) -> str:
        found = self._bucket_dirs.get(bucket)
        if found is None:
            found = self._bucket_dirs[bucket] = file_uri_to_path(object_uri(self._root, bucket, ""))
        return found


def _check_one_table(refs: Sequence[ObjectRef], contract: DatasetContract) -> None:
    """Refs of one call must all belong to one tenant table (R10)."""
    owners = {(ref.bucket, ref.tenant, ref.dataset) for ref in refs}
    if len(owners) > 1:
        raise ValueError(f"refs of one read must share bucket, tenant and dataset, got {sorted(owners)}")
    for bucket, tenant, dataset in owners:
        if dataset != contract.name:
            raise ValueError(f"refs are of dataset {dataset!r}, the contract is {contract.name!r}")
        strays = [ref.key for ref in refs if ref.key.split("/", 1)[0] != tenant]
        if strays:
            raise ValueError(f"keys outside tenant {tenant!r} of bucket {bucket!r}: {strays[:5]}")


def _map_in_order(fn: Callable[[_T], _R], items: Sequence[_T], max_workers: int) -> list[_R]:
    """``[fn(x) for x in items]`` on a thread pool; the first exception cancels the rest."""
    if max_workers == 1 or len(items) <= 1:
        return [fn(item) for item in items]
    with ThreadPoolExecutor(max_workers=min(max_workers, len(items)), thread_name_prefix="reader") as pool:
        futures = [pool.submit(fn, item) for item in items]
        try:
            return [future.result() for future in futures]
        except BaseException:
            for future in futures:
                future.cancel()
            raise


def _assemble(parts: list[tuple[ObjectRef, DecodedObject]], contract: DatasetContract) -> pa.Table:
    """Concatenate the objects' rows, add the row-level columns and the lineage columns (R8)."""
    schema = silver_arrow_schema(contract)
    if not parts:
        return schema.empty_table()
    rows = pa.concat_tables([decoded.rows for _, decoded in parts])
    read = read_columns([decoded for _, decoded in parts])
    lineage = _lineage_columns([(ref, d.rows.num_rows) for ref, d in parts if d.rows.num_rows])
    return pa.Table.from_arrays([*rows.columns, *read, *lineage], schema=schema)


def _lineage_columns(objects: list[tuple[ObjectRef, int]]) -> list[pa.Array]:
    """Lineage per row, built once per read as run-length arrays (one run per object)."""
    if not objects:
        return [pa.array([], field.type) for field in LINEAGE_FIELDS]
    run_ends = pa.array(itertools.accumulate(count for _, count in objects), pa.int64())
    per_field = zip(*(_lineage_values(ref) for ref, _ in objects), strict=True)
    return [
        pc.run_end_decode(pa.RunEndEncodedArray.from_arrays(run_ends, pa.array(values, field.type)))
        for field, values in zip(LINEAGE_FIELDS, per_field, strict=True)
    ]


def _lineage_values(ref: ObjectRef) -> tuple[object, ...]:
    """The values of :data:`LINEAGE_FIELDS` for one object."""
    return (ref.bucket, ref.key, ref.version_id, ref.etag, ref.sequencer, _as_utc(ref.event_time))


def _as_utc(moment: datetime | None) -> datetime | None:
    """Event times without a zone are UTC (S3 event times always are)."""
    if moment is None or moment.tzinfo is not None:
        return moment
    return moment.replace(tzinfo=UTC)

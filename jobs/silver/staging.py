"""Staging of a micro-batch's rows as Parquet files under ``<ops_root>staging/``.

The Spark tasks that read a batch's objects (:mod:`jobs.stream.tasks`) stage the
rows a MERGE needs (a replacement's new rows, the bad rows for a quarantine table)
as Parquet files here; the driver's MERGE reads them with Spark's vectorized
reader. On EMR the ops root is on S3, where every executor can write and read.

Staged files are transient: the batch writer clears them once the batch's commits
are done, and a writer starting up clears what a crashed one left behind.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Callable, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

from jobs.bridge.landing import FileStore
from jobs.config import SilverlineConfig

if TYPE_CHECKING:
    from pyspark.sql import DataFrame, SparkSession

log = logging.getLogger(__name__)


def staging_uri(config: SilverlineConfig) -> str:
    """``<ops_root>staging/``: where a batch's rows wait for their commit."""
    return f"{config.ops_root}staging/"


def stage(rows: pa.Table, directory_uri: str, label: str, put: Callable[[str, bytes], None]) -> str:
    """Write ``rows`` as one staged Parquet file under ``directory_uri`` (where a task runs).

    Args:
        rows: The rows, named and typed as they will be read.
        directory_uri: The staging directory (``file:`` or ``s3://``, ending in ``/``).
        label: A prefix of the file's name (e.g. the batch id), for people looking.
        put: Writes bytes at a location.

    Returns:
        The file's location.
    """
    sink = pa.BufferOutputStream()
    pq.write_table(rows, sink, compression="none")  # transient: read once by the MERGE
    uri = f"{directory_uri}{label}-{uuid.uuid4().hex}.parquet"
    put(uri, sink.getvalue().to_pybytes())
    return uri


def staged_frame(spark: SparkSession, uris: Sequence[str], columns: Sequence[tuple[str, str]]) -> DataFrame:
    """The staged files' ``columns`` as a DataFrame of those Spark types, in that order.

    Args:
        spark: The session.
        uris: Staged files (none: an empty DataFrame of the columns).
        columns: (name, Spark SQL type) in output order; the files hold each of them.

    Returns:
        The rows, each column cast to its declared type.
    """
    from pyspark.sql import functions as F

    if not uris:
        return spark.createDataFrame([], ", ".join(f"`{name}` {kind}" for name, kind in columns))
    frame = spark.read.parquet(*uris)
    return frame.select(*[F.col(f"`{name}`").cast(kind).alias(name) for name, kind in columns])


class RowStaging:
    """The staging area of a configuration: what its batches staged, cleared after the commits."""

    def __init__(self, store: FileStore, local_dir: Path | None = None) -> None:
        """Create the staging area.

        Args:
            store: A whole-file store (local directory or S3 prefix) Spark can read.
            local_dir: The store's directory when it is local (files are written there directly).
        """
        self._store = store
        self._local = local_dir

    @classmethod
    def for_config(cls, config: SilverlineConfig) -> RowStaging:
        """The staging area under a configuration's ops root."""
        from jobs.bridge.landing import open_store
        from jobs.objects.fetch import file_uri_to_path

        uri = staging_uri(config)
        local = Path(file_uri_to_path(uri)) if uri.startswith("file:") else None
        return cls(open_store(uri, config), local)  # type: ignore[arg-type]

    def clear(self) -> int:
        """Delete every staged file; returns how many there were."""
        names = self._store.names()
        for name in names:
            self._store.delete(name)
        if names:
            log.debug("cleared %d staged files", len(names))
        return len(names)

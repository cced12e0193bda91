"""Staging of a micro-batch's rows as Parquet files under ``<ops_root>staging/``.

The reader and the quality step work on Arrow tables in the driver; the tenant
commits need Spark DataFrames. ``spark.createDataFrame(pandas)`` would convert every
table to pandas and back to Arrow slices in Python, holding the GIL while the
other tables' commits wait. Writing the Arrow table once as a Parquet file (in C++,
GIL released) and reading it with Spark's vectorized Parquet reader is measured to
be about 40% faster for ten 75,000-row tables written by four threads (see
``bench/README.md``), keeps the rows out of the driver JVM's heap, and works the
same on EMR, where the ops root is on S3 and every executor can read it.

Staged files are transient: the batch writer clears them once the batch's commits
are done, and a writer starting up clears what a crashed one left behind.
"""

from __future__ import annotations

import logging
import uuid
from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING

import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]
import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]
from pyspark.sql import functions as F

from jobs.bridge.landing import FileStore
from jobs.config import SilverlineConfig

if TYPE_CHECKING:
    from pyspark.sql import Column, DataFrame, SparkSession

log = logging.getLogger(__name__)


def staging_uri(config: SilverlineConfig) -> str:
    """``<ops_root>staging/``: where a batch's rows wait for their commit."""
    return f"{config.ops_root}staging/"


class RowStaging:
    """Hands Arrow tables to Spark through Parquet files in a whole-file store."""

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

    def frame(
        self,
        spark: SparkSession,
        table: pa.Table,
        columns: Sequence[tuple[str, str]],
        *,
        label: str,
        extra: Sequence[Column] = (),
    ) -> DataFrame:
        """Stage ``table``'s ``columns`` and return them as a DataFrame of those Spark types.

        Args:
            spark: The session.
            table: The rows (must hold every column named).
            columns: (name, Spark SQL type) in output order.
            label: A prefix of the staged file's name (e.g. the batch id), for people looking.
            extra: Columns appended after ``columns`` (one projection: every DataFrame
                call is a round trip to the JVM and an analysis of the plan).

        Returns:
            A DataFrame reading the staged file, columns cast to the declared types.
        """
        from pyspark.sql.pandas.types import from_arrow_schema

        staged = table.select([name for name, _ in columns])
        sink = pa.BufferOutputStream()
        pq.write_table(staged, sink, compression="none")
        file_name = f"{label}-{uuid.uuid4().hex}.parquet"
        data = sink.getvalue().to_pybytes()
        if self._local is not None:  # transient: no fsync, unlike the bronze store's durable write
            path = self._local / file_name
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_bytes(data)
            uri = path.as_uri()
        else:
            uri = self._store.write(file_name, data)
        # The file's own schema, given up front: no footer read by Spark to infer it.
        frame = spark.read.schema(from_arrow_schema(staged.schema)).parquet(uri)
        return frame.select(*[F.col(f"`{name}`").cast(kind).alias(name) for name, kind in columns], *extra)

    def clear(self) -> int:
        """Delete every staged file; returns how many there were."""
        names = self._store.names()
        for name in names:
            self._store.delete(name)
        if names:
            log.debug("cleared %d staged files", len(names))
        return len(names)

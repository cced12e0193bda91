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
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.bridge.landing import FileStore
from jobs.config import SilverlineConfig

if TYPE_CHECKING:
    pass

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

    def clear(self) -> int:
        """Delete every staged file; returns how many there were."""
        names = self._store.names()
        for name in names:
            self._store.delete(name)
        if names:
            log.debug("cleared %d staged files", len(names))
        return len(names)

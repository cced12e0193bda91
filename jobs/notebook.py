"""One way into a tenant group's lake from a notebook, on a laptop or on EMR.

A notebook starts with::

    from jobs.notebook import open_lake

    lake = open_lake()
    lake.spark.table(lake.table("acme", "orders")).show()

The configuration comes from the file named by ``SILVERLINE_CONFIG`` (default
``conf/local.yaml``; relative paths in it are read from the working directory,
so run notebooks from the project root), then ``SILVERLINE__SECTION__KEY``
overrides as everywhere else, then ``SILVERLINE_LAKE_ROOT``, which replaces
``lake.root``. The same notebook code runs on EMR with an EMR configuration:
``mode: emr`` adds no local jars, and :attr:`Lake.spark` is the cluster's
session (the factory returns the active one).

Spark starts on first use of :attr:`Lake.spark`; the ``pyiceberg_*`` readers need
no Spark at all (local lakes only: they read a table's newest metadata file).
"""

from __future__ import annotations

import functools
import gzip
import io
import logging
import os
from collections.abc import Mapping
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.config import SilverlineConfig, load_config
from jobs.simulate.cli import required_local_dir
from jobs.storage import SILVER, silver_location, table_name
from jobs.stream.ops import ops_table

if TYPE_CHECKING:
    from pyiceberg.table import StaticTable
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

CONFIG_ENV = "SILVERLINE_CONFIG"
LAKE_ROOT_ENV = "SILVERLINE_LAKE_ROOT"
DEFAULT_CONFIG = "conf/local.yaml"


def notebook_config(environ: Mapping[str, str] | None = None) -> SilverlineConfig:
    """The configuration a notebook works with.

    Args:
        environ: The environment (default ``os.environ``): ``SILVERLINE_CONFIG``,
            ``SILVERLINE_LAKE_ROOT`` and the usual ``SILVERLINE__SECTION__KEY`` overrides.

    Returns:
        The frozen configuration.

    Raises:
        ConfigError: The file is unreadable or a setting is invalid.
    """
    env = os.environ if environ is None else environ
    path = env.get(CONFIG_ENV) or DEFAULT_CONFIG
    lake_root = env.get(LAKE_ROOT_ENV) or None
    return load_config(path, environ=env, overrides={"lake": {"root": lake_root}})


class Lake:
    """A tenant group's lake: its configuration, a Spark session and table names.

    Attributes:
        config: The configuration the lake was opened with.
    """

    def __init__(self, config: SilverlineConfig) -> None:
        """Wrap a configuration; nothing starts until :attr:`spark` is used.

        Args:
            config: The job configuration (see :func:`notebook_config`).
        """
        self.config = config

    @functools.cached_property
    def spark(self) -> SparkSession:
        """The session of the project's factory (on EMR the cluster's active session).

        The process's local time is made UTC, as the job does: pyspark hands out
        timestamps as naive local times and the session's time zone is UTC.
        """
        from jobs.batchruns.run import open_session

        return open_session(self.config)

    @property
    def bucket(self) -> str:
        """The tenant group's bucket."""
        return self.config.group.bucket

    def table(self, tenant: str, dataset: str, zone: str = SILVER) -> str:
        """The catalog identifier of a tenant table, ready for Spark SQL.

        Args:
            tenant: The tenant.
            dataset: The dataset.
            zone: ``silver`` (default) or ``quarantine`` (the tenant's bad rows).

        Returns:
            The quoted identifier, e.g. ``silverline.demo-lake.acme.silver.orders`` with every
            part in backticks (hadoop catalog), or the Glue table on EMR.
        """
        return table_name(self.config, self.bucket, tenant, dataset, zone)

    def ops(self, name: str) -> str:
        """The catalog identifier of an ops table (``ledger``, ``batch_metrics``, ...).

        Args:
            name: One of :data:`jobs.stream.ops.TABLES`.

        Returns:
            ``<catalog>_ops.ops.<name>``.
        """
        return ops_table(self.config, name)

    # ---- local lakes: plain files, no Spark ---------------------------------------------------

    @property
    def root_dir(self) -> Path:
        """The local lake directory (``<lake>/<bucket>/<key>`` mirrors the bucket).

        Raises:
            ConfigError: ``lake.root`` is not a local path.
        """
        return required_local_dir(self.config.lake.root, "lake.root")

    @property
    def ops_dir(self) -> Path:
        """The local ops root: bronze log, ops tables, batch metrics, checkpoints.

        Raises:
            ConfigError: The ops root is not a local path.
        """
        return required_local_dir(self.config.ops_root, "lake.ops_root")

    def object_path(self, key: str, bucket: str | None = None) -> Path:
        """Where a raw object lives in the local lake.

        Args:
            key: The decoded object key (as in the ``_source_key`` column).
            bucket: The bucket (default: the group's).

        Returns:
            ``<objects root>/<bucket>/<key>``.

        Raises:
            ConfigError: Objects are not read from a local directory.
        """
        objects = required_local_dir(self.config.objects_root, "lake.objects_root")
        return objects / (bucket or self.bucket) / key

    def table_dir(self, tenant: str, dataset: str, zone: str = SILVER) -> Path:
        """The directory of a tenant table in the local lake.

        Args:
            tenant: The tenant.
            dataset: The dataset.
            zone: ``silver`` or ``quarantine``.

        Returns:
            ``<lake>/<bucket>/<tenant>/<zone>/<dataset>``.
        """
        location = silver_location(self.config.warehouse, self.bucket, tenant, dataset, zone)
        return required_local_dir(location, "catalog.warehouse")

    def pyiceberg_table(self, tenant: str, dataset: str, zone: str = SILVER) -> StaticTable:
        """A tenant table read by pyiceberg from its newest metadata file (no catalog, no Spark).

        Args:
            tenant: The tenant.
            dataset: The dataset.
            zone: ``silver`` or ``quarantine``.

        Returns:
            The table (``.scan().to_arrow()``, ``.snapshots()``, ``.inspect`` ...).

        Raises:
            FileNotFoundError: The table does not exist (yet).
        """
        return _static_table(self.table_dir(tenant, dataset, zone))

    def pyiceberg_ops(self, name: str) -> StaticTable:
        """An ops table read by pyiceberg from its newest metadata file.

        Args:
            name: One of :data:`jobs.stream.ops.TABLES`.

        Returns:
            The table.

        Raises:
            FileNotFoundError: The table does not exist (yet).
        """
        ops_table(self.config, name)  # unknown names fail here, with the list's error
        return _static_table(self.ops_dir / "tables" / "ops" / name)

    def stop(self) -> None:
        """Stop the Spark session if this object started one."""
        if "spark" in self.__dict__:
            self.spark.stop()
            del self.__dict__["spark"]


def open_lake(environ: Mapping[str, str] | None = None) -> Lake:
    """Open the lake the environment names (see :func:`notebook_config`).

    Args:
        environ: The environment (default ``os.environ``).

    Returns:
        The lake; Spark starts on first use of :attr:`Lake.spark`.
    """
    config = notebook_config(environ)
    log.info("lake %s (group %s, %s mode)", config.lake.root, config.group.name, config.mode)
    return Lake(config)


def count_raw_rows(path: Path) -> int:
    """Rows in a raw object, counted without the job's reader (an independent check).

    CSV (one header line), JSON lines and Parquet, each optionally gzip-compressed
    (``.gz``). Blank lines are not rows.

    Args:
        path: The object's file in the local lake.

    Returns:
        The number of data rows.

    Raises:
        ValueError: The file name has no known format suffix.
    """
    import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

    name = path.name.lower().removesuffix(".gz")
    data = path.read_bytes()
    if path.name.lower().endswith(".gz"):
        data = gzip.decompress(data)
    if name.endswith(".parquet"):
        return int(pq.read_metadata(io.BytesIO(data)).num_rows)
    lines = [line for line in data.splitlines() if line.strip()]
    if name.endswith(".csv"):
        return max(len(lines) - 1, 0)
    if name.endswith((".jsonl", ".json")):
        return len(lines)
    raise ValueError(f"{path.name}: not .csv, .jsonl, .json or .parquet (optionally .gz)")


def _static_table(table_dir: Path) -> StaticTable:
    from pyiceberg.table import StaticTable

    from jobs.simulate.verify import latest_metadata

    metadata = latest_metadata(table_dir)
    if metadata is None:
        raise FileNotFoundError(f"no Iceberg table at {table_dir}")
    return StaticTable.from_metadata(str(metadata))

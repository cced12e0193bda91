"""Reading Iceberg tables without Spark or a catalog: newest metadata file, then pyiceberg.

The operator commands (``status``, ``quality report``, the demo's report) read the
job's tables straight from their storage, local (``file://``) or ``s3://`` alike:
the table's ``metadata/`` folder is listed through the job's file store, the newest
metadata file (:func:`jobs.simulate.verify.metadata_version`: hadoop ``vN`` or
catalog ``NNNNN-<uuid>`` names) is opened with pyiceberg's ``StaticTable``, with
the configured AWS region and endpoint for S3.
"""

from __future__ import annotations

from collections.abc import Sequence
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.config import SilverlineConfig

if TYPE_CHECKING:
    import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]


def table_uri(table: str | Path) -> str:
    """A table location as a URI (a local path becomes ``file://``), without a trailing ``/``."""
    if isinstance(table, Path):
        return table.resolve().as_uri()
    return table.rstrip("/")


def ops_location(config: SilverlineConfig, table: str) -> str:
    """Where an ops table lives: ``<ops_root>tables/<ops namespace>/<table>``."""
    from jobs.storage import ops_namespace

    return f"{config.ops_root}tables/{ops_namespace(config)}/{table}"


def newest_metadata(table: str | Path, config: SilverlineConfig) -> str | None:
    """URI of a table's newest metadata file, None when it has none (or no such folder).

    Args:
        table: The table's location (URI or local path).
        config: The configuration (AWS region and endpoint for ``s3://``).
    """
    from jobs.bridge.landing import open_file_store
    from jobs.simulate.verify import metadata_version

    directory = f"{table_uri(table)}/metadata/"
    names = open_file_store(directory, config).names()
    versions = [(v, n) for n in names if "/" not in n and (v := metadata_version(n))]
    return directory + max(versions)[1] if versions else None


def io_properties(config: SilverlineConfig) -> dict[str, str]:
    """Pyiceberg FileIO properties: the AWS region, and the endpoint when one is configured."""
    properties = {"s3.region": config.aws.region}
    if config.aws.endpoint_url:
        properties["s3.endpoint"] = config.aws.endpoint_url
    return properties


def read_iceberg(
    table: str | Path,
    config: SilverlineConfig,
    columns: Sequence[str] | None = None,
    row_filter: Any = None,
) -> pa.Table | None:
    """A table's rows from its newest metadata; None when there is no table.

    Args:
        table: The table's location (URI or local path).
        config: The configuration (AWS region and endpoint for ``s3://``).
        columns: Columns to read (default: all).
        row_filter: A pyiceberg expression (default: every row).
    """
    from pyiceberg.expressions import AlwaysTrue
    from pyiceberg.table import StaticTable

    metadata = newest_metadata(table, config)
    if metadata is None:
        return None
    static = StaticTable.from_metadata(metadata, io_properties(config))
    fields = tuple(columns) if columns else ("*",)
    rows: pa.Table = static.scan(row_filter=row_filter or AlwaysTrue(), selected_fields=fields).to_arrow()
    return rows

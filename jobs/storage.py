"""Where things live: one mapping from (bucket, key) to a URI, and the table layout."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING
from urllib.parse import quote

if TYPE_CHECKING:
    from jobs.config import SilverlineConfig


def object_uri(root: str, bucket: str, key: str) -> str:
    """URI of an object: ``<root><bucket>/<key>``.

    ``root`` is ``s3://`` on EMR (so the URI is the object's own) and
    ``file:///abs/lake/`` locally, where the lake directory mirrors buckets.

    Args:
        root: The lake root URI, ending with ``/``.
        bucket: The bucket.
        key: The decoded object key.

    Returns:
        The URI (percent-encoded for ``file://`` roots).
    """
    if root.startswith("file:"):
        return f"{root}{quote(bucket)}/{quote(key)}"
    return f"{root}{bucket}/{key}"


SILVER = "silver"
QUARANTINE = "quarantine"


def silver_location(root: str, bucket: str, tenant: str, dataset: str, zone: str = SILVER) -> str:
    """Physical location of a tenant table: ``<root><bucket>/<tenant>/<zone>/<dataset>``.

    ``zone`` is ``silver`` for the dataset's table and ``quarantine`` for its bad rows.
    """
    return f"{root}{bucket}/{tenant}/{zone}/{dataset}"


def silver_table_name(catalog: str, bucket: str, tenant: str, dataset: str, zone: str = SILVER) -> str:
    """Catalog identifier of a tenant table (multi-level namespace, quoted for SQL).

    With a hadoop catalog rooted at the lake, the namespace
    ``<bucket>.<tenant>.<zone>`` puts the table exactly at :func:`silver_location`.
    """
    return ".".join(f"`{part}`" for part in (catalog, bucket, tenant, zone, dataset))


# ---- AWS Glue Data Catalog: one database per tenant group --------------------------------------------
_GLUE_UNSAFE = re.compile(r"[^a-z0-9_]")


def glue_database(group: str) -> str:
    """The Glue database of a tenant group's tables: ``silverline_<group>`` (lower case, ``-`` -> ``_``)."""
    return "silverline_" + group.lower().replace("-", "_")


def glue_name(name: str) -> str:
    """A tenant or dataset name as part of a Glue table name (Glue allows only ``[a-z0-9_]``).

    Names that are already lower-case ``[a-z0-9_]`` without ``__`` stay as they are; any
    other name is mapped to that alphabet and gets the first 8 hex digits of its SHA-256,
    so ``Acme`` and ``acme``, or ``a-b`` and ``a_b``, never share a table.
    """
    simple = _GLUE_UNSAFE.sub("_", name.lower())
    if simple == name and "__" not in name:
        return name
    return f"{simple}_{hashlib.sha256(name.encode('utf-8')).hexdigest()[:8]}"


def table_name(config: SilverlineConfig, bucket: str, tenant: str, dataset: str, zone: str = SILVER) -> str:
    """The catalog identifier of a tenant table for the configured catalog.

    ``glue``: ``<catalog>.silverline_<group>.<tenant>__<dataset>`` (``__quarantine``
    appended for the quarantine zone); Glue databases are single-level, and the
    table's LOCATION keeps the data in the tenant's prefix. Other catalogs:
    :func:`silver_table_name` (multi-level namespaces).
    """
    if config.catalog.type == "glue":
        suffix = "" if zone == SILVER else f"__{zone}"
        table = f"{glue_name(tenant)}__{glue_name(dataset)}{suffix}"
        return f"`{config.catalog.name}`.`{glue_database(config.group.name)}`.`{table}`"
    return silver_table_name(config.catalog.name, bucket, tenant, dataset, zone)


def ops_namespace(config: SilverlineConfig) -> str:
    """The namespace of the job's own tables: ``ops``, or on Glue ``silverline_<group>_ops``."""
    return glue_database(config.group.name) + "_ops" if config.catalog.type == "glue" else "ops"

"""Where things live: one mapping from (bucket, key) to a URI, and the table layout."""

from __future__ import annotations

import hashlib
import re
from typing import TYPE_CHECKING
from urllib.parse import quote

from jobs.events.model import BUCKET_RE, NAME_RE

if TYPE_CHECKING:
    from jobs.config import SilverlineConfig

_BUCKET = re.compile(BUCKET_RE)  # the event parser rejects the same names (invalid_bucket)
_NAME = re.compile(NAME_RE)


def check_bucket(bucket: str) -> str:
    """Return ``bucket`` if it is a safe bucket name (R2: a name can never move a path).

    Raises:
        ValueError: The name is empty, has ``/``, ``%``, ``..`` or other characters S3 refuses.
    """
    if not _BUCKET.fullmatch(bucket or ""):  # BUCKET_RE also refuses ".."
        raise ValueError(f"unsafe bucket name {bucket!r}")
    return bucket


def check_key(key: str) -> str:
    """Return ``key`` if it stays inside its bucket: not absolute, no ``.``/``..``/empty inner segments.

    Raises:
        ValueError: The key could escape the bucket directory.
    """
    segments = key.split("/")
    if key.startswith("/") or any(s in (".", "..") for s in segments) or "" in segments[:-1]:
        raise ValueError(f"unsafe object key {key!r}")
    return key


def _check_table(bucket: str, tenant: str, dataset: str, zone: str) -> None:
    check_bucket(bucket)
    for kind, name in (("tenant", tenant), ("dataset", dataset)):
        if not isinstance(name, str) or not _NAME.fullmatch(name):
            raise ValueError(f"unsafe {kind} name {name!r}")
    if zone not in (SILVER, QUARANTINE):
        raise ValueError(f"unsafe zone {zone!r}: only {SILVER!r} and {QUARANTINE!r} are written")


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

    Raises:
        ValueError: The bucket or key would point outside the bucket.
    """
    check_bucket(bucket)
    check_key(key)
    if root.startswith("file:"):
        return f"{root}{quote(bucket)}/{quote(key)}"
    return f"{root}{bucket}/{key}"


SILVER = "silver"
QUARANTINE = "quarantine"


def silver_location(root: str, bucket: str, tenant: str, dataset: str, zone: str = SILVER) -> str:
    """Physical location of a tenant table: ``<root><bucket>/<tenant>/<zone>/<dataset>``.

    ``zone`` is ``silver`` for the dataset's table and ``quarantine`` for its bad rows.

    Raises:
        ValueError: A name is not one safe path segment, or the zone is another one.
    """
    _check_table(bucket, tenant, dataset, zone)
    return f"{root}{bucket}/{tenant}/{zone}/{dataset}"


def silver_table_name(catalog: str, bucket: str, tenant: str, dataset: str, zone: str = SILVER) -> str:
    """Catalog identifier of a tenant table (multi-level namespace, quoted for SQL).

    With a hadoop catalog rooted at the lake, the namespace
    ``<bucket>.<tenant>.<zone>`` puts the table exactly at :func:`silver_location`.

    Raises:
        ValueError: As :func:`silver_location`.
    """
    _check_table(bucket, tenant, dataset, zone)
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
    _check_table(bucket, tenant, dataset, zone)
    if config.catalog.type == "glue":
        suffix = "" if zone == SILVER else f"__{zone}"
        table = f"{glue_name(tenant)}__{glue_name(dataset)}{suffix}"
        return f"`{config.catalog.name}`.`{glue_database(config.group.name)}`.`{table}`"
    return silver_table_name(config.catalog.name, bucket, tenant, dataset, zone)


def ops_namespace(config: SilverlineConfig) -> str:
    """The namespace of the job's own tables: ``ops``, or on Glue ``silverline_<group>_ops``."""
    return glue_database(config.group.name) + "_ops" if config.catalog.type == "glue" else "ops"

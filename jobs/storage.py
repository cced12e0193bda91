"""Where things live: one mapping from (bucket, key) to a URI, and the table layout."""

from __future__ import annotations

from urllib.parse import quote


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

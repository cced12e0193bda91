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


def silver_location(root: str, bucket: str, tenant: str, dataset: str) -> str:
    """Physical location of a tenant's silver table: ``<root><bucket>/<tenant>/silver/<dataset>``."""
    return f"{root}{bucket}/{tenant}/silver/{dataset}"


def silver_table_name(catalog: str, bucket: str, tenant: str, dataset: str) -> str:
    """Catalog identifier of a tenant's silver table (multi-level namespace, quoted for SQL).

    With a hadoop catalog rooted at the lake, the namespace
    ``<bucket>.<tenant>.silver`` puts the table exactly at :func:`silver_location`.
    """
    return ".".join(f"`{part}`" for part in (catalog, bucket, tenant, "silver", dataset))

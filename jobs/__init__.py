"""silverline: S3 event notifications from SQS -> per-tenant Iceberg silver tables."""

from __future__ import annotations

__version__ = "0.1.0"

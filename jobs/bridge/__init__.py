"""SQS bridge: drains S3 notifications into the durable bronze landing log.

The bridge is the "storage first" half of the micro-batch source: messages are
landed as JSON lines under ``<ops_root>bronze/`` and deleted from SQS only once
durable. Embed :class:`SqsBridge` in a driver or run ``silverline bridge``.
"""

from __future__ import annotations

from jobs.bridge.bridge import SqsBridge
from jobs.bridge.landing import BronzeStore, LocalBronzeStore, S3BronzeStore, bronze_uri, open_bronze_store
from jobs.bridge.metrics import MetricsSnapshot
from jobs.bridge.retry import BridgeError, RetryPolicy

__all__ = [
    "BridgeError",
    "BronzeStore",
    "LocalBronzeStore",
    "MetricsSnapshot",
    "RetryPolicy",
    "S3BronzeStore",
    "SqsBridge",
    "bronze_uri",
    "open_bronze_store",
]

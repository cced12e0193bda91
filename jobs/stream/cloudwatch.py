"""Batch metrics in Amazon CloudWatch, where operators alarm (opt-in: ``cloudwatch.enabled``).

Each batch with data becomes CloudWatch data points in ``cloudwatch.namespace``
(default ``silverline``), sent with ``PutMetricData``:

* per group (dimension ``Group``): ``RecordsIn``, ``RetriedIn``, one metric per
  outcome (``Applied``, ``Duplicate``, ``Stale``, ``Ignored``, ``Test``, ``Parked``,
  ``Quarantined``, ``Rejected``, ``Deferred``, ``Dropped``), ``TablesCommitted``,
  ``TablesFailed``, ``Unbalanced`` (1 when the outcomes do not add up, R7),
  ``FreshnessP50`` and ``FreshnessP95`` (seconds, when the batch applied events) and
  ``BatchSeconds``;
* per group and phase (dimensions ``Group``, ``Phase``): ``PhaseSeconds``;
* per group and tenant (dimensions ``Group``, ``Tenant``): ``TenantLagSeconds``.

Publishing never slows or fails a batch: :meth:`CloudWatchPublisher.publish` only
queues the batch; one background thread sends it, 1,000 data points per call (the
API's limit), and a failed call is logged and counted, never raised. On stop the
queue is drained for at most a few seconds.
"""

from __future__ import annotations

import logging
import queue
import threading
from collections.abc import Iterator
from datetime import UTC, datetime
from typing import Any

from jobs.config import SilverlineConfig
from jobs.stream.accounting import OUTCOMES, BatchCounts

log = logging.getLogger(__name__)

# PutMetricData takes at most 1,000 data points per call.
MAX_POINTS_PER_CALL = 1000
_STOP = object()


def metric_data(counts: BatchCounts, group: str) -> list[dict[str, Any]]:
    """The CloudWatch data points of one batch (``MetricData`` entries)."""
    at = counts.finished_at or datetime.now(UTC)
    by_group = [{"Name": "Group", "Value": group}]

    def point(
        name: str, value: float, unit: str = "Count", extra: list[dict[str, str]] | None = None
    ) -> dict[str, Any]:
        return {
            "MetricName": name,
            "Dimensions": by_group + (extra or []),
            "Timestamp": at,
            "Value": float(value),
            "Unit": unit,
        }

    points = [point("RecordsIn", counts.records_in), point("RetriedIn", counts.retried_in)]
    points += [point(outcome.capitalize(), getattr(counts, outcome)) for outcome in OUTCOMES]
    points += [
        point("TablesCommitted", counts.tables_committed),
        point("TablesFailed", counts.tables_failed),
        point("Unbalanced", 0 if counts.balanced else 1),
        point("BatchSeconds", (at - counts.started_at).total_seconds(), "Seconds"),
    ]
    for name, value in (("FreshnessP50", counts.freshness_p50_s), ("FreshnessP95", counts.freshness_p95_s)):
        if value is not None:
            points.append(point(name, value, "Seconds"))
    for phase, seconds in counts.phase_seconds.items():
        points.append(point("PhaseSeconds", seconds, "Seconds", [{"Name": "Phase", "Value": phase}]))
    for tenant, lag in counts.tenant_lag_s.items():
        points.append(point("TenantLagSeconds", lag, "Seconds", [{"Name": "Tenant", "Value": tenant}]))
    return points


def _chunks(points: list[dict[str, Any]]) -> Iterator[list[dict[str, Any]]]:
    for start in range(0, len(points), MAX_POINTS_PER_CALL):
        yield points[start : start + MAX_POINTS_PER_CALL]


class CloudWatchPublisher:
    """Sends each batch's metrics to CloudWatch from a background thread."""

    def __init__(self, client: Any, namespace: str, group: str) -> None:
        """Start the sender thread.

        Args:
            client: A boto3 CloudWatch client.
            namespace: The metrics' namespace.
            group: The tenant group (dimension ``Group``).
        """
        self._client = client
        self.namespace = namespace
        self.group = group
        self.sent = 0  # data points CloudWatch accepted
        self.failed_calls = 0
        self._queue: queue.Queue[Any] = queue.Queue(maxsize=1000)
        self._thread = threading.Thread(target=self._run, name="cloudwatch-metrics", daemon=True)
        self._thread.start()

    @classmethod
    def for_config(cls, config: SilverlineConfig) -> CloudWatchPublisher | None:
        """The publisher a configuration asks for (None unless ``cloudwatch.enabled``)."""
        if not config.cloudwatch.enabled:
            return None
        import boto3
        from botocore.config import Config as BotoConfig

        client = boto3.client(
            "cloudwatch",
            region_name=config.aws.region,
            endpoint_url=config.cloudwatch.endpoint_url or config.aws.endpoint_url,
            config=BotoConfig(
                retries={"max_attempts": 3, "mode": "standard"}, connect_timeout=5, read_timeout=10
            ),
        )
        return cls(client, config.cloudwatch.namespace, config.group.name)

    def publish(self, counts: BatchCounts) -> None:
        """Queue one batch's metrics (never blocks: a full queue drops the batch, logged)."""
        try:
            self._queue.put_nowait(metric_data(counts, self.group))
        except queue.Full:
            log.warning("CloudWatch metrics of batch %s dropped: the sender is behind", counts.batch_id)

    def _run(self) -> None:
        while True:
            item = self._queue.get()
            if item is _STOP:
                return
            for chunk in _chunks(item):
                try:
                    self._client.put_metric_data(Namespace=self.namespace, MetricData=chunk)
                    self.sent += len(chunk)
                except Exception as exc:  # never the batch's problem
                    self.failed_calls += 1
                    log.warning(
                        "CloudWatch PutMetricData failed (%d data points not sent): %s", len(chunk), exc
                    )

    def close(self, timeout: float = 10.0) -> None:
        """Send what is queued (waiting at most ``timeout`` seconds), then stop the thread."""
        try:
            self._queue.put(_STOP, timeout=timeout)
        except queue.Full:
            return
        self._thread.join(timeout)

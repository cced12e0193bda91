"""Batch metrics in CloudWatch: what is published, against moto's CloudWatch, and that it never blocks a batch."""

from __future__ import annotations

import threading
import uuid
from datetime import UTC, datetime, timedelta

import boto3
import pytest

from jobs.config import load_config
from jobs.stream.accounting import BatchCounts
from jobs.stream.cloudwatch import MAX_POINTS_PER_CALL, CloudWatchPublisher, metric_data

pytestmark = pytest.mark.integration


def batch(tenants: int = 2) -> BatchCounts:
    started = datetime(2026, 12, 1, 12, 0, tzinfo=UTC)
    counts = BatchCounts(
        batch_id=7, query_id="q", started_at=started, finished_at=started + timedelta(seconds=4)
    )
    counts.records_in, counts.applied, counts.stale, counts.parked = 10, 7, 2, 1
    counts.freshness_p50_s, counts.freshness_p95_s = 3.5, 9.25
    counts.phase_seconds = {"read": 1.5, "commit": 2.0}
    counts.tenant_lag_s = {f"t{i:05d}": 10.0 + i for i in range(tenants)}
    return counts


def test_a_batch_is_published_with_group_phase_and_tenant_dimensions(moto_endpoint: str) -> None:
    namespace = f"silverline-{uuid.uuid4().hex[:8]}"
    config = load_config(
        None,
        environ={},
        overrides={
            "group": {"name": "eu1"},
            "aws": {"endpoint_url": moto_endpoint},
            "cloudwatch": {"enabled": True, "namespace": namespace},
        },
    )
    publisher = CloudWatchPublisher.for_config(config)
    assert publisher is not None
    publisher.publish(batch())
    publisher.close()
    assert (publisher.sent, publisher.failed_calls) == (len(metric_data(batch(), "eu1")), 0)

    cloudwatch = boto3.client("cloudwatch", endpoint_url=moto_endpoint, region_name="us-east-1")

    def value(name: str, **dimensions: str) -> float:
        points = cloudwatch.get_metric_statistics(
            Namespace=namespace,
            MetricName=name,
            Dimensions=[{"Name": k, "Value": v} for k, v in {"Group": "eu1", **dimensions}.items()],
            StartTime=datetime(2026, 12, 1, 11, 0, tzinfo=UTC),
            EndTime=datetime(2026, 12, 1, 13, 0, tzinfo=UTC),
            Period=3600,
            Statistics=["Maximum"],
        )["Datapoints"]
        assert len(points) == 1, (name, dimensions, points)
        return float(points[0]["Maximum"])

    assert (value("RecordsIn"), value("Applied"), value("Stale"), value("Parked")) == (10, 7, 2, 1)
    assert (value("Duplicate"), value("Unbalanced")) == (0, 0)
    assert (value("FreshnessP50"), value("FreshnessP95"), value("BatchSeconds")) == (3.5, 9.25, 4.0)
    assert value("PhaseSeconds", Phase="commit") == 2.0
    assert value("TenantLagSeconds", Tenant="t00001") == 11.0


def test_a_large_batch_is_sent_in_calls_of_at_most_a_thousand_points() -> None:
    calls: list[int] = []

    class Client:
        def put_metric_data(self, Namespace: str, MetricData: list[object]) -> None:  # noqa: N803
            calls.append(len(MetricData))

    publisher = CloudWatchPublisher(Client(), "ns", "g")
    publisher.publish(batch(tenants=2500))
    publisher.close()
    assert max(calls) == MAX_POINTS_PER_CALL and sum(calls) == len(metric_data(batch(tenants=2500), "g"))


def test_an_unreachable_cloudwatch_never_blocks_or_fails_a_batch() -> None:
    inside, release = threading.Event(), threading.Event()

    class Hanging:
        def put_metric_data(self, **_: object) -> None:
            inside.set()
            release.wait(60)  # a call that hangs until the test lets it fail
            raise ConnectionError("no route to monitoring.us-east-1.amazonaws.com")

    publisher = CloudWatchPublisher(Hanging(), "ns", "g")
    publisher.publish(batch())
    assert inside.wait(30)  # the sender is stuck in its call ...
    publisher.publish(batch())  # ... and the next batches are queued without waiting for it
    publisher.publish(batch())
    release.set()
    publisher.close(timeout=30)
    assert (publisher.sent, publisher.failed_calls) == (0, 3)

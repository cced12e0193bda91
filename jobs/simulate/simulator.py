"""Files mode: write the plan's objects into the local lake and build the notifications S3 would send.

Then deliver them the way real delivery does (see :mod:`jobs.simulate.delivery`).
Nothing here needs SQS: :func:`run` returns the bodies in publish order with
the truth, and :func:`jobs.simulate.sqs.publish` sends them.
"""

from __future__ import annotations

import logging
import random
from pathlib import Path

from jobs.simulate import delivery
from jobs.simulate.content import COLUMNS
from jobs.simulate.notifications import NotificationFactory
from jobs.simulate.plan import Operation, plan_operations
from jobs.simulate.spec import SimulationSpec, tenant_names
from jobs.simulate.truth import GroundTruth

log = logging.getLogger(__name__)


def new_truth(spec: SimulationSpec, mode: str, bucket: str | None = None) -> GroundTruth:
    """An empty truth for ``spec`` (``bucket`` overrides ``spec.bucket``)."""
    return GroundTruth(
        bucket=bucket or spec.bucket,
        mode=mode,
        spec=spec.to_dict(),
        columns={name: list(cols) for name, cols in COLUMNS.items()},
    )


def record_operation(truth: GroundTruth, op: Operation) -> None:
    """Update the truth and its counters with one executed operation."""
    counters = truth.injected
    if op.kind == "delete":
        truth.record_delete(op.tenant, op.dataset, op.key)
        counters.deletes += 1
    elif op.bad_reason is not None:
        truth.record_bad(op.key, op.bad_reason)
        counters.bad_files += 1
    else:
        truth.record_put(op.tenant, op.dataset, op.key, op.rows or ())
        counters.uploads += 1
        counters.overwrites += op.overwrite
        counters.new_keys += not op.overwrite
        counters.multipart += op.event_name.endswith("CompleteMultipartUpload")
    truth.operations.append(
        {
            "kind": op.kind,
            "key": op.key,
            "tenant": op.tenant,
            "dataset": op.dataset,
            "event_name": op.event_name,
            "event_time": op.moment.isoformat().replace("+00:00", "Z"),
            "sequencer": op.sequencer or None,
            "size": None if op.data is None else len(op.data),
            "rows": None if op.rows is None else len(op.rows),
            "overwrite": op.overwrite,
            "bad_reason": op.bad_reason,
        }
    )


def apply_to_lake(bucket_dir: Path, op: Operation) -> None:
    """Write or delete the operation's file under ``<lake>/<bucket>/``."""
    path = bucket_dir / op.key
    if op.kind == "delete":
        path.unlink(missing_ok=True)
        return
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(op.data or b"")


def run(spec: SimulationSpec, lake_root: str | Path) -> tuple[list[str], GroundTruth]:
    """Simulate the tenant group: files into the lake, notification bodies out.

    Use a fresh lake directory (or another seed) for each run: one seed always
    writes the same keys.

    Args:
        spec: What to inject.
        lake_root: The local lake directory; files go to ``<lake_root>/<bucket>/<key>``.

    Returns:
        (message bodies in publish order, the ground truth).
    """
    rng = random.Random(spec.seed)
    truth = new_truth(spec, "files")
    counters = truth.injected
    bucket_dir = Path(lake_root) / spec.bucket
    operations = plan_operations(spec, rng)
    for op in operations:
        apply_to_lake(bucket_dir, op)
        record_operation(truth, op)
    factory = NotificationFactory(rng, spec.bucket, spec.region)
    pairs = min(round(len(operations) * spec.pair_rate / 2), len(operations) // 2)
    messages, counters.sns_wrapped = delivery.raw_messages(
        operations, factory, rng, pairs=pairs, sns=spec.sns_rate
    )
    counters.multi_record_messages = pairs
    raw = len(messages)
    counters.test_events = spec.test_events
    counters.non_raw_events = spec.non_raw_events
    counters.malformed = round(spec.objects * spec.malformed_rate)
    messages = delivery.with_extras(
        messages,
        operations,
        factory,
        rng,
        tenants=tenant_names(spec.tenants),
        tests=counters.test_events,
        non_raw=counters.non_raw_events,
        malformed=counters.malformed,
    )
    counters.reordered = delivery.reorder(messages, round(raw * spec.reorder_rate), rng)
    counters.duplicates = round(raw * spec.dup_rate)
    messages = delivery.duplicate(messages, counters.duplicates, rng)
    counters.delayed = round(raw * spec.delay_rate)
    messages = delivery.delay(messages, counters.delayed, rng)
    counters.messages = len(messages)
    counters.records = sum(m.records for m in messages)
    log.info("simulated %s", counters.summary())
    return [m.body for m in messages], truth

"""The stream's watermark dedupe never drops an event that is not a duplicate (R6, issue #23).

The query runs on the session's Spark over a bronze directory of its own, with the
real :func:`jobs.stream.query.deduplicated_events`: a file source, the watermark and
``dropDuplicatesWithinWatermark``, one trigger per bronze file.
"""

from __future__ import annotations

import json
import uuid
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

from jobs.stream.query import BRONZE_SCHEMA, deduplicated_events


def _event(key: str, sequencer: str) -> str:
    record = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": "2026-12-01T00:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": "demo-lake"},
            "object": {"key": key, "size": 10, "eTag": f"e{sequencer}", "sequencer": sequencer},
        },
    }
    return json.dumps({"Records": [record]})


def _land(bronze: Path, name: str, bodies: list[str], received_at: datetime, bridge: str) -> None:
    lines = [
        json.dumps(
            {
                "message_id": f"m-{uuid.uuid4().hex}",
                "queue_url": "q",
                "body": body,
                "received_at": received_at.isoformat().replace("+00:00", "Z"),
                "receive_count": 1,
                "sent_at": None,
                "bridge_id": bridge,
            }
        )
        for body in bodies
    ]
    (bronze / f"{name}.jsonl").write_text("\n".join(lines) + "\n")


def test_a_bridge_whose_clock_runs_behind_loses_no_event(spark: Any, tmp_path: Path) -> None:
    """Two bridges land messages; one host's clock is two hours behind, the watermark 1 minute.

    Before the fix the watermark ran on the bridges' receive times: the skewed bridge's
    events were older than the watermark and dropped as "late" before the writer (and the
    ledger's guard) ever saw them. A duplicate of an event already seen is still dropped.
    """
    bronze = tmp_path / "bronze"
    bronze.mkdir()
    seen: list[str] = []

    def collect(batch_df: Any, _batch_id: int) -> None:
        seen.extend(r["key"] for r in batch_df.filter("outcome = 'event'").select("key").collect())

    source = spark.readStream.schema(BRONZE_SCHEMA).option("maxFilesPerTrigger", 1).json(str(bronze))
    events = deduplicated_events(source.withColumn("received_at", source["received_at"].cast("timestamp")),
                                 "1 minute", "demo-lake")  # fmt: skip
    query = (
        events.writeStream.foreachBatch(collect)
        .option("checkpointLocation", str(tmp_path / "checkpoint"))
        .start()
    )
    try:
        now = datetime.now(UTC)
        _land(bronze, "a", [_event("acme/raw/orders/1.csv", "01")], now, "bridge-1")
        query.processAllAvailable()
        _land(bronze, "b", [_event("acme/raw/orders/2.csv", "02")], now + timedelta(minutes=5), "bridge-1")
        query.processAllAvailable()
        skewed = now - timedelta(hours=2)
        _land(bronze, "c", [_event("acme/raw/orders/3.csv", "03")], skewed, "bridge-2")
        query.processAllAvailable()
        _land(bronze, "d", [_event("acme/raw/orders/2.csv", "02")], now + timedelta(minutes=5), "bridge-1")
        query.processAllAvailable()
    finally:
        query.stop()
    assert sorted(seen) == ["acme/raw/orders/1.csv", "acme/raw/orders/2.csv", "acme/raw/orders/3.csv"]

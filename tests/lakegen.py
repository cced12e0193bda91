"""Test traffic: objects in a local lake, their S3 notifications, and the oracle.

The oracle is what silver must hold, computed from what this generator wrote —
never from the job's output.
"""

from __future__ import annotations

import datetime as dt
import hashlib
import io
import json
import random
from dataclasses import dataclass, field
from decimal import Decimal
from pathlib import Path
from typing import Any
from urllib.parse import quote_plus

import pyarrow as pa
import pyarrow.parquet as pq

BUCKET = "demo-lake"


@dataclass
class Lake:
    """A local lake plus the notifications and the oracle of what silver must hold."""

    root: Path
    bucket: str = BUCKET
    seed: int = 7
    messages: list[str] = field(default_factory=list)
    oracle: dict[tuple[str, str], dict[str, list[tuple[Any, ...]]]] = field(default_factory=dict)
    _seq: int = 0x5500000000000000
    _clock: dt.datetime = dt.datetime(2024, 3, 1, 12, 0, tzinfo=dt.UTC)

    def __post_init__(self) -> None:
        self.rng = random.Random(self.seed)

    # ---- content -----------------------------------------------------------------------------------
    def orders_rows(self, n: int, tag: int) -> list[tuple[Any, ...]]:
        rows = []
        for i in range(n):
            ts = dt.datetime(2024, 3, 1 + (i % 3), 10, i % 60, tzinfo=dt.UTC)
            customer = None if i == 1 else f"c{tag}-{i}"
            rows.append((tag * 1000 + i, customer, Decimal(f"{i}.{tag % 100:02d}"), "EUR", ts))
        return rows

    @staticmethod
    def orders_csv(rows: list[tuple[Any, ...]]) -> bytes:
        out = io.StringIO()
        out.write("order_id,customer_id,amount,currency,order_ts\n")
        for oid, cust, amount, cur, ts in rows:
            out.write(f"{oid},{cust or ''},{amount},{cur},{ts.strftime('%Y-%m-%dT%H:%M:%SZ')}\n")
        return out.getvalue().encode()

    def clicks_rows(self, n: int, tag: int) -> list[tuple[Any, ...]]:
        base = dt.datetime(2024, 3, 1, 9, tzinfo=dt.UTC)
        return [
            (
                f"e{tag}-{i}",
                f"u{i % 7}",
                None if i == 2 else f"/p/{i}",
                base + dt.timedelta(minutes=37 * i),
                100 + i,
            )
            for i in range(n)
        ]

    @staticmethod
    def clicks_jsonl(rows: list[tuple[Any, ...]]) -> bytes:
        lines = [
            json.dumps(
                {
                    "event_id": e,
                    "user_id": u,
                    "page": p,
                    "ts": ts.strftime("%Y-%m-%dT%H:%M:%SZ"),
                    "duration_ms": d,
                }
            )
            for e, u, p, ts, d in rows
        ]
        return ("\n".join(lines) + "\n").encode()

    def inventory_rows(self, n: int, tag: int) -> list[tuple[Any, ...]]:
        return [
            (f"sku-{tag}-{i}", "w1" if i % 2 else None, i * 3, dt.date(2024, 3, 1 + i % 2)) for i in range(n)
        ]

    @staticmethod
    def inventory_parquet(rows: list[tuple[Any, ...]]) -> bytes:
        table = pa.table(
            {
                "sku": [r[0] for r in rows],
                "warehouse": [r[1] for r in rows],
                "qty": pa.array([r[2] for r in rows], pa.int32()),
                "snapshot_date": pa.array([r[3] for r in rows], pa.date32()),
            }
        )
        sink = io.BytesIO()
        pq.write_table(table, sink)
        return sink.getvalue()

    def content(self, dataset: str, n: int, tag: int) -> tuple[bytes, list[tuple[Any, ...]]]:
        if dataset == "orders":
            rows = self.orders_rows(n, tag)
            return self.orders_csv(rows), rows
        if dataset == "clicks":
            rows = self.clicks_rows(n, tag)
            return self.clicks_jsonl(rows), rows
        rows = self.inventory_rows(n, tag)
        return self.inventory_parquet(rows), rows

    # ---- operations -------------------------------------------------------------------------------------
    def _next(self) -> tuple[str, str]:
        self._seq += self.rng.randint(1, 0x10000)
        self._clock += dt.timedelta(milliseconds=self.rng.randint(1, 500))
        return f"{self._seq:018X}", self._clock.strftime("%Y-%m-%dT%H:%M:%S.%f")[:-3] + "Z"

    def path(self, key: str) -> Path:
        return self.root / self.bucket / key

    def put(self, tenant: str, dataset: str, name: str, *, rows: int = 5, tag: int | None = None) -> str:
        """Write an object (new or overwrite), queue its notification, update the oracle."""
        key = f"{tenant}/raw/{dataset}/{name}"
        data, content_rows = self.content(
            dataset, rows, tag if tag is not None else self.rng.randint(1, 99999)
        )
        self.path(key).parent.mkdir(parents=True, exist_ok=True)
        self.path(key).write_bytes(data)
        sequencer, when = self._next()
        self.messages.append(self.notification(key, "ObjectCreated:Put", sequencer, when, data))
        self.oracle.setdefault((tenant, dataset), {})[key] = content_rows
        return key

    def delete(self, key: str) -> None:
        tenant, _, dataset = key.split("/")[:3]
        self.path(key).unlink()
        sequencer, when = self._next()
        self.messages.append(self.notification(key, "ObjectRemoved:Delete", sequencer, when, None))
        self.oracle.get((tenant, dataset), {}).pop(key, None)

    def notification(self, key: str, name: str, sequencer: str, when: str, data: bytes | None) -> str:
        obj: dict[str, Any] = {"key": quote_plus(key, safe="/"), "sequencer": sequencer}
        if data is not None:
            obj.update({"size": len(data), "eTag": hashlib.md5(data).hexdigest()})
        record = {
            "eventVersion": "2.1",
            "eventSource": "aws:s3",
            "awsRegion": "us-east-1",
            "eventTime": when,
            "eventName": name,
            "s3": {"s3SchemaVersion": "1.0", "bucket": {"name": self.bucket}, "object": obj},
        }
        return json.dumps({"Records": [record]})

    def shuffled_with_duplicates(self, dup_rate: float = 0.3) -> list[str]:
        """All notifications, some duplicated, in random order."""
        out = list(self.messages)
        out += [m for m in self.messages if self.rng.random() < dup_rate]
        self.rng.shuffle(out)
        return out

    def expected_rows(self, tenant: str, dataset: str) -> list[tuple[Any, ...]]:
        return sorted(
            (row for rows in self.oracle.get((tenant, dataset), {}).values() for row in rows), key=repr
        )

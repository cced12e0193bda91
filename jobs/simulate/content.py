"""Realistic file contents for the demo datasets, and the bad files a platform also sees.

``orders`` is CSV (some ``.csv.gz``), ``clicks`` JSON lines, ``inventory`` Parquet,
with the columns of ``conf/datasets.yaml``. Every byte depends only on the
random generator, so one seed always gives the same files (gzip without a
timestamp, Parquet written by one pyarrow version).
"""

from __future__ import annotations

import datetime as dt
import gzip
import io
import json
import random
from decimal import Decimal
from typing import Any

COLUMNS: dict[str, list[str]] = {
    "orders": ["order_id", "customer_id", "amount", "currency", "order_ts"],
    "clicks": ["event_id", "user_id", "page", "ts", "duration_ms"],
    "inventory": ["sku", "warehouse", "qty", "snapshot_date"],
}
#: Bad-file kinds and the quarantine reason the job gives each.
BAD_KINDS: dict[str, str] = {
    "wrong_header": "wrong_header",
    "corrupt_gzip": "corrupt_compression",
    "empty": "empty_file",
    "unknown_dataset": "unknown_dataset",
}
_EXTENSIONS = {"orders": ".csv", "clicks": ".jsonl", "inventory": ".parquet"}
_ODD_NAMES = {
    "orders": ("März report+v{n}", "Q1 results + final {n}", "export ({n})", "café & crème {n}"),
    "clicks": ("web+session {n}", "été visits {n}", "東京 clicks {n}", "a=b&c {n}"),
    "inventory": ("Inventur Lager {n}", "stock levels+{n}", "snapshot ({n}) ü", "dépôt {n}"),
}
_PAGES = ("/", "/pricing", "/docs/start", "/blog/iceberg", "/cart", "/checkout", "/account")
_WAREHOUSES = ("ams-1", "fra-2", "dub-1", "iad-3")
_CURRENCIES = ("EUR", "USD", "GBP", "CHF")
#: Bad values a row may get, per dataset: (kind, column, value). Each breaks one rule of the
#: dataset's expectation suite (conf/expectations/) or does not convert to the column's type.
BAD_VALUES: dict[str, tuple[tuple[str, str, Any], ...]] = {
    "orders": (
        ("negative_amount", "amount", Decimal("-12.50")),
        ("unknown_currency", "currency", "XXX"),
        ("missing_order_id", "order_id", None),
        ("order_id_not_a_number", "order_id", "n/a"),
    ),
    "clicks": (
        ("negative_duration", "duration_ms", -5),
        ("page_not_a_path", "page", "checkout"),
        ("duration_not_a_number", "duration_ms", "slow"),
    ),
    "inventory": (
        ("negative_qty", "qty", -3),
        ("missing_sku", "sku", None),
    ),
}
#: The key a spoiled row carries (never written to the file).
BAD = "_bad"


def iso_z(moment: dt.datetime) -> str:
    """``2024-03-01T10:05:00Z`` (seconds precision, UTC)."""
    return moment.astimezone(dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


class ContentFactory:
    """Rows and file bytes; ids stay unique across one simulation."""

    def __init__(self, rng: random.Random) -> None:
        self._rng = rng
        self._order_id = 10_000_000 + rng.randint(0, 999) * 1000
        self._event_no = 0
        self._sku_no = 0
        self._file_no = 0

    # ---- names ---------------------------------------------------------------------------------------
    def file_name(self, dataset: str, *, gz: bool, odd: bool) -> str:
        """A unique file name for ``dataset`` (an odd one has spaces, ``+``, unicode, ...)."""
        self._file_no += 1
        if odd and dataset in _ODD_NAMES:
            stem = self._rng.choice(_ODD_NAMES[dataset]).format(n=self._file_no)
        else:
            stem = f"{dataset}-{self._file_no:05d}"
        return stem + _EXTENSIONS.get(dataset, ".csv") + (".gz" if gz else "")

    # ---- rows ----------------------------------------------------------------------------------------
    def rows(
        self, dataset: str, count: int, when: dt.datetime, bad_rate: float = 0.0
    ) -> list[dict[str, Any]]:
        """``count`` rows of ``dataset`` around the upload time ``when`` (Python values).

        With probability ``bad_rate`` a row gets one of :data:`BAD_VALUES` and carries
        the kind under :data:`BAD`.
        """
        make = {"orders": self._order, "clicks": self._click, "inventory": self._stock}[dataset]
        rows = [make(when) for _ in range(count)]
        for row in rows:
            if bad_rate and self._rng.random() < bad_rate:
                kind, column, value = self._rng.choice(BAD_VALUES[dataset])
                row.update({column: value, BAD: kind})
        return rows

    def _order(self, when: dt.datetime) -> dict[str, Any]:
        rng = self._rng
        self._order_id += rng.randint(1, 40)
        cents = rng.randint(99, 250_000)
        return {
            "order_id": self._order_id,
            "customer_id": None if rng.random() < 0.1 else f"cus_{rng.randint(1, 4000):05d}",
            "amount": (Decimal(cents) / 100).quantize(Decimal("0.01")),
            "currency": rng.choice(_CURRENCIES),
            "order_ts": when.replace(microsecond=0) - dt.timedelta(seconds=rng.randint(0, 3 * 86_400)),
        }

    def _click(self, when: dt.datetime) -> dict[str, Any]:
        rng = self._rng
        self._event_no += 1
        return {
            "event_id": f"evt-{self._event_no:07d}-{rng.getrandbits(24):06x}",
            "user_id": f"u{rng.randint(1, 300)}",
            "page": None if rng.random() < 0.1 else rng.choice(_PAGES),
            "ts": when.replace(microsecond=0) - dt.timedelta(seconds=rng.randint(0, 36 * 3600)),
            "duration_ms": rng.randint(5, 120_000),
        }

    def _stock(self, when: dt.datetime) -> dict[str, Any]:
        rng = self._rng
        self._sku_no += 1
        return {
            "sku": f"SKU-{self._sku_no:06d}",
            "warehouse": None if rng.random() < 0.1 else rng.choice(_WAREHOUSES),
            "qty": rng.randint(0, 5_000),
            "snapshot_date": (when - dt.timedelta(days=rng.randint(0, 2))).date(),
        }

    # ---- bytes ---------------------------------------------------------------------------------------
    def encode(self, dataset: str, rows: list[dict[str, Any]], *, gz: bool = False) -> bytes:
        """The file bytes of ``rows`` in the dataset's format (gzip-compressed when ``gz``)."""
        data = {"orders": _orders_csv, "clicks": _clicks_jsonl, "inventory": _inventory_parquet}[dataset](
            rows
        )
        return gzip.compress(data, mtime=0) if gz else data

    def bad_file(self, kind: str, when: dt.datetime) -> tuple[str, str, bytes]:
        """A bad file: (dataset directory, file name, bytes). ``kind`` is one of :data:`BAD_KINDS`."""
        good = _orders_csv(self.rows("orders", 4, when))
        if kind == "wrong_header":
            body = good.partition(b"\n")[2]
            return "orders", self.file_name("orders", gz=False, odd=False), b"id,cust,total,cur,ts\n" + body
        if kind == "corrupt_gzip":
            packed = gzip.compress(good, mtime=0)
            return "orders", self.file_name("orders", gz=True, odd=False), packed[: len(packed) // 2]
        if kind == "empty":
            return "clicks", self.file_name("clicks", gz=False, odd=False), b""
        if kind == "unknown_dataset":
            self._file_no += 1
            return "unknown_ds", f"ledger-{self._file_no:05d}.csv", good
        raise ValueError(f"unknown bad-file kind {kind!r}")


def _orders_csv(rows: list[dict[str, Any]]) -> bytes:
    out = io.StringIO()
    out.write(",".join(COLUMNS["orders"]) + "\n")
    for r in rows:
        out.write(
            f"{_text(r['order_id'])},{r['customer_id'] or ''},{r['amount']},{r['currency']},"
            f"{iso_z(r['order_ts'])}\n"
        )
    return out.getvalue().encode("utf-8")


def _text(value: Any) -> str:
    return "" if value is None else str(value)


def _clicks_jsonl(rows: list[dict[str, Any]]) -> bytes:
    lines = [
        json.dumps({**{k: v for k, v in r.items() if k != BAD}, "ts": iso_z(r["ts"])}, ensure_ascii=False)
        for r in rows
    ]
    return ("\n".join(lines) + "\n").encode("utf-8")


def _inventory_parquet(rows: list[dict[str, Any]]) -> bytes:
    import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]  # lazy: keeps the CLI quick
    import pyarrow.parquet as pq  # type: ignore[import-untyped, unused-ignore]

    table = pa.table(
        {
            "sku": pa.array([r["sku"] for r in rows], pa.string()),
            "warehouse": pa.array([r["warehouse"] for r in rows], pa.string()),
            "qty": pa.array([r["qty"] for r in rows], pa.int32()),
            "snapshot_date": pa.array([r["snapshot_date"] for r in rows], pa.date32()),
        }
    )
    sink = io.BytesIO()
    pq.write_table(table, sink)
    return sink.getvalue()

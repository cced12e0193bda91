"""Fixtures of the stream's in-process tests: a micro-batch writer on the session's Spark, with its own lake."""

from __future__ import annotations

import uuid
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import pytest
from pyspark.sql import functions as F

from jobs.config import SilverlineConfig, load_config
from jobs.contracts import load_contracts
from jobs.events.spark import parse_events, with_foreign_buckets_rejected
from jobs.session import catalog_settings
from jobs.stream.microbatch import BatchWriter
from jobs.stream.ops import ensure_ops_tables, ops_table
from jobs.stream.query import BRONZE_SCHEMA, with_dedupe_key
from tests import streamkit as kit
from tests.lakegen import Lake
from tests.s3deny import DenyingS3Proxy

ORDERS = ["order_id", "customer_id", "amount", "currency", "order_ts"]


@dataclass
class Harness:
    spark: Any
    config: SilverlineConfig
    lake: Lake
    lake_dir: Path

    def writer(self, query_id: str) -> BatchWriter:
        """A new writer on this lake, as a (re)started job builds it."""
        contracts = load_contracts(self.config.stream.datasets_file)
        writer = BatchWriter(self.spark, self.config, contracts)
        writer.query_id = query_id
        return writer

    def batch(self, messages: list[str]) -> Any:
        """The parsed, deduplicated micro-batch the query would hand over for these messages.

        As ``jobs.stream.query.deduplicated_events`` builds it, with a batch ``dropDuplicates``
        in place of the streaming-only ``dropDuplicatesWithinWatermark``.
        """
        rows = [
            (f"m-{uuid.uuid4().hex}", "q", body, "2026-12-01T00:00:00.000Z", 1, None, "test")
            for body in messages
        ]
        bronze = (
            self.spark.createDataFrame(rows, BRONZE_SCHEMA)
            .withColumn("bronze_file", F.lit("file:///bronze/test.jsonl"))
            .withColumn("received_at", F.to_timestamp("received_at"))
        )
        return (
            bronze.withColumn("body_sha256", F.sha2(F.coalesce(F.col("body"), F.lit("")), 256))
            .transform(parse_events)
            .transform(lambda df: with_foreign_buckets_rejected(df, self.config.group.bucket))
            .transform(with_dedupe_key)
            .dropDuplicates(["dedupe_key"])
        )

    def silver(self, tenant: str) -> list[tuple[Any, ...]]:
        return kit.silver_rows(self.lake_dir, tenant, "orders", ORDERS, bucket=self.config.group.bucket)

    def ledger_keys(self) -> dict[str, str]:
        rows = self.spark.table(ops_table(self.config, "ledger")).collect()
        return {r["key"]: r["state"] for r in rows}

    def ops_rows(self, name: str) -> list[Any]:
        return self.spark.table(ops_table(self.config, name)).collect()


@pytest.fixture
def harness(make_harness: Callable[..., Harness]) -> Harness:
    """A writer's world on the local lake, bucket ``demo-lake``."""
    return make_harness()


@pytest.fixture
def make_harness(spark: Any, tmp_path: Path) -> Iterator[Callable[..., Harness]]:
    """Build a harness: ``make_harness(bucket=..., **config section overrides)``.

    Each gets its own silver and ops catalogs (registered on the session for the test,
    then removed), so no test sees another's ledger, retry or held tables.
    """
    registered: list[str] = []

    def make(bucket: str = "demo-lake", **overrides: Any) -> Harness:
        lake_dir = tmp_path / "lake"
        lake_dir.mkdir(exist_ok=True)
        catalog = f"xo{uuid.uuid4().hex[:8]}"
        sections: dict[str, dict[str, Any]] = {
            "lake": {"root": str(lake_dir)},
            "catalog": {"name": catalog},
            "group": {"name": "xo", "bucket": bucket},
            "stream": {"datasets_file": str(kit.PROJECT / "conf" / "datasets.yaml"), "commit_threads": 2},
        }
        for section, values in overrides.items():
            sections[section] = {**sections.get(section, {}), **values}
        config = load_config(kit.PROJECT / "conf" / "local.yaml", environ={}, overrides=sections)
        for key, value in catalog_settings(config).items():
            spark.conf.set(key, value)
            registered.append(key)
        spark.sql(f"SHOW NAMESPACES IN {catalog}").collect()  # loaded here: commit threads find it
        ensure_ops_tables(spark, config)
        return Harness(spark, config, Lake(lake_dir, bucket=bucket), lake_dir)

    yield make
    for key in registered:
        spark.conf.unset(key)


@pytest.fixture
def s3_proxy(moto_endpoint: str) -> Iterator[DenyingS3Proxy]:
    """moto's S3 behind a proxy that can refuse to serve chosen objects (AccessDenied)."""
    proxy = DenyingS3Proxy(moto_endpoint).start()
    yield proxy
    proxy.stop()

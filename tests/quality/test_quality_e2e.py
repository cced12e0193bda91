"""End to end with data quality: bad rows and bad files quarantined, a contract that grows.

The expectations come from the traffic simulator's ground truth (which rows it
spoiled, which files it broke), never from the job's output.
"""

from __future__ import annotations

import shutil
from collections import Counter
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests import streamkit as kit

pytestmark = pytest.mark.integration

PROJECT = Path(__file__).resolve().parents[2]


def test_bad_rows_and_files_are_quarantined_good_data_lands_and_conservation_holds(
    spark: Any, tmp_path: Path, moto_endpoint: str
) -> None:
    from jobs.simulate import SimulationSpec, run, verify

    lake = tmp_path / "lake"
    spec = SimulationSpec(tenants=4, objects=80, bad_row_rate=0.05, bad_rate=0.05, seed=12)
    bodies, truth = run(spec, lake)
    bad_rows = sum(len(v) for v in truth.bad_rows.values())
    assert bad_rows >= 10 and len(truth.quarantined) >= 3
    queue_url, _ = kit.make_queue(moto_endpoint)
    config = kit.write_config(tmp_path, lake, moto_endpoint, queue_url, max_files_per_trigger=50)
    kit.send_all(moto_endpoint, queue_url, bodies)

    done = kit.run_here(spark, config, "stream", "--trigger", "available-now")
    assert done.returncode == 0, done.stderr[-4000:]

    # Silver holds exactly the good rows; each tenant's quarantine table exactly the bad ones.
    result = verify(lake, truth)
    assert result.ok, result.summary()
    assert sum(t.quarantined_rows for t in result.tables) == bad_rows
    # Every bad file is in the ops quarantine table with the reason the simulator expects.
    quarantine = kit.read_table(kit.ops_dir(lake, "quarantine"))
    assert quarantine is not None
    reasons = {r["key"]: r["reason"] for r in quarantine.to_pylist()}
    assert {k: reasons.get(k) for k in truth.quarantined} == truth.quarantined
    # A quarantined row says what it failed and keeps its original text when a value did not convert.
    kinds = {(key, n): kind for key, rows in truth.bad_rows.items() for n, kind in rows}
    for tenant, dataset in truth.table_pairs():
        table = kit.read_table(lake / "demo-lake" / tenant / "quarantine" / dataset)
        for row in [] if table is None else table.to_pylist():
            kind = kinds[(row["_source_key"], row["_row_number"])]
            assert row["_failed_expectations"], row
            assert row["_quarantine_reason"] == "failed_expectations"
            if kind.endswith("not_a_number"):
                column = "order_id" if dataset == "orders" else "duration_ms"
                assert f"conversion({column})" in row["_failed_expectations"]
                assert row["_raw"] is not None and ("n/a" in row["_raw"] or "slow" in row["_raw"])
    # Validation results: per tenant, the rows that failed anything are the spoiled rows.
    results = kit.read_table(kit.ops_dir(lake, "validation_results"))
    assert results is not None
    failed_by_tenant = Counter()
    for row in results.to_pylist():
        if row["expectation"] == "*":
            failed_by_tenant[(row["tenant"], row["dataset"])] += row["rows_failed"]
    expected = Counter()
    for key, rows in truth.bad_rows.items():
        tenant, _, dataset = key.split("/")[:3]
        expected[(tenant, dataset)] += len(rows)
    assert +failed_by_tenant == +expected
    # Conservation (R7) over every batch.
    rows = kit.read_table(kit.ops_dir(lake, "batch_metrics")).to_pylist()  # type: ignore[union-attr]
    kit.assert_balanced(rows)
    assert sum(r["quarantined"] for r in rows) == len(truth.quarantined)


def test_a_contract_that_gains_a_column_evolves_existing_tables_in_place(
    spark: Any, tmp_path: Path, moto_endpoint: str
) -> None:
    lake = tmp_path / "lake"
    conf = tmp_path / "conf"
    shutil.copytree(PROJECT / "conf" / "expectations", conf / "expectations")
    contracts = yaml.safe_load((PROJECT / "conf" / "datasets.yaml").read_text())
    datasets_file = conf / "datasets.yaml"
    datasets_file.write_text(yaml.safe_dump(contracts))
    queue_url, _ = kit.make_queue(moto_endpoint)
    config = kit.write_config(tmp_path, lake, moto_endpoint, queue_url)
    text = yaml.safe_load(config.read_text())
    text["stream"]["datasets_file"] = str(datasets_file)
    config.write_text(yaml.safe_dump(text))

    header = "order_id,customer_id,amount,currency,order_ts"
    first = put_orders(
        lake, "acme/raw/orders/a.csv", header + ",channel\n1,c1,2.50,EUR,2024-03-01T10:00:00Z,web\n"
    )
    kit.send_all(moto_endpoint, queue_url, [first])
    assert kit.run_here(spark, config, "stream", "--trigger", "available-now").returncode == 0
    table_dir = lake / "demo-lake" / "acme" / "silver" / "orders"
    before = kit.read_table(table_dir)
    assert before is not None
    # Not in the contract yet: the channel is kept in _rescued, not dropped.
    assert [(r["order_id"], r["_rescued"]) for r in before.to_pylist()] == [(1, '{"channel":"web"}')]
    data_files = sorted(p.name for p in (table_dir / "data").rglob("*.parquet"))

    contracts["datasets"]["orders"]["columns"].append({"name": "channel", "type": "string"})
    datasets_file.write_text(yaml.safe_dump(contracts))
    second = put_orders(
        lake, "acme/raw/orders/b.csv", header + ",channel\n2,c2,3.00,EUR,2024-03-01T11:00:00Z,app\n"
    )
    kit.send_all(moto_endpoint, queue_url, [second])
    done = kit.run_here(spark, config, "stream", "--trigger", "available-now")
    assert done.returncode == 0, done.stderr[-4000:]

    after = kit.read_table(table_dir)
    assert after is not None
    assert sorted((r["order_id"], r["channel"], r["_rescued"]) for r in after.to_pylist()) == [
        (1, None, '{"channel":"web"}'),  # the old row reads the new column as null
        (2, "app", None),
    ]
    still_there = sorted(p.name for p in (table_dir / "data").rglob("*.parquet"))
    assert set(data_files) <= set(still_there)  # the old data files were not rewritten

    # Narrowing a column now stops the job before it starts, naming dataset, column and fix.
    contracts["datasets"]["orders"]["columns"][0]["type"] = "int"
    datasets_file.write_text(yaml.safe_dump(contracts))
    refused = kit.run_here(spark, config, "stream", "--trigger", "available-now")
    assert refused.returncode == 2
    assert "dataset 'orders'" in refused.stderr and "'order_id'" in refused.stderr


def put_orders(lake: Path, key: str, text: str) -> str:
    import hashlib
    import json

    path = lake / "demo-lake" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_text(text)
    data = path.read_bytes()
    record: dict[str, Any] = {
        "eventVersion": "2.1",
        "eventSource": "aws:s3",
        "eventTime": "2024-03-01T12:00:00.000Z",
        "eventName": "ObjectCreated:Put",
        "s3": {
            "bucket": {"name": "demo-lake"},
            "object": {
                "key": key,
                "size": len(data),
                "eTag": hashlib.md5(data).hexdigest(),
                "sequencer": "0A",
            },
        },
    }
    return json.dumps({"Records": [record]})

"""A batch's reads: cut into units, packed into Spark tasks, and what a task does when parts fail.

No Spark here: the task function runs in this process, and a stand-in plays the Spark job
where the test is what happens when that job fails.
"""

from __future__ import annotations

import datetime as dt
from pathlib import Path
from typing import Any

import pyarrow.parquet as pq
import pytest

from jobs.contracts import load_contracts
from jobs.objects.reader import ObjectRef
from jobs.stream import tasks
from jobs.stream.tasks import BinResult, ReadUnit, UnitResult, pack, split_refs
from tests import streamkit as kit
from tests.lakegen import Lake

pytestmark = pytest.mark.unit

ORDERS = load_contracts(kit.PROJECT / "conf" / "datasets.yaml")["orders"]


def ref(key: str, size: int | None) -> tuple[ObjectRef, bool]:
    tenant = key.split("/")[0]
    obj = ObjectRef("b", key, tenant, "orders", None, None, None, None, size)
    return obj, size is None


def unit(table: str, *sizes: int | None) -> ReadUnit:
    refs = tuple(ref(f"{table}/raw/orders/{i}.csv", s) for i, s in enumerate(sizes))
    return ReadUnit(table, "b", table, "orders", ORDERS, refs, None)


def test_a_tables_refs_are_cut_by_count_and_by_bytes_in_order() -> None:
    many = [ref(f"t/raw/orders/{i}.csv", 100) for i in range(tasks.UNIT_OBJECTS * 2 + 1)]
    chunks = split_refs(many)
    assert [len(c) for c in chunks] == [tasks.UNIT_OBJECTS, tasks.UNIT_OBJECTS, 1]
    assert [r for c in chunks for r in c] == many  # nothing lost, order kept
    big = tasks.UNIT_BYTES // 2 + 1
    assert [len(c) for c in split_refs([ref("t/raw/orders/a", big), ref("t/raw/orders/b", big)])] == [1, 1]
    huge = [ref("t/raw/orders/h", tasks.UNIT_BYTES * 3)]  # one object larger than a unit: alone
    assert split_refs(huge) == [tuple(huge)]
    assert split_refs([]) == []


def test_small_units_share_tasks_and_every_core_gets_work() -> None:
    small = [unit(f"t{i}", 1000, 2000) for i in range(10)]
    bins = pack(small, parallelism=2)
    assert len(bins) == 2
    assert sorted(u.table for b in bins for u in b) == sorted(u.table for u in small)  # each once
    assert abs(sum(u.weight for u in bins[0]) - sum(u.weight for u in bins[1])) <= 3000
    assert len(pack(small[:1], parallelism=8)) == 1  # no empty tasks
    assert pack([], parallelism=2) == []


def test_large_units_are_spread_over_more_tasks_than_cores() -> None:
    heavy = [unit(f"h{i}", tasks.BIN_BYTES // 2) for i in range(6)] + [unit("s", 10)]
    bins = pack(heavy, parallelism=2)
    assert len(bins) == 4  # ceil(3.0 + a little bins' worth of bytes)
    assert max(len([u for u in b if u.table.startswith("h")]) for b in bins) == 2
    current = unit("c", None)  # a re-read of the current version: size unknown, a nominal weight
    assert current.weight > 0


def failing_runner(bad_table: str, calls: list[list[str]]) -> Any:
    """A stand-in for the Spark job: it fails whenever a bin holds ``bad_table``'s units."""

    def run(bins: list[list[ReadUnit]]) -> list[BinResult]:
        calls.append(sorted(u.table for b in bins for u in b))
        if any(u.table == bad_table for b in bins for u in b):
            raise RuntimeError("Python worker exited unexpectedly (crashed)")
        return [BinResult([UnitResult(u.table) for u in b], [], {}) for b in bins]

    return run


def test_a_failed_read_stage_fails_only_the_tables_that_fail_again_on_their_own() -> None:
    bins = pack([unit("good1", 10), unit("bad", 10), unit("good2", 10), unit("bad", 20)], parallelism=2)
    calls: list[list[str]] = []
    results = tasks.run_isolated(failing_runner("bad", calls), bins)
    by_table: dict[str, list[str | None]] = {}
    for result in results:
        for each in result.units:
            by_table.setdefault(each.table, []).append(each.error)
    assert by_table["good1"] == [None] and by_table["good2"] == [None]
    assert by_table["bad"] == ["read failed: RuntimeError: Python worker exited unexpectedly (crashed)"] * 2
    assert calls[0] == ["bad", "bad", "good1", "good2"]  # the whole stage first, then each table alone
    assert sorted(calls[1:]) == [["bad", "bad"], ["good1"], ["good2"]]
    calls.clear()
    assert len(tasks.run_isolated(failing_runner("none", calls), bins)) == len(bins) and len(calls) == 1


def test_a_validation_that_raises_fails_only_its_datasets_units(tmp_path: Path) -> None:
    """In one task: the orders unit's check raises (a key column the rows lack); clicks still land."""
    from jobs.config import load_config
    from jobs.quality.suites import load_suite

    lake = Lake(tmp_path / "lake", bucket="b")
    orders_key = lake.put("acme", "orders", "a.csv", rows=3)
    clicks_key = lake.put("acme", "clicks", "c.jsonl", rows=4)
    contracts = load_contracts(kit.PROJECT / "conf" / "datasets.yaml")
    broken = contracts["orders"].model_copy(update={"primary_key": ("no_such_column",)})
    config = load_config(
        kit.PROJECT / "conf" / "local.yaml", environ={}, overrides={"lake": {"root": str(tmp_path / "lake")}}
    )
    units = [
        ReadUnit("t.orders", "b", "acme", "orders", broken, (ref_of(orders_key),), None),
        ReadUnit(
            "t.clicks", "b", "acme", "clicks", contracts["clicks"], (ref_of(clicks_key, "clicks"),), None
        ),
    ]
    suites = {
        name: load_suite(name, kit.PROJECT / "conf" / "expectations")
        for name in {u.contract.expectations for u in units if u.contract.expectations}
    }
    staging = (tmp_path / "staging").as_uri() + "/"
    spec = tasks.TaskSpec(config, suites, 3, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), staging)

    result = tasks.run_bin(spec, units)

    orders, clicks = result.units
    assert orders.error is not None and orders.error.startswith("validate failed: ValueError")
    assert "no_such_column" in orders.error and orders.files == []
    assert (clicks.error, clicks.good_rows, [o.status for o in clicks.outcomes]) == (None, 4, ["ok"])
    (staged,) = clicks.files
    assert pq.read_table(staged.path.removeprefix("file://")).num_rows == 4
    assert [v.dataset for v in result.verdicts] == ["clicks"]


def ref_of(key: str, dataset: str = "orders") -> tuple[ObjectRef, bool]:
    return ObjectRef("b", key, key.split("/")[0], dataset, None, None, None, None, None), False


# Objects larger than a block (stream.read_block_bytes): read, checked and written a block at a time.


def block_spec(tmp_path: Path, **stream: object) -> tasks.TaskSpec:
    from jobs.config import load_config
    from jobs.quality.suites import load_suite

    config = load_config(
        kit.PROJECT / "conf" / "local.yaml",
        environ={},
        overrides={"lake": {"root": str(tmp_path / "lake")}, "stream": {"read_block_bytes": 4096, **stream}},
    )
    suites = {"orders": load_suite("orders", kit.PROJECT / "conf" / "expectations")}
    staging = (tmp_path / "staging").as_uri() + "/"
    return tasks.TaskSpec(config, suites, 7, dt.datetime(2026, 1, 1, tzinfo=dt.UTC), staging)


def orders_csv(rows: int, *, bad: set[int] = frozenset(), long_line: int | None = None) -> bytes:  # type: ignore[assignment]
    lines = ["order_id,customer_id,currency,amount,order_ts"]
    for i in range(1, rows + 1):
        amount = "twelve" if i in bad else f"{i}.50"
        lines.append(f"{i},c-{i},EUR,{amount},2024-03-01T10:00:00Z" + ("x" * 3000 if i == long_line else ""))
    return ("\n".join(lines) + "\n").encode()


def put_object(tmp_path: Path, key: str, body: bytes) -> tuple[ObjectRef, bool]:
    path = tmp_path / "lake" / "b" / key
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(body)
    return ObjectRef("b", key, key.split("/")[0], "orders", None, None, None, None, len(body)), False


def staged_ids(paths: list[str]) -> list[int]:
    return sorted(i for p in paths for i in pq.read_table(p.removeprefix("file://"))["order_id"].to_pylist())


def summaries(verdicts: list[Any], attribute: str) -> int:
    """A count of the ``*`` summaries of validation results, over the calls."""
    return sum(getattr(r, attribute) for v in verdicts for r in v.results if r.expectation == "*")


def staging_files(tmp_path: Path) -> set[str]:
    return {p.as_uri() for p in (tmp_path / "staging").rglob("*.parquet")}


def test_an_object_over_a_block_is_checked_and_written_a_block_at_a_time(tmp_path: Path) -> None:
    spec = block_spec(tmp_path)
    big = put_object(tmp_path, "acme/raw/orders/big.csv", orders_csv(1200, bad={5, 700, 1199}))
    small = put_object(tmp_path, "acme/raw/orders/small.csv", orders_csv(3))
    unit = ReadUnit("t.orders", "b", "acme", "orders", ORDERS, (big, small), None)

    ran = tasks.run_bin(spec, [unit])

    (result,) = ran.units
    assert result.error is None
    assert [(o.ref.key, o.status, o.rows) for o in result.outcomes] == [
        ("acme/raw/orders/big.csv", "ok", 1200),  # in ref order, though read last
        ("acme/raw/orders/small.csv", "ok", 3),
    ]
    assert (result.good_rows, result.bad_rows) == (1200 - 3 + 3, 3)
    assert len(result.files) > 5  # one staged file per block, and the small objects' one
    good = staged_ids([f.path for f in result.files])
    assert good == sorted([i for i in range(1, 1201) if i not in {5, 700, 1199}] + [1, 2, 3])
    assert staged_ids(result.bad_files) == [5, 700, 1199]
    assert len(ran.verdicts) > 5  # one validation per block
    assert (summaries(ran.verdicts, "rows_checked"), summaries(ran.verdicts, "rows_failed")) == (1203, 3)


def test_an_object_failing_in_a_later_block_leaves_no_rows_and_no_files(tmp_path: Path) -> None:
    spec = block_spec(tmp_path, max_row_bytes=2048)
    big = put_object(tmp_path, "acme/raw/orders/big.csv", orders_csv(1200, bad={5}, long_line=1100))
    small = put_object(tmp_path, "acme/raw/orders/small.csv", orders_csv(3))
    unit = ReadUnit("t.orders", "b", "acme", "orders", ORDERS, (big, small), None)

    result = tasks.run_bin(spec, [unit])

    (unit_result,) = result.units
    assert [(o.status, o.reason) for o in unit_result.outcomes] == [
        ("quarantined", "row_bytes_limit"),
        ("ok", None),
    ]
    assert (unit_result.good_rows, unit_result.bad_rows, unit_result.bad_files) == (3, 0, [])
    assert staging_files(tmp_path) == {f.path for f in unit_result.files}  # the blocks' files are gone
    assert summaries(result.verdicts, "rows_failed") == 0  # row 5's verdict went with its object
    assert summaries(result.verdicts, "rows_checked") == 3


def test_reject_file_rejects_an_object_over_a_block_whole_for_a_bad_row_in_its_last_block(
    tmp_path: Path,
) -> None:
    spec = block_spec(tmp_path)
    strict = ORDERS.model_copy(update={"on_bad_rows": "reject_file"})
    big = put_object(tmp_path, "acme/raw/orders/big.csv", orders_csv(1200, bad={1199}))
    unit = ReadUnit("t.orders", "b", "acme", "orders", strict, (big,), None)

    (result,) = tasks.run_bin(spec, [unit]).units

    assert [(o.status, o.rows) for o in result.outcomes] == [("ok", 1200)]  # the planner quarantines it
    assert (result.good_rows, result.bad_rows) == (0, 1200)
    assert staged_ids(result.bad_files) == list(range(1, 1201))
    assert staged_ids([f.path for f in result.files]) == []
    assert list(result.rejected) == ["acme/raw/orders/big.csv"]
    assert "amount" in result.rejected["acme/raw/orders/big.csv"]
    assert staging_files(tmp_path) == {f.path for f in result.files} | set(result.bad_files)

"""How a batch's reads are cut into units and packed into Spark tasks (pure planning, no Spark)."""

from __future__ import annotations

import pytest

from jobs.contracts import load_contracts
from jobs.objects.reader import ObjectRef
from jobs.stream import tasks
from jobs.stream.tasks import ReadUnit, pack, split_refs
from tests import streamkit as kit

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

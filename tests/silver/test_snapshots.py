"""Finding a batch's own snapshot: the walk down a table's history, and where it may stop.

The Iceberg table is a stand-in with the three methods the walk calls, so that the test
can count the snapshots read (each is a few py4j round trips on a real table). The real
tables' side is covered by the replay tests in tests/silver/test_silver.py.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from jobs.silver.snapshots import SNAPSHOT_BATCH_ID, SNAPSHOT_QUERY_ID, BatchSnapshot, batch_snapshot_in


@dataclass
class Snapshot:
    snapshot_id: int
    parent: int | None
    properties: dict[str, str]

    def snapshotId(self) -> int:  # noqa: N802 - Iceberg's Java names
        return self.snapshot_id

    def parentId(self) -> int | None:  # noqa: N802
        return self.parent

    def summary(self) -> dict[str, str]:
        return self.properties


@dataclass
class History:
    """A table's snapshots, oldest first; counts the snapshots the walk reads."""

    snapshots: list[Snapshot] = field(default_factory=list)
    read: int = 0

    def add(self, query: str | None, batch: int | None) -> History:
        properties = {"added-records": "5"}
        if query is not None:
            properties[SNAPSHOT_QUERY_ID] = query
        if batch is not None:
            properties[SNAPSHOT_BATCH_ID] = str(batch)
        parent = self.snapshots[-1].snapshot_id if self.snapshots else None
        self.snapshots.append(Snapshot(100 + len(self.snapshots), parent, properties))
        return self

    def currentSnapshot(self) -> Snapshot | None:  # noqa: N802
        self.read += 1 if self.snapshots else 0
        return self.snapshots[-1] if self.snapshots else None

    def snapshot(self, snapshot_id: int) -> Snapshot:
        self.read += 1
        return next(s for s in self.snapshots if s.snapshot_id == snapshot_id)


def test_the_walk_stops_at_an_earlier_batch_of_the_same_query() -> None:
    table = History()
    for batch in range(1, 40):
        table.add("q", batch)

    assert batch_snapshot_in(table, batch_id=40, query_id="q") is None
    assert table.read == 1  # batch 39 is on top: batch 40 cannot be below it


def test_a_replayed_batch_finds_its_snapshot_under_later_commits_of_others() -> None:
    table = History().add("q", 6).add("q", 7)
    for _ in range(5):  # maintenance, a backfill of another query, a retry pass
        table.add(None, None)
    table.add("other", 3).add("q", -17)

    assert batch_snapshot_in(table, batch_id=7, query_id="q") == BatchSnapshot(101, 5)
    assert batch_snapshot_in(table, batch_id=-17, query_id="q") == BatchSnapshot(108, 5)


def test_retry_passes_are_not_ordered_so_their_search_goes_on() -> None:
    table = History().add("q", -5).add("q", 3).add("q", 4).add("q", -9)

    assert batch_snapshot_in(table, batch_id=-5, query_id="q") == BatchSnapshot(100, 5)
    table.read = 0
    assert batch_snapshot_in(table, batch_id=-6, query_id="q") is None
    assert table.read == 4  # the whole history: a pass's snapshot may be anywhere
    # A stream batch is ordered against the query's other stream batches only.
    table.read = 0
    assert batch_snapshot_in(table, batch_id=5, query_id="q") is None
    assert table.read == 2  # past the retry pass -9, stopped at batch 4


def test_another_querys_batches_do_not_stop_the_walk() -> None:
    table = History().add("q", 8)
    for batch in range(1, 10):
        table.add("new-query-after-reset", batch)

    assert batch_snapshot_in(table, batch_id=8, query_id="q") == BatchSnapshot(100, 5)
    assert batch_snapshot_in(table, batch_id=9, query_id="q", depth=5) is None  # depth still bounds it

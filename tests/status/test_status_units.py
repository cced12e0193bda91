"""``silverline status``'s readers of the query's file-source log and of the ops metadata."""

from __future__ import annotations

import json

import pytest

from jobs.status.view import _taken_files, problems

pytestmark = pytest.mark.unit


class Store:
    def __init__(self, files: dict[str, list[str]]) -> None:
        self.files = files

    def names(self) -> list[str]:
        return sorted(self.files)

    def read(self, name: str) -> bytes:
        lines = [
            "v1",
            *(json.dumps({"path": f"file:///ops/bronze/d%3D1/{p}", "batchId": 0}) for p in self.files[name]),
        ]
        return "\n".join(lines).encode()


def test_the_source_log_is_read_from_its_newest_compact_file_on() -> None:
    store = Store(
        {
            "8": ["gone-by-compaction.jsonl"],
            "9.compact": ["a.jsonl", "b.jsonl"],
            "10": ["c.jsonl"],
            "11": ["d e.jsonl"],
            "11.tmp": ["not-a-log.jsonl"],
        }
    )
    assert _taken_files(store) == {"a.jsonl", "b.jsonl", "c.jsonl", "d e.jsonl"}


def test_an_unreadable_part_and_an_unbalanced_batch_are_problems_and_nothing_else_is() -> None:
    lease = {"owner": "o", "role": "stream", "renewed_s_ago": 2.0, "alive": True}
    healthy = {"queue": {"visible": 3}, "dlq": {"visible": 0}, "last_batch": {"balanced": True, "batch_id": 4},
               "events": {"parked": 0}, "lease": lease}  # fmt: skip
    assert problems(healthy) == []
    broken = {**healthy, "bronze": {"error": "NoSuchBucket: gone"}, "last_batch": {"balanced": False, "batch_id": 4},
              "dlq": {"visible": 2}, "lease": {**lease, "alive": False}}  # fmt: skip
    assert problems(broken) == [
        "bronze: NoSuchBucket: gone",
        "the dead-letter queue holds 2 messages (silverline dlq inspect)",
        "batch 4 did not balance: its outcome counts do not add up (R7)",
        "the writer lease of o expired 2.0 s ago",
    ]

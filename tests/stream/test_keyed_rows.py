"""Judged rows the driver reads by name: a KeyedRow answers as pyspark's Row does."""

from __future__ import annotations

import pickle

import pytest
from pyspark.sql import Row

from jobs.stream.ledger import KeyedRow, keyed_rows

pytestmark = pytest.mark.unit


def collected(*values: tuple[object, ...]) -> list[Row]:
    """Rows as ``collect()`` builds them: positional values, one shared field list."""
    fields = ["bucket", "key", "tenant", "directive", "key"]  # a duplicated name, as a join can give
    rows = []
    for row_values in values:
        row = Row(*row_values)
        row.__fields__ = fields
        rows.append(row)
    return rows


def test_a_keyed_row_reads_like_the_row_it_came_from() -> None:
    [row, other] = collected(("b", "k1", "acme", None, "dup"), ("b", "k2", "globex", "x", "dup2"))
    keyed, keyed_other = keyed_rows([row, other])

    assert isinstance(keyed, KeyedRow) and isinstance(keyed, Row)
    assert keyed == row and tuple(keyed) == tuple(row)
    assert [keyed[name] for name in ("bucket", "key", "tenant", "directive")] == ["b", "k1", "acme", None]
    assert keyed["key"] == row["key"] == "k1"  # the first of a duplicated name, as Row finds it
    assert (keyed.tenant, keyed_other.tenant, keyed_other.directive) == ("acme", "globex", "x")
    assert keyed[0] == "b" and keyed[1:3] == ("k1", "acme")
    assert keyed.asDict() == row.asDict()
    assert getattr(keyed, "attempts", "missing") == "missing"
    with pytest.raises(AttributeError):
        _ = keyed.attempts
    with pytest.raises(ValueError):  # Row's own error for an unknown name
        _ = keyed["attempts"]
    assert pickle.loads(pickle.dumps(keyed)) == row
    # A row rebuilt from its fields (as the planner does for a removal's current version).
    rebuilt = type(keyed)(**{**keyed.asDict(), "tenant": "initech"})
    assert (rebuilt["tenant"], rebuilt.tenant, rebuilt["bucket"]) == ("initech", "initech", "b")
    assert keyed_rows([]) == []

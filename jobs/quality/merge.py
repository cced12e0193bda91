"""One dataset's validation results of a micro-batch, merged from the Spark tasks that validated it.

Each task validates its share of a batch's rows (one great-expectations call per
dataset and suite, :func:`jobs.quality.validate.validate_rows`); the row verdicts
are final there, since a row-level expectation judges each row alone. What a
batch records per dataset (the ``validation_results`` rows and GE's result JSON)
is put together here from the tasks' results:

- counts (rows checked and failed, per tenant and in all) are summed;
- a row-level expectation's success is recomputed from the summed counts with its
  ``mostly`` (GE's rule: the share of non-null values that pass), so it is the
  success GE gives the whole dataset;
- a table-level expectation (row count, column statistics) cannot be recomputed
  from parts: it succeeds when it succeeded on every task's share, and its
  ``observed_value`` is the first share's. A micro-batch is an arbitrary cut of the
  stream, so such an expectation judges a share of arrivals either way;
- GE's ``partial_unexpected_list`` and ``partial_unexpected_counts`` are merged and
  cut to GE's 20; ``partial_unexpected_index_list`` (row numbers of a task's own
  frame) is dropped.
"""

from __future__ import annotations

import copy
from collections import Counter, defaultdict
from collections.abc import Sequence
from typing import Any

from jobs.quality import verdicts as v
from jobs.quality.verdicts import ExpectationResult, RowVerdicts, TenantCounts

PARTIAL_LIMIT = 20
_BUILT_IN = {v.CONVERSION_TYPE, v.PRIMARY_KEY_NOT_NULL, v.PRIMARY_KEY_UNIQUE, v.ALL_EXPECTATIONS_TYPE}


def merge_verdicts(parts: Sequence[RowVerdicts]) -> list[RowVerdicts]:
    """One :class:`RowVerdicts` per (dataset, suite): the tasks' partial results merged.

    Args:
        parts: The tasks' verdicts (their per-row ``failed`` lists are not needed here).

    Returns:
        The merged verdicts, in order of first appearance; ``failed`` is empty.
    """
    groups: dict[tuple[str, str], list[RowVerdicts]] = defaultdict(list)
    for part in parts:
        groups[(part.dataset, part.suite)].append(part)
    merged = []
    for (dataset, suite), group in groups.items():
        if len(group) == 1:
            merged.append(group[0])
            continue
        result_json = _merge_json([g.result_json for g in group if g.result_json])
        row_level = frozenset().union(*(g.row_level for g in group))
        merged.append(
            RowVerdicts(
                dataset=dataset,
                suite=suite,
                failed=[],
                results=_merge_results(group, row_level, _successes(result_json)),
                result_json=result_json,
                seconds=sum(g.seconds for g in group),
                row_level=row_level,
            )
        )
    return merged


def _successes(result_json: dict[str, Any]) -> list[bool]:
    """The merged success of each GE result, in suite order."""
    return [bool(r.get("success")) for r in result_json.get("results", [])]


def _merge_results(
    group: Sequence[RowVerdicts], row_level: frozenset[str], ge_success: list[bool]
) -> list[ExpectationResult]:
    """Every expectation's counts summed over the parts (see the module docstring for success)."""
    # Rows each part checked per tenant: the summary ("*") of every call covers all its rows.
    checked: list[dict[str, int]] = []
    for part in group:
        summary = next(r for r in part.results if r.expectation == v.ALL_EXPECTATIONS)
        checked.append({t: c.rows_checked for t, c in summary.by_tenant.items()})
    total_checked = Counter[str]()
    for each in checked:
        total_checked.update(each)
    order: dict[str, list[tuple[int, ExpectationResult]]] = {}
    for index, part in enumerate(group):
        for result in part.results:
            order.setdefault(result.expectation, []).append((index, result))
    ge_index = 0
    merged = []
    for ident, found in order.items():
        first = found[0][1]
        failed = Counter[str]()
        table_ok: dict[str, bool] = {}
        for _, result in found:
            for tenant, counts in result.by_tenant.items():
                failed[tenant] += counts.rows_failed
                table_ok[tenant] = table_ok.get(tenant, True) and counts.success
        mostly = _mostly(first.kwargs)
        by_tenant = {}
        for tenant in sorted(total_checked):
            rows, bad = total_checked[tenant], failed[tenant]
            if first.expectation_type in _BUILT_IN:
                ok = bad == 0
            elif ident in row_level:
                ok = bad == 0 if mostly is None else rows == 0 or (rows - bad) / rows >= mostly
            elif tenant in table_ok:
                ok = table_ok[tenant]
            else:
                continue  # a table-level expectation never ran on this tenant's rows
            by_tenant[tenant] = TenantCounts(rows, bad, ok)
        rows_failed = sum(r.rows_failed for _, r in found)
        if first.expectation_type in _BUILT_IN:
            success = rows_failed == 0
        else:
            success = ge_success[ge_index] if ge_index < len(ge_success) else all(r.success for _, r in found)
            ge_index += 1
        merged.append(
            ExpectationResult(
                expectation=ident,
                expectation_type=first.expectation_type,
                column=first.column,
                kwargs=first.kwargs,
                rows_checked=sum(total_checked.values()),
                rows_failed=rows_failed,
                success=success,
                severity=first.severity,
                by_tenant=by_tenant,
            )
        )
    last = [r for r in merged if r.expectation == v.ALL_EXPECTATIONS]
    return [r for r in merged if r.expectation != v.ALL_EXPECTATIONS] + last


def _mostly(kwargs_json: str) -> float | None:
    import json

    value = json.loads(kwargs_json or "{}").get("mostly")
    return None if value is None else float(value)


def _percent(part: int, whole: int) -> float | None:
    return None if whole == 0 else part / whole * 100.0


def _merge_json(parts: Sequence[dict[str, Any]]) -> dict[str, Any]:
    """GE's validation result JSON of the parts as one (counts summed, successes recomputed)."""
    if not parts:
        return {}
    merged = copy.deepcopy(parts[0])
    for index, result in enumerate(merged.get("results", [])):
        shares = [p["results"][index] for p in parts]
        result["success"] = _merge_result(result, shares)
    results = merged.get("results", [])
    good = sum(bool(r.get("success")) for r in results)
    merged["success"] = good == len(results)
    merged["statistics"] = {
        "evaluated_expectations": len(results),
        "successful_expectations": good,
        "unsuccessful_expectations": len(results) - good,
        "success_percent": _percent(good, len(results)),
    }
    return merged


def _merge_result(result: dict[str, Any], shares: Sequence[dict[str, Any]]) -> bool:
    """Merge the shares of one expectation's result into ``result``; returns its success."""
    values = [s.get("result") or {} for s in shares]
    if not all("unexpected_count" in each for each in values):  # table-level: every share must pass
        return all(bool(s.get("success")) for s in shares)
    elements = sum(int(each.get("element_count") or 0) for each in values)
    missing = sum(int(each.get("missing_count") or 0) for each in values)
    unexpected = sum(int(each.get("unexpected_count") or 0) for each in values)
    present = elements - missing
    merged = result.setdefault("result", {})
    merged.update(
        element_count=elements,
        missing_count=missing,
        missing_percent=_percent(missing, elements),
        unexpected_count=unexpected,
        unexpected_percent=_percent(unexpected, present),
        unexpected_percent_total=_percent(unexpected, elements),
        unexpected_percent_nonmissing=_percent(unexpected, present),
    )
    merged.pop("partial_unexpected_index_list", None)
    if any("partial_unexpected_list" in each for each in values):
        listed = [x for each in values for x in each.get("partial_unexpected_list") or []]
        merged["partial_unexpected_list"] = listed[:PARTIAL_LIMIT]
    if any("partial_unexpected_counts" in each for each in values):
        tally = Counter[Any]()
        for each in values:
            for item in each.get("partial_unexpected_counts") or []:
                tally[_hashable(item.get("value"))] += int(item.get("count") or 0)
        ranked = sorted(tally.items(), key=lambda kv: (-kv[1], str(kv[0])))[:PARTIAL_LIMIT]
        merged["partial_unexpected_counts"] = [{"value": value, "count": count} for value, count in ranked]
    mostly = (result.get("expectation_config") or {}).get("kwargs", {}).get("mostly")
    if mostly is None:
        return unexpected == 0
    return present == 0 or (present - unexpected) / present >= float(mostly)


def _hashable(value: Any) -> Any:
    return tuple(value) if isinstance(value, list) else value

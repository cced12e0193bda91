"""Validate one dataset's rows of a micro-batch with great-expectations, once for all tenants.

:func:`validate_rows` runs the suite ONCE over a table that concatenates every
tenant's rows of one dataset (cost grows with datasets, not tenants or files),
through GE's pandas engine in one ephemeral Data Context per process (created on
first use, or by :func:`warm_up`; importing GE and creating it takes seconds).
``result_format`` COMPLETE gives the index of every failing row under a plain
``RangeIndex``, so row ``i`` of the table is row ``i`` of the verdicts.

Semantics (GE's own, checked in the tests): a null value is not a failure of
range, set or regex expectations, only of not-null ones. A value that failed type
conversion is null in its column and is listed in ``_conversion_errors``; its row
carries ``conversion(<column>)`` (and fails not-null expectations as any null).
A row fails a column map expectation when its value violates the condition,
whatever ``mostly`` says (``mostly`` only decides the expectation's ``success``), so
one tenant's rows never change another tenant's verdicts. Only ``critical``
expectations (GE's default severity) put a row into ``failed``; ``warning`` and
``info`` ones are counted in the results only. An expectation that raises fails
every row it applies to (nothing unchecked is published) and is logged.
"""

from __future__ import annotations

import functools
import json
import logging
import threading
import time
from collections.abc import Sequence
from decimal import Decimal
from typing import TYPE_CHECKING, Any

import numpy as np
import pandas as pd  # type: ignore[import-untyped, unused-ignore]
import pyarrow as pa  # type: ignore[import-untyped, unused-ignore]

from jobs.quality import verdicts as v
from jobs.quality.suites import RUNTIME_KWARGS, columns_of, expectation_id
from jobs.quality.verdicts import ExpectationResult, RowVerdicts, TenantIndex

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite

log = logging.getLogger(__name__)

RESULT_FORMAT: dict[str, Any] = {
    "result_format": "COMPLETE",
    "partial_unexpected_count": 20,
    "return_unexpected_index_query": False,
}
# Per-row lists dropped from the stored result JSON (they can hold every row of the batch).
ROW_LISTS = ("unexpected_list", "unexpected_index_list", "unexpected_index_query")
_INT_DTYPES = {
    pa.int8(): pd.Int8Dtype(),
    pa.int16(): pd.Int16Dtype(),
    pa.int32(): pd.Int32Dtype(),
    pa.int64(): pd.Int64Dtype(),
}
# Decimal digits a float64 holds exactly (DBL_DIG).
FLOAT_EXACT_DIGITS = 15
_lock = threading.Lock()


def ephemeral_context(data_docs_sites: dict[str, Any] | None = None) -> Any:
    """A GE context that keeps everything in memory: no analytics, no progress bars.

    Args:
        data_docs_sites: Data Docs sites to configure (:mod:`jobs.quality.docs`).
    """
    import great_expectations as gx
    from great_expectations.data_context.types.base import (
        DataContextConfig,
        InMemoryStoreBackendDefaults,
        ProgressBarsConfig,
    )

    config = DataContextConfig(
        store_backend_defaults=InMemoryStoreBackendDefaults(),
        analytics_enabled=False,
        progress_bars=ProgressBarsConfig(globally=False),
        data_docs_sites=data_docs_sites,  # None: the store defaults' (none)
    )
    return gx.get_context(mode="ephemeral", project_config=config)


@functools.cache
def _batch_definition() -> Any:
    """The whole-dataframe batch definition of this process's ephemeral GE context."""
    context = ephemeral_context()
    asset = context.data_sources.add_pandas(name="silverline").add_dataframe_asset(name="rows")
    return asset.add_batch_definition_whole_dataframe("batch")


def warm_up() -> None:
    """Import great-expectations and create the process's context now (takes seconds)."""
    with _lock:
        _batch_definition()


def run_suite(frame: pd.DataFrame, suite: ExpectationSuite) -> Any:
    """Run ``suite`` over ``frame`` (the one GE call per :func:`validate_rows`).

    Args:
        frame: The rows, with a ``RangeIndex``.
        suite: The suite.

    Returns:
        GE's ``ExpectationSuiteValidationResult``.
    """
    with _lock:  # one context per process; GE's pandas engine is bound by the GIL anyway
        batch = _batch_definition().get_batch(batch_parameters={"dataframe": frame})
        return batch.validate(suite, result_format=RESULT_FORMAT)


def _is_row_level(expectation: Any) -> bool:
    from great_expectations.expectations.expectation import (
        ColumnMapExpectation,
        ColumnPairMapExpectation,
        MulticolumnMapExpectation,
    )

    return isinstance(
        expectation, ColumnMapExpectation | ColumnPairMapExpectation | MulticolumnMapExpectation
    )


def decimal_as_float(column: pa.ChunkedArray | pa.Array) -> pa.Array:
    """A decimal column of precision <= 15 as float64, each value the double nearest to it.

    Such a value and a bound written in the suite (GE keeps bounds as floats) compare as the
    decimals they spell (``0.10 >= 0.1`` holds), and numpy does it without a Python object per
    value. Arrow's own cast is not correctly rounded, so the unscaled integers are divided here.

    Args:
        column: A ``decimal128(p, s)`` column with ``p <= 15``.

    Returns:
        The float64 array (nulls kept).
    """
    array = column.combine_chunks() if isinstance(column, pa.ChunkedArray) else column
    if not pa.types.is_decimal128(array.type) or array.type.precision > FLOAT_EXACT_DIGITS:
        raise ValueError(f"needs decimal128 with precision <= {FLOAT_EXACT_DIGITS}, got {array.type}")
    words = np.frombuffer(array.buffers()[1], dtype=np.int64)  # little-endian 128-bit: low word first
    unscaled = words[2 * array.offset : 2 * (array.offset + len(array)) : 2]
    values = unscaled.astype(np.float64) / (10.0**array.type.scale)  # both exact: one rounding
    mask = array.is_null().to_numpy(zero_copy_only=False) if array.null_count else None
    return pa.array(values, pa.float64(), mask=mask)


def frame_for(table: pa.Table, suite: ExpectationSuite) -> pd.DataFrame:
    """The pandas frame GE validates.

    The columns the suite names (every declared one when a table-level expectation names
    none); integers as nullable integers (no rounding through float), decimals of up to 15
    digits as floats (:func:`decimal_as_float`), wider decimals as ``Decimal`` objects.

    Args:
        table: The validated table.
        suite: The suite.

    Returns:
        The frame, indexed ``0..n-1``.

    Raises:
        ValueError: The suite names a column the table does not have.
    """
    named = [columns_of(e.configuration.kwargs) for e in suite.expectations]
    if all(named):
        wanted = sorted({c for names in named for c in names})
    else:
        wanted = [c for c in table.column_names if not c.startswith("_")]
    missing = [c for c in wanted if c not in table.column_names]
    if missing:
        raise ValueError(f"suite {suite.name!r} names columns the table does not have: {', '.join(missing)}")
    selected = table.select(wanted)
    for index, field in enumerate(selected.schema):
        if pa.types.is_decimal128(field.type) and field.type.precision <= FLOAT_EXACT_DIGITS:
            selected = selected.set_column(index, field.name, decimal_as_float(selected[field.name]))
    frame = selected.to_pandas(types_mapper=_INT_DTYPES.get)
    frame.index = pd.RangeIndex(table.num_rows)
    return frame


def _kwargs_json(kwargs: dict[str, Any]) -> str:
    clean = {k: val for k, val in kwargs.items() if k not in RUNTIME_KWARGS}
    return json.dumps(clean, sort_keys=True, default=str)


def _expectation_outcome(
    outcome: Any, by_id: dict[str, Any], tenants: TenantIndex
) -> tuple[ExpectationResult, np.ndarray | None]:
    """One GE result as an :class:`ExpectationResult`, and its failed rows (None: table-level)."""
    config = outcome.expectation_config
    ident = expectation_id(config.type, config.kwargs, config.meta)
    expectation = by_id[ident]
    columns = columns_of(config.kwargs)
    rows: np.ndarray | None = None
    if _is_row_level(expectation):
        found = (outcome.result or {}).get("unexpected_index_list")
        if found is None:  # it raised: GE reports no rows
            problem = _exception_message(outcome.exception_info) or "no row indices in its result"
            log.error("expectation %s of suite failed to run, every row fails it: %s", ident, problem)
            rows = np.arange(len(tenants.codes))
        else:
            rows = np.asarray(found, np.int64)
    mostly = config.kwargs.get("mostly")
    result = ExpectationResult(
        expectation=ident,
        expectation_type=config.type,
        column=",".join(columns) or None,
        kwargs=_kwargs_json(config.kwargs),
        rows_checked=len(tenants.codes),
        rows_failed=0 if rows is None else len(rows),
        success=bool(outcome.success),
        severity=str(getattr(config.severity, "value", config.severity)),
        by_tenant=tenants.breakdown(rows, success=bool(outcome.success), mostly=mostly),
    )
    return result, rows


def _exception_message(info: Any) -> str | None:
    """The message of an exception GE caught: at the top of ``exception_info`` or per metric."""
    if not isinstance(info, dict):
        return None
    if info.get("raised_exception"):
        return str(info.get("exception_message"))
    nested = [_exception_message(each) for each in info.values() if isinstance(each, dict)]
    return next((m for m in nested if m), None)


def _builtin_result(
    ident: str, kind: str, columns: Sequence[str], rows: np.ndarray, tenants: TenantIndex
) -> ExpectationResult:
    key = "column" if kind == v.CONVERSION_TYPE else "column_list"
    return ExpectationResult(
        expectation=ident,
        expectation_type=kind,
        column=",".join(columns) or None,
        kwargs=json.dumps({key: columns[0] if key == "column" else list(columns)} if columns else {}),
        rows_checked=len(tenants.codes),
        rows_failed=len(rows),
        success=len(rows) == 0,
        severity="critical",
        by_tenant=tenants.breakdown(rows),
    )


def _exact(value: Any) -> Any:
    """Decimals as strings (GE turns them into floats, slowly and lossily), recursively."""
    if isinstance(value, Decimal):
        return str(value)
    if isinstance(value, dict):
        return {k: _exact(item) for k, item in value.items()}
    if isinstance(value, list | tuple):
        return [_exact(item) for item in value]
    return value


def _trimmed_json(outcome: Any) -> dict[str, Any]:
    """GE's result as JSON-ready data, without the per-row lists."""
    for result in outcome.results:
        kept = {k: val for k, val in (result.result or {}).items() if k not in ROW_LISTS}
        result.result = _exact(kept)
    trimmed: dict[str, Any] = outcome.to_json_dict()
    return trimmed


def validate_rows(
    table: pa.Table, suite: ExpectationSuite | None, *, primary_key: Sequence[str], dataset: str
) -> RowVerdicts:
    """Validate every row of one dataset in a micro-batch, all tenants at once.

    Args:
        table: Declared columns (a value that failed conversion is null), ``_conversion_errors``
            (list of column names or null), lineage (``_source_key`` at least, with a key) and
            ``_tenant``.
        suite: The expectation suite (None: only conversion and key checks).
        primary_key: The contract's key columns.
        dataset: The dataset, for the results.

    Returns:
        The verdicts: per row what it failed, per expectation and tenant the counts.
    """
    started = time.perf_counter()
    tenants = TenantIndex(table)
    results: list[ExpectationResult] = []
    failures: list[tuple[str, np.ndarray]] = []
    row_level: set[str] = set()
    result_json: dict[str, Any] = {}
    if suite is not None and suite.expectations and table.num_rows:
        by_id = {
            expectation_id(e.configuration.type, e.configuration.kwargs, e.configuration.meta): e
            for e in suite.expectations
        }
        outcome = run_suite(frame_for(table, suite), suite)
        for each in outcome.results:
            result, rows = _expectation_outcome(each, by_id, tenants)
            results.append(result)
            if rows is not None:
                row_level.add(result.expectation)
            if rows is not None and result.severity == "critical":
                failures.append((result.expectation, rows))
        result_json = _trimmed_json(outcome)
    for column, rows in sorted(v.conversion_failures(table).items()):
        ident = v.conversion_id(column)
        results.append(_builtin_result(ident, v.CONVERSION_TYPE, [column], rows, tenants))
        failures.append((ident, rows))
    for ident, rows in v.primary_key_failures(table, primary_key).items():
        results.append(_builtin_result(ident, ident, list(primary_key), rows, tenants))
        failures.append((ident, rows))
    failed = v.row_lists(table.num_rows, failures)
    results.append(
        _builtin_result(v.ALL_EXPECTATIONS, v.ALL_EXPECTATIONS_TYPE, [], v.any_failure(failed), tenants)
    )
    return RowVerdicts(
        dataset=dataset,
        suite="" if suite is None else suite.name,
        failed=failed,
        results=results,
        result_json=result_json,
        seconds=time.perf_counter() - started,
        row_level=frozenset(row_level),
    )

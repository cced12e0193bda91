"""Validation results as ops-table rows and as GE result JSON files.

The ``validation_results`` ops table gets one row per tenant x expectation per
validation call (a dataset and suite in a micro-batch), including the built-in
checks (``conversion(<col>)``, ``primary_key_*``) and a ``*`` row per tenant whose
``rows_failed`` counts the rows that failed anything (the quarantined rows).
GE's own result JSON (without per-row lists) goes to
``<ops_root>quality/results/query=<id>/batch-<id>-<dataset>-<suite>.json``.
"""

from __future__ import annotations

import json
import logging
from datetime import datetime
from typing import NamedTuple, Protocol

from jobs.config import SilverlineConfig
from jobs.quality.verdicts import RowVerdicts

log = logging.getLogger(__name__)

TABLE_NAME = "validation_results"
VALIDATION_RESULTS_DDL = """
        batch_id BIGINT, query_id STRING, dataset STRING, suite STRING, tenant STRING, expectation STRING,
        expectation_type STRING, column_name STRING, kwargs STRING, rows_checked BIGINT, rows_failed BIGINT,
        success BOOLEAN, validated_at TIMESTAMP"""


class ValidationResultRow(NamedTuple):
    """One row of the ``validation_results`` ops table (fields in :data:`VALIDATION_RESULTS_DDL` order)."""

    batch_id: int
    query_id: str
    dataset: str
    suite: str
    tenant: str
    expectation: str
    expectation_type: str
    column_name: str | None
    kwargs: str
    rows_checked: int
    rows_failed: int
    success: bool
    validated_at: datetime


class FileStore(Protocol):
    """Anything that stores a whole file (``jobs.bridge.landing.open_store`` gives one)."""

    def write(self, name: str, data: bytes) -> str:
        """Store ``data`` under ``name``; returns the file's URI."""
        ...


def result_rows(
    verdicts: RowVerdicts, *, batch_id: int, query_id: str, validated_at: datetime
) -> list[ValidationResultRow]:
    """The ops-table rows of one validation call: one per tenant x expectation.

    Args:
        verdicts: What :func:`jobs.quality.validate.validate_rows` returned.
        batch_id: The micro-batch (negative for retry passes).
        query_id: The streaming query's id.
        validated_at: When (UTC).

    Returns:
        Rows ordered by tenant, then expectation as in ``verdicts.results``; a tuple each,
        usable with ``spark.createDataFrame(rows, VALIDATION_RESULTS_DDL)``.
    """
    tenants = sorted({t for r in verdicts.results for t in r.by_tenant})
    return [
        ValidationResultRow(
            batch_id=batch_id,
            query_id=query_id,
            dataset=verdicts.dataset,
            suite=verdicts.suite,
            tenant=tenant,
            expectation=result.expectation,
            expectation_type=result.expectation_type,
            column_name=result.column,
            kwargs=result.kwargs,
            rows_checked=counts.rows_checked,
            rows_failed=counts.rows_failed,
            success=counts.success,
            validated_at=validated_at,
        )
        for tenant in tenants
        for result in verdicts.results
        if (counts := result.by_tenant.get(tenant)) is not None
    ]


def results_uri(config: SilverlineConfig) -> str:
    """Directory of the GE result JSON files: ``<ops_root>quality/results/``."""
    return f"{config.ops_root}quality/results/"


def result_json_name(*, query_id: str, batch_id: int, dataset: str, suite: str) -> str:
    """The file name of one call's result JSON, relative to :func:`results_uri`.

    ``query=<id>/batch-<id>-<dataset>-<suite>.json`` with the batch id zero-padded to 20
    digits (names sort by batch); ``retry-<id>`` for retry passes (negative ids), like
    the batch metrics files.
    """
    kind = "retry" if batch_id < 0 else "batch"
    return f"query={query_id}/{kind}-{abs(batch_id):020d}-{dataset}-{suite or 'none'}.json"


def write_result_json(store: FileStore, verdicts: RowVerdicts, *, query_id: str, batch_id: int) -> str | None:
    """Write GE's result JSON of one validation call (a replayed batch overwrites its file).

    Args:
        store: A whole-file store at :func:`results_uri`.
        verdicts: The call's verdicts.
        query_id: The streaming query's id.
        batch_id: The micro-batch.

    Returns:
        The file's URI; None when there is nothing to write (no suite ran) or the write
        failed (logged: the ops table holds the counts).
    """
    if not verdicts.result_json:
        return None
    name = result_json_name(
        query_id=query_id, batch_id=batch_id, dataset=verdicts.dataset, suite=verdicts.suite
    )
    data = json.dumps(verdicts.result_json, sort_keys=True, default=str).encode("utf-8")
    try:
        return store.write(name, data)
    except Exception as exc:  # a lost copy must not fail the batch
        log.warning("could not write the validation result %s: %s", name, exc)
        return None

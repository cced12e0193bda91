"""Expectation suites: great-expectations 1.x suites stored as JSON in ``conf/expectations/``.

A suite file is what ``ExpectationSuite.to_json_dict()`` writes (and what GE keeps
in its filesystem store): ``{"name": ..., "expectations": [{"type": ..., "kwargs":
{...}, "meta": {...}, "severity": ...}, ...], "meta": {...}}``. Every expectation
is built here one by one, so that a bad one is a clear :class:`ConfigError` naming
the file (GE's own constructor logs and drops invalid expectations).

Each expectation gets a stable identifier (see :func:`expectation_id`) that names
it in row verdicts, quarantine tables and the ``validation_results`` ops table:
``<type>(<column>[,<column>...])`` (``<type>()`` for a table-level expectation),
or ``meta.id`` when the suite author sets one. Identifiers are unique in a suite.

great_expectations is imported lazily: importing it takes seconds.
"""

from __future__ import annotations

import json
import threading
from collections.abc import Iterable, Mapping
from pathlib import Path
from typing import TYPE_CHECKING, Any

from jobs.config import ConfigError
from jobs.contracts import DatasetContract

if TYPE_CHECKING:
    from great_expectations import ExpectationSuite

# kwargs that name columns of the table (column-, pair-, multicolumn- and table-level expectations).
COLUMN_KWARGS = ("column", "column_A", "column_B")
COLUMN_LIST_KWARGS = ("column_list", "column_set")
# Added by GE to the kwargs of every result; not part of an expectation's identity.
RUNTIME_KWARGS = ("batch_id",)
# What an expectation in a suite file may hold; GE's store also writes ids and rendered content,
# which belong to a Data Context and are dropped.
_EXPECTATION_KEYS = frozenset({"type", "kwargs", "meta", "notes", "description", "severity"})
_IGNORED_KEYS = frozenset({"id", "rendered_content", "expectation_context", "success_on_last_run"})

_cache: dict[tuple[Path, str], ExpectationSuite] = {}
_cache_lock = threading.Lock()


def expectations_dir(datasets_file: str | Path) -> Path:
    """Where the suites of a contracts file live: ``expectations/`` next to it.

    Args:
        datasets_file: The dataset contracts file (``stream.datasets_file``).

    Returns:
        The directory (e.g. ``conf/expectations`` for ``conf/datasets.yaml``).
    """
    return Path(datasets_file).parent / "expectations"


def columns_of(kwargs: Mapping[str, Any]) -> tuple[str, ...]:
    """The column names an expectation's kwargs refer to, in order.

    Args:
        kwargs: The expectation's kwargs.

    Returns:
        Names from ``column``, ``column_A``, ``column_B``, ``column_list`` and ``column_set``.
    """
    names = [str(kwargs[k]) for k in COLUMN_KWARGS if kwargs.get(k) is not None]
    for key in COLUMN_LIST_KWARGS:
        names += [str(c) for c in kwargs.get(key) or ()]
    return tuple(names)


def expectation_id(expectation_type: str, kwargs: Mapping[str, Any], meta: Mapping[str, Any] | None) -> str:
    """The identifier of an expectation in verdicts, quarantine tables and ops tables.

    Args:
        expectation_type: GE's snake-case type, e.g. ``expect_column_values_to_not_be_null``.
        kwargs: Its kwargs.
        meta: Its ``meta``; a string ``meta["id"]`` replaces the derived identifier.

    Returns:
        ``meta.id``, else ``<type>(<columns>)``, e.g.
        ``expect_column_values_to_not_be_null(order_id)``.
    """
    chosen = (meta or {}).get("id")
    if isinstance(chosen, str) and chosen:
        return chosen
    return f"{expectation_type}({','.join(columns_of(kwargs))})"


def suite_path(directory: str | Path, name: str) -> Path:
    """The file of suite ``name``: ``<directory>/<name>.json``."""
    return Path(directory) / f"{name}.json"


def load_suite(name: str, directory: str | Path) -> ExpectationSuite:
    """Load (once per process) the suite ``<directory>/<name>.json``.

    Args:
        name: The suite name (a contract's ``expectations``).
        directory: The suites directory (e.g. ``conf/expectations``).

    Returns:
        The suite (shared: do not modify it).

    Raises:
        ConfigError: The file is missing or unreadable, or an expectation is invalid;
            the message names the file and the problem.
    """
    key = (Path(directory).resolve(), name)
    with _cache_lock:
        if key not in _cache:
            _cache[key] = _read_suite(suite_path(key[0], name), name)
        return _cache[key]


def clear_cache() -> None:
    """Forget every loaded suite (the next :func:`load_suite` reads the file again)."""
    with _cache_lock:
        _cache.clear()


def _read_suite(path: Path, name: str) -> ExpectationSuite:
    import great_expectations as gx

    try:
        doc = json.loads(path.read_text(encoding="utf-8"))
    except FileNotFoundError as exc:
        raise ConfigError(f"expectation suite {name!r}: {path} does not exist") from exc
    except (OSError, ValueError) as exc:
        raise ConfigError(f"expectation suite {path}: not readable JSON: {exc}") from exc
    if not isinstance(doc, dict) or not isinstance(doc.get("expectations"), list):
        raise ConfigError(f"expectation suite {path}: expected an object with an 'expectations' list")
    if doc.get("name", name) != name:
        raise ConfigError(f"expectation suite {path}: its name {doc['name']!r} is not the file name {name!r}")
    built = [_build(path, index, raw) for index, raw in enumerate(doc["expectations"], start=1)]
    _check_unique_ids(path, built)
    meta = doc.get("meta")
    return gx.ExpectationSuite(
        name=name, expectations=built, meta=dict(meta) if isinstance(meta, dict) else None
    )


def _build(path: Path, index: int, raw: Any) -> Any:
    """One expectation object from its JSON form, or a ConfigError naming it."""
    from great_expectations.expectations.expectation_configuration import ExpectationConfiguration

    if not isinstance(raw, dict) or not isinstance(raw.get("type"), str):
        raise ConfigError(f"expectation suite {path}: expectation #{index} needs a 'type' and 'kwargs'")
    unknown = sorted(set(raw) - _EXPECTATION_KEYS - _IGNORED_KEYS)
    if unknown:
        raise ConfigError(
            f"expectation suite {path}: expectation #{index} ({raw['type']}): "
            f"unknown keys {', '.join(unknown)} (allowed: {', '.join(sorted(_EXPECTATION_KEYS))})"
        )
    fields = {k: v for k, v in raw.items() if k in _EXPECTATION_KEYS}
    try:
        return ExpectationConfiguration(**fields).to_domain_obj()
    except Exception as exc:  # GE raises pydantic, lookup and config errors alike
        problem = "; ".join(line.strip() for line in str(exc).splitlines() if line.strip())
        raise ConfigError(
            f"expectation suite {path}: expectation #{index} ({raw['type']}): {problem}"
        ) from exc


def _check_unique_ids(path: Path, expectations: Iterable[Any]) -> None:
    seen: set[str] = set()
    for expectation in expectations:
        config = expectation.configuration
        ident = expectation_id(config.type, config.kwargs, config.meta)
        if ident in seen:
            raise ConfigError(
                f"expectation suite {path}: two expectations are both {ident!r}; give one a distinct meta.id"
            )
        seen.add(ident)


def suite_columns(suite: ExpectationSuite) -> set[str]:
    """Every column name the suite's expectations refer to."""
    return {c for e in suite.expectations for c in columns_of(e.configuration.kwargs)}


def check_suites(
    contracts: Mapping[str, DatasetContract], directory: str | Path
) -> dict[str, ExpectationSuite]:
    """Check at startup that every suite the contracts name loads and fits its dataset.

    Args:
        contracts: Contracts by dataset (``jobs.contracts.load_contracts``).
        directory: The suites directory.

    Returns:
        The loaded suites by name.

    Raises:
        ConfigError: A suite (a contract's or a tenant override's) is missing or invalid, or
            names a column its dataset does not declare.
    """
    suites: dict[str, ExpectationSuite] = {}
    for dataset, contract in contracts.items():
        wanted: dict[str | None, str | None] = {None: contract.expectations}
        wanted.update({t: o.expectations for t, o in contract.tenants.items() if o.expectations})
        for tenant, name in wanted.items():
            if name is None:
                continue
            where = f"dataset {dataset!r}" + (f" (tenant {tenant!r})" if tenant else "")
            try:
                suite = suites[name] if name in suites else load_suite(name, directory)
            except ConfigError as exc:
                raise ConfigError(f"{where}: {exc}") from exc
            suites[name] = suite
            unknown = sorted(suite_columns(suite) - set(contract.column_names))
            if unknown:
                raise ConfigError(
                    f"{where}: expectation suite {suite_path(directory, name)} names columns the "
                    f"dataset does not declare: {', '.join(unknown)} "
                    f"(declared: {', '.join(contract.column_names)})"
                )
    return suites

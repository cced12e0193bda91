"""great-expectations Data Docs from the validation results the stream recorded.

Every validation call (a dataset and suite in a micro-batch) leaves GE's result JSON
under ``<ops_root>quality/results/`` (:mod:`jobs.quality.results`), on the local
disk or in S3. :func:`build_data_docs` reads them through the job's file store,
loads them into a throwaway in-memory GE context together with the suites from
``conf/expectations``, and lets GE's own ``SiteBuilder`` render the site: one page
per suite (``expectations/<suite>.html``) and one per validation call
(``validations/<suite>/<run>/<dataset>.html``).

GE's own index page draws its table with scripts from public CDNs, so it stays
empty on a machine without internet access (an EMR cluster in a private subnet, a
locked-down laptop). ``index.html`` is therefore a static page of its own that
links every suite and run page, with each run's status and counts; GE's index is
kept beside it as ``gx-index.html``.
"""

from __future__ import annotations

import html
import json
import logging
import re
from collections.abc import Sequence
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import TYPE_CHECKING, Any

if TYPE_CHECKING:
    from jobs.bridge.landing import FileStore

log = logging.getLogger(__name__)

SITE = "silverline"
# query=<id>/<batch|retry>-<20 digits>-<dataset>-<suite>.json (jobs.quality.results.result_json_name)
RESULT_NAME = re.compile(
    r"query=(?P<query>[^/]+)/(?P<kind>batch|retry)-(?P<batch>\d{20})-(?P<rest>.+)\.json$"
)
_GE_TIME = "%Y%m%dT%H%M%S.%fZ"


@dataclass(frozen=True)
class Run:
    """One recorded validation call, as the index lists it."""

    suite: str
    dataset: str
    query_id: str
    batch_id: int
    run_name: str
    run_time: datetime
    success: bool
    evaluated: int
    successful: int
    page: str  # relative to the site's root


@dataclass
class DocsReport:
    """What :func:`build_data_docs` built."""

    index: Path
    runs: list[Run] = field(default_factory=list)
    suites: list[str] = field(default_factory=list)
    skipped: list[str] = field(default_factory=list)  # files that are not readable GE results


def run_identity(name: str, result: dict[str, Any]) -> tuple[str, int, str, str, datetime] | None:
    """(query id, batch id, dataset, run name, run time) of one result file, or None if not ours.

    The run name says batch or retry pass and its id; the run time is GE's load time of the
    batch, so rebuilding the docs gives every page the same path.
    """
    match = RESULT_NAME.search(name)
    if match is None:
        return None
    suite = str(result.get("suite_name") or "")
    rest = match["rest"]
    dataset = rest[: -len(suite) - 1] if suite and rest.endswith(f"-{suite}") else rest.rsplit("-", 1)[0]
    batch = int(match["batch"]) * (-1 if match["kind"] == "retry" else 1)
    markers = (result.get("meta") or {}).get("batch_markers") or {}
    try:
        run_time = datetime.strptime(str(markers.get("ge_load_time")), _GE_TIME).replace(tzinfo=UTC)
    except ValueError:
        run_time = datetime.fromtimestamp(0, UTC)
    run_name = f"{match['kind']}-{abs(batch)}-query-{match['query'][:8]}"
    return match["query"], batch, dataset, run_name, run_time


def build_data_docs(
    store: FileStore, out: Path, *, suites_dir: Path | None = None, last: int | None = None
) -> DocsReport:
    """Render Data Docs for the recorded validation results into ``out``.

    Args:
        store: The results store (``open_file_store(results_uri(config), config)``).
        out: The site's directory (created; pages of an earlier build are overwritten).
        suites_dir: Where the suites live (``conf/expectations``), for the suite pages.
        last: Only the newest ``last`` runs of each suite (None: all).

    Returns:
        The report: the runs and suites rendered, the files skipped.
    """
    out = out.resolve()  # GE's site store wants an absolute directory
    loaded: list[tuple[Run, Any, Any]] = []
    report = DocsReport(index=out / "index.html")
    from great_expectations.core import ExpectationSuiteValidationResult
    from great_expectations.core.run_identifier import RunIdentifier
    from great_expectations.data_context.types.resource_identifiers import (
        ExpectationSuiteIdentifier,
        ValidationResultIdentifier,
    )

    for name in sorted(store.names()):
        if not name.endswith(".json"):
            continue
        try:
            data = json.loads(store.read(name))
            identity = run_identity(name, data)
            if identity is None:
                raise ValueError("not named like a silverline validation result")
            query_id, batch_id, dataset, run_name, run_time = identity
            result = ExpectationSuiteValidationResult(**data)
        except Exception as exc:  # one unreadable file is named, not fatal
            log.warning("skipping %s: %s", name, str(exc).splitlines()[0] if str(exc) else type(exc).__name__)
            report.skipped.append(name)
            continue
        run_id = RunIdentifier(run_name=run_name, run_time=run_time)
        result.meta["run_id"] = run_id
        key = ValidationResultIdentifier(ExpectationSuiteIdentifier(result.suite_name), run_id, dataset)
        stats = result.statistics or {}
        page = f"validations/{result.suite_name}/{run_name}/{run_time.strftime(_GE_TIME)}/{dataset}.html"
        run = Run(
            suite=result.suite_name,
            dataset=dataset,
            query_id=query_id,
            batch_id=batch_id,
            run_name=run_name,
            run_time=run_time,
            success=bool(result.success),
            evaluated=int(stats.get("evaluated_expectations") or 0),
            successful=int(stats.get("successful_expectations") or 0),
            page=page,
        )
        loaded.append((run, key, result))
    loaded = _newest(loaded, last)
    out.mkdir(parents=True, exist_ok=True)
    context = _context(out)
    report.suites = sorted({run.suite for run, _, _ in loaded})
    for suite in report.suites:
        _add_suite(context, suite, suites_dir)
    for run, key, result in loaded:
        context.validation_results_store.set(key, result)
        report.runs.append(run)
    if loaded:
        context.build_data_docs(site_names=[SITE])
        gx_index = out / "index.html"
        if gx_index.exists():
            gx_index.replace(out / "gx-index.html")
    report.index.write_text(index_html(report.runs, report.suites, suites_dir), encoding="utf-8")
    return report


def _newest(loaded: list[tuple[Run, Any, Any]], last: int | None) -> list[tuple[Run, Any, Any]]:
    """The newest ``last`` runs per suite, newest first."""
    ordered = sorted(loaded, key=lambda item: (item[0].run_time, item[0].batch_id), reverse=True)
    if last is None:
        return ordered
    kept: list[tuple[Run, Any, Any]] = []
    per_suite: dict[str, int] = {}
    for item in ordered:
        suite = item[0].suite
        if per_suite.get(suite, 0) < last:
            per_suite[suite] = per_suite.get(suite, 0) + 1
            kept.append(item)
    return kept


def _context(out: Path) -> Any:
    """An in-memory GE context whose one Data Docs site is ``out``."""
    from jobs.quality.validate import ephemeral_context

    site = {
        "class_name": "SiteBuilder",
        "show_how_to_buttons": False,
        "store_backend": {"class_name": "TupleFilesystemStoreBackend", "base_directory": str(out)},
        "site_index_builder": {"class_name": "DefaultSiteIndexBuilder"},
    }
    return ephemeral_context({SITE: site})


def _add_suite(context: Any, name: str, suites_dir: Path | None) -> None:
    """Add the suite ``name`` from ``suites_dir`` (for its page); a missing one only has no page."""
    if suites_dir is None or not (suites_dir / f"{name}.json").is_file():
        return
    from great_expectations.core import ExpectationSuite

    try:
        data = json.loads((suites_dir / f"{name}.json").read_text(encoding="utf-8"))
        context.suites.add(ExpectationSuite(**data))
    except Exception as exc:  # the runs still render; only the suite's own page is missing
        log.warning("suite %s has no page: %s", name, str(exc).splitlines()[0] if str(exc) else exc)


def counted(n: int, noun: str) -> str:
    """``1 suite``, ``3 suites``."""
    return f"{n} {noun}{'' if n == 1 else 's'}"


def index_html(runs: Sequence[Run], suites: Sequence[str], suites_dir: Path | None) -> str:
    """The site's static index: the suites, then every run, newest first (no scripts, no CDN)."""
    esc = html.escape
    suite_items = "\n".join(
        f'<li><a class="suite" href="expectations/{esc(s)}.html">{esc(s)}</a></li>'
        if suites_dir is not None and (suites_dir / f"{s}.json").is_file()
        else f'<li class="suite">{esc(s)}</li>'
        for s in suites
    )
    rows = "\n".join(
        '<tr class="run {status}"><td>{suite}</td><td>{dataset}</td>'
        '<td><a href="{page}">{run}</a></td><td>{time}</td><td>{status}</td>'
        "<td>{ok} of {n}</td><td>{query}</td></tr>".format(
            status="passed" if r.success else "failed",
            suite=esc(r.suite),
            dataset=esc(r.dataset),
            page=esc(r.page),
            run=esc(r.run_name),
            time=r.run_time.strftime("%Y-%m-%d %H:%M:%S UTC"),
            ok=r.successful,
            n=r.evaluated,
            query=esc(r.query_id),
        )
        for r in runs
    )
    failed = sum(1 for r in runs if not r.success)
    summary = f"{counted(len(runs), 'validation run')} of {counted(len(suites), 'suite')}; {failed} failed."
    summary = summary if runs else "No validation results yet."
    return f"""<!DOCTYPE html>
<html lang="en"><head><meta charset="utf-8"><title>silverline data quality</title>
<style>
body {{ font-family: sans-serif; margin: 2em; }} table {{ border-collapse: collapse; }}
td, th {{ border: 1px solid #ccc; padding: 0.3em 0.6em; text-align: left; }}
tr.failed td:nth-child(5) {{ color: #b00020; font-weight: bold; }}
tr.passed td:nth-child(5) {{ color: #1b5e20; }}
</style></head>
<body>
<h1>silverline data quality</h1>
<p id="summary">{summary}</p>
<h2>Expectation suites</h2>
<ul id="suites">
{suite_items}
</ul>
<h2>Validation runs</h2>
<table id="runs">
<thead><tr><th>suite</th><th>dataset</th><th>run</th><th>validated</th><th>status</th>
<th>expectations passed</th><th>query</th></tr></thead>
<tbody>
{rows}
</tbody>
</table>
<p>Pages rendered by great-expectations' Data Docs; its own index is <a href="gx-index.html">gx-index.html</a>
(it loads its scripts from public CDNs).</p>
</body></html>
"""

"""``silverline quality``: check expectation suites, and report what validation found."""

from __future__ import annotations

import argparse
from typing import Any

from jobs.cliargs import add_command, add_config_arguments, config_from_args

_DESCRIPTION = """\
Data quality of the silver tables. Every micro-batch validates each dataset's rows
with the dataset's great-expectations suite (conf/expectations/<suite>.json), the
type conversion of every value and the primary key; rows that fail go to the
tenant's quarantine table, counts go to the validation_results ops table.
"""

_REPORT_DESCRIPTION = """\
Print, from the validation_results ops table: per tenant and dataset the rows
checked, the rows that failed anything (quarantined) and the pass rate; then the
expectations with the most failed rows, each with up to three example rows from
the tenants' quarantine tables. Reads the Iceberg tables directly from their
newest metadata (pyiceberg, no Spark, no catalog), in local or s3:// lakes.
"""

_REPORT_EPILOG = """\
examples:
  silverline quality report --config conf/local.yaml
  silverline quality report --config conf/local.yaml --tenant acme --dataset orders --top 10

exit codes: 0 report printed (or no results yet); 2 bad arguments or configuration.
"""

_DOCS_DESCRIPTION = """\
Build great-expectations Data Docs (HTML) from the validation results the stream
recorded under <ops_root>quality/results/ (local or s3:// ops roots): a page per
expectation suite and a page per validation run (a dataset's suite in one
micro-batch or retry pass), rendered by great-expectations. OUT/index.html lists
the suites and every run, newest first, with its status; it needs no network.
"""

_DOCS_EPILOG = """\
examples:
  silverline quality docs --config conf/local.yaml --out quality-docs
  silverline quality docs --config conf/emr.yaml --out /tmp/docs --last 50

exit codes: 0 docs built (or no results yet); 1 a result file could not be read
(the others are still rendered); 2 bad arguments or configuration.
"""

_CHECK_DESCRIPTION = """\
Load every expectation suite the dataset contracts name (tenant overrides too) and
check that it is valid great-expectations JSON naming only declared columns, as
the streaming job does at startup.
"""

_CHECK_EPILOG = """\
example:
  silverline quality check --config conf/local.yaml

exit codes: 0 every suite loads; 2 a suite or the configuration is invalid.
"""


def add_parser(subparsers: Any) -> None:
    """Register ``quality`` and its ``report`` and ``check`` subcommands.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    parser = add_command(
        subparsers,
        "quality",
        summary="check expectation suites; report validation results",
        description=_DESCRIPTION,
    )
    commands = parser.add_subparsers(dest="quality_command", metavar="COMMAND", required=True)
    report = add_command(
        commands,
        "report",
        summary="pass rates per tenant and dataset, top failing expectations with examples",
        description=_REPORT_DESCRIPTION,
        epilog=_REPORT_EPILOG,
    )
    add_config_arguments(report, queue_flags=False)
    report.add_argument("--tenant", metavar="T", help="only this tenant")
    report.add_argument("--dataset", metavar="D", help="only this dataset")
    report.add_argument(
        "--top", metavar="N", type=_count, default=5, help="failing expectations to show (default: 5)"
    )
    report.set_defaults(func=run_report)
    docs = add_command(
        commands,
        "docs",
        summary="great-expectations Data Docs (HTML) from the recorded validation results",
        description=_DOCS_DESCRIPTION,
        epilog=_DOCS_EPILOG,
    )
    add_config_arguments(docs, queue_flags=False)
    docs.add_argument("--out", metavar="DIR", required=True, help="the site's directory (created)")
    docs.add_argument(
        "--last", metavar="N", type=_positive, default=None, help="only the newest N runs of each suite"
    )
    docs.set_defaults(func=run_docs)
    check = add_command(
        commands,
        "check",
        summary="validate the expectation suites",
        description=_CHECK_DESCRIPTION,
        epilog=_CHECK_EPILOG,
    )
    add_config_arguments(check, queue_flags=False)
    check.set_defaults(func=run_check)


def _count(text: str) -> int:
    value = int(text)
    if value < 0:
        raise argparse.ArgumentTypeError("must be 0 or more")
    return value


def _positive(text: str) -> int:
    value = int(text)
    if value < 1:
        raise argparse.ArgumentTypeError("must be 1 or more")
    return value


def run_docs(args: argparse.Namespace) -> int:
    """Entry of ``silverline quality docs``.

    Args:
        args: Parsed arguments.

    Returns:
        The exit code.
    """
    from pathlib import Path

    from jobs.bridge.landing import open_file_store
    from jobs.quality.docs import build_data_docs, counted
    from jobs.quality.results import results_uri
    from jobs.quality.suites import expectations_dir

    config = config_from_args(args)
    uri = results_uri(config)
    out = Path(args.out)
    report = build_data_docs(
        open_file_store(uri, config),
        out,
        suites_dir=expectations_dir(config.stream.datasets_file),
        last=args.last,
    )
    if not report.runs:
        print(f"No validation results yet in {uri}; wrote an empty index: {report.index}")
    else:
        failed = sum(1 for run in report.runs if not run.success)
        print(
            f"Data Docs: {counted(len(report.runs), 'validation run')} of "
            f"{counted(len(report.suites), 'suite')} ({failed} failed) -> {report.index}"
        )
    for name in report.skipped:
        print(f"skipped (not a readable validation result): {name}")
    return 1 if report.skipped else 0


def run_report(args: argparse.Namespace) -> int:
    """Entry of ``silverline quality report``.

    Args:
        args: Parsed arguments.

    Returns:
        The exit code.
    """
    from rich.console import Console

    from jobs.quality.report import (
        examples,
        read_results,
        render,
        results_location,
        tenant_summaries,
        top_failures,
    )

    config = config_from_args(args)
    table = results_location(config)
    console = Console()
    results = read_results(table, config, tenant=args.tenant, dataset=args.dataset)
    if results is None or results.num_rows == 0:
        scope = " ".join(f"{k} {v!r}" for k, v in (("tenant", args.tenant), ("dataset", args.dataset)) if v)
        console.print(
            f"No validation results yet{' for ' + scope if scope else ''} in {table}", highlight=False
        )
        return 0
    failures = top_failures(results, args.top)
    found = {(f.dataset, f.expectation): examples(config, f) for f in failures}
    render(console, tenant_summaries(results), failures, found)
    return 0


def run_check(args: argparse.Namespace) -> int:
    """Entry of ``silverline quality check``.

    Args:
        args: Parsed arguments.

    Returns:
        The exit code (a ConfigError becomes 2 in the entry point).
    """
    from jobs.contracts import load_contracts
    from jobs.quality.suites import check_suites, expectations_dir

    config = config_from_args(args)
    contracts = load_contracts(config.stream.datasets_file)
    directory = expectations_dir(config.stream.datasets_file)
    suites = check_suites(contracts, directory)
    names = ", ".join(sorted(suites)) or "none"
    print(f"{len(suites)} expectation suite(s) in {directory} load and fit their datasets: {names}")
    return 0

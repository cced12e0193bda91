"""The demo's terminal output: progress bars, the summary table, the query snippet (rich)."""

from __future__ import annotations

import sys
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any

from rich.console import Console
from rich.markup import escape
from rich.progress import BarColumn, MofNCompleteColumn, Progress, TextColumn, TimeElapsedColumn
from rich.table import Table

if TYPE_CHECKING:
    from jobs.config import SilverlineConfig
    from jobs.demo.report import Conservation, TableActivity
    from jobs.simulate import GroundTruth, Verification

_SNIPPET = """\
Query the tables{kept}:
  # pyiceberg, no Spark needed
  from pyiceberg.table import StaticTable
  table = StaticTable.from_metadata("{metadata}")
  print(table.scan().to_arrow().to_pandas())

  # Spark SQL through silverline's session factory
  from jobs.config import load_config
  from jobs.session import build_spark_session
  spark = build_spark_session(load_config("{config}", overrides={{"lake": {{"root": "{lake}"}}}}))
  spark.sql("SELECT * FROM {table}").show()"""


class DemoConsole:
    """Progress on stderr, results on stdout."""

    def __init__(self) -> None:
        """Create the consoles (wide enough for the summary table when not on a terminal)."""
        self.out = Console(highlight=False, width=None if sys.stdout.isatty() else 200)
        self.err = Console(stderr=True, highlight=False, width=None if sys.stderr.isatty() else 200)
        self.lake: Path | None = None

    def heading(self, spec: Any, lake: Path, endpoint: str, mode: str) -> None:
        """What is about to happen."""
        self.lake = lake
        how = "through moto's S3 API" if mode == "s3-api" else "into the local lake"
        self.out.print(
            f"[bold]silverline demo[/bold]: {spec.tenants} tenants, {spec.objects} uploads {how}, "
            f"bucket {spec.bucket} (seed {spec.seed})\n  lake {escape(str(lake))}\n"
            f"  local AWS APIs (moto) at {endpoint}"
        )

    def batch(self, counts: Any) -> None:
        """One line per micro-batch (and retry pass)."""
        kind = "retry pass" if counts.batch_id < 0 else f"batch {counts.batch_id}"
        self.err.print(f"  {kind}: {counts.summary()}", markup=False)

    def note(self, text: str) -> None:
        """A line of information."""
        self.out.print(text, markup=False)

    def error(self, text: str) -> None:
        """A problem, on stderr."""
        self.err.print(f"[bold red]silverline demo:[/bold red] {escape(text)}")

    @contextmanager
    def progress(self, label: str, total: int) -> Iterator[Callable[[int], None]]:
        """A progress bar; yields ``advance(completed)``; completes the bar on exit."""
        columns = (TextColumn("{task.description}"), BarColumn(), MofNCompleteColumn(), TimeElapsedColumn())
        with Progress(*columns, console=self.err, disable=not sys.stderr.isatty()) as bar:
            task = bar.add_task(label, total=total)
            yield lambda completed: bar.update(task, completed=min(completed, total))
            bar.update(task, completed=total)
        if not sys.stderr.isatty():
            self.err.print(f"{label}: done")

    def summary(
        self,
        verification: Verification,
        activity: dict[tuple[str, str], TableActivity],
        check: Conservation,
        truth: GroundTruth,
        config: SilverlineConfig,
        seconds: float,
    ) -> None:
        """The per-table result, the conservation check and a query snippet."""
        self.out.print(self._table(verification, activity, truth))
        injected = truth.injected
        self.out.print(
            f"injected: {injected.duplicates} duplicate, {injected.reordered} reordered, {injected.delayed} "
            f"delayed, {injected.malformed} malformed messages; {injected.overwrites} overwrites, "
            f"{injected.deletes} deletes, {injected.bad_files} bad files"
        )
        for line in check.lines():
            self.out.print(line, markup=False)
        ok = verification.ok and check.ok
        verdict = "[bold green]VERIFIED[/bold green]" if ok else "[bold red]FAILED[/bold red]"
        self.out.print(
            f"{verdict}: {sum(t.ok for t in verification.tables)} of {len(verification.tables)} tables match "
            f"the ground truth; conservation {'holds' if check.ok else 'broken'} ({seconds:.0f} s)"
        )
        if not verification.ok:
            self.out.print(verification.summary(), markup=False)

    def _table(
        self, verification: Verification, activity: dict[tuple[str, str], TableActivity], truth: GroundTruth
    ) -> Table:
        where = f" (locations under {escape(str(self.lake))})" if self.lake else ""
        table = Table(title=f"silver tables{where}", title_justify="left")
        headers = ("tenant", "dataset", "objects", "rows", "files read", "duplicates", "stale", "deleted",
                   "quarantined", "bad rows", "snapshots", "check", "location")  # fmt: skip
        texts = ("tenant", "dataset", "location")
        for header in headers:
            table.add_column(header, justify="left" if header in texts else "right")
        for result in verification.tables:
            act = activity.get((result.tenant, result.dataset))
            outcomes = act.outcomes if act else {}
            table.add_row(
                result.tenant,
                result.dataset,
                str(len(truth.live_keys(result.tenant, result.dataset))),
                str(result.actual_rows),
                str(act.files if act else 0),
                str(outcomes.get("duplicate", 0)),
                str(outcomes.get("stale", 0)),
                str(act.deleted if act else 0),
                str(outcomes.get("quarantined", 0)),
                str(result.quarantined_rows),
                str(result.snapshots),
                "[green]ok[/green]" if result.ok else "[red]MISMATCH[/red]",
                self._relative(result.location),
            )
        return table

    def _relative(self, location: str | None) -> str:
        if location is None:
            return "-"
        if self.lake is not None and Path(location).is_relative_to(self.lake):
            return str(Path(location).relative_to(self.lake))
        return location

    def snippet(
        self,
        verification: Verification,
        truth: GroundTruth,
        config: SilverlineConfig,
        config_file: str,
        kept: bool,
    ) -> None:
        """Copy-paste code that queries one of the tables (pyiceberg and Spark SQL)."""
        from jobs.simulate.verify import latest_metadata
        from jobs.storage import silver_table_name

        first = next((t for t in verification.tables if t.location), None)
        if first is None or first.location is None:
            return
        lake = config.lake.root.removeprefix("file://")
        self.out.print(
            _SNIPPET.format(
                kept="" if kept else " (this lake is deleted on exit: run with --keep to explore it)",
                metadata=latest_metadata(Path(first.location)),
                config=config_file,
                lake=lake,
                table=silver_table_name(config.catalog.name, truth.bucket, first.tenant, first.dataset),
            ),
            markup=False,
            soft_wrap=True,
        )

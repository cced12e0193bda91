"""``silverline quality docs``: great-expectations Data Docs, looked at in a real browser.

Real validation results (great-expectations run by :func:`jobs.quality.validate.validate_rows`
on rows with a known number of bad values) are recorded as the stream records them, in a
local ops root and in an ``s3://`` ops root on moto's S3. The command builds the site;
headless Chromium (Debian's package: ``make chromium`` installs it when missing) renders
``index.html`` and a run's page, and the test reads what the browser shows.
"""

from __future__ import annotations

import datetime as dt
import shutil
import subprocess
from decimal import Decimal
from html.parser import HTMLParser
from pathlib import Path
from typing import Any

import boto3
import pyarrow as pa
import pytest
import yaml

from jobs.bridge.landing import LocalBronzeStore, S3BronzeStore
from jobs.cli import main
from jobs.quality.docs import run_identity
from jobs.quality.results import write_result_json
from jobs.quality.suites import load_suite
from jobs.quality.validate import validate_rows

pytestmark = pytest.mark.integration

CONF = Path(__file__).resolve().parents[2] / "conf"
QUERY = "0f9c2a10-5d7e-4c3b-9a55-5a1b2c3d4e5f"


def chromium() -> str:
    for name in ("chromium", "chromium-browser", "google-chrome"):
        found = shutil.which(name)
        if found:
            return found
    pytest.fail("no Chromium: run `make chromium` (installs Debian's chromium package)")


def rendered(page: Path) -> str:
    """The DOM of ``page`` after Chromium rendered it (scripts run)."""
    done = subprocess.run(
        [chromium(), "--headless", "--no-sandbox", "--disable-gpu", "--dump-dom", page.resolve().as_uri()],
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-2000:]
    return done.stdout


class Cells(HTMLParser):
    """Text of every table row of ``<table id=runs>`` and the links, from a DOM."""

    def __init__(self) -> None:
        super().__init__()
        self.rows: list[list[str]] = []
        self.links: list[str] = []
        self.text: list[str] = []
        self._in_runs = False
        self._cell: list[str] | None = None

    def handle_starttag(self, tag: str, attrs: list[tuple[str, str | None]]) -> None:
        attributes = dict(attrs)
        if tag == "table" and attributes.get("id") == "runs":
            self._in_runs = True
        elif tag == "tr" and self._in_runs:
            self.rows.append([])
        elif tag in ("td", "th") and self._in_runs:
            self._cell = []
        elif tag == "a" and attributes.get("href"):
            self.links.append(str(attributes["href"]))

    def handle_endtag(self, tag: str) -> None:
        if tag == "table":
            self._in_runs = False
        elif tag in ("td", "th") and self._cell is not None:
            self.rows[-1].append(" ".join("".join(self._cell).split()))
            self._cell = None

    def handle_data(self, data: str) -> None:
        if self._cell is not None:
            self._cell.append(data)
        if data.strip():
            self.text.append(data.strip())


def parsed(dom: str) -> Cells:
    cells = Cells()
    cells.feed(dom)
    return cells


def orders(rows: list[tuple[int, str, str]], tenant: str) -> pa.Table:
    """Order rows (id, amount, currency) of one tenant, as the reader gives them to validation."""
    n = len(rows)
    return pa.table(
        {
            "order_id": pa.array([r[0] for r in rows], pa.int64()),
            "customer_id": pa.array(["c"] * n),
            "amount": pa.array([Decimal(r[1]) for r in rows], pa.decimal128(12, 2)),
            "currency": pa.array([r[2] for r in rows]),
            "order_ts": pa.array([dt.datetime(2026, 1, 1, tzinfo=dt.UTC)] * n, pa.timestamp("us", tz="UTC")),
            "_conversion_errors": pa.array([None] * n, pa.list_(pa.string())),
            "_source_key": pa.array([f"{tenant}/orders/{r[0]}.csv" for r in rows]),
            "_tenant": pa.array([tenant] * n),
        }
    )


def record(store: Any) -> None:
    """Three validation calls: two passing orders batches and one with 2 bad amounts, 1 bad currency."""
    suite = load_suite("orders", CONF / "expectations")
    good = orders([(1, "10.00", "EUR"), (2, "5.50", "USD")], "acme")
    bad = orders([(3, "-1.00", "EUR"), (4, "-2.00", "EUR"), (5, "3.00", "QQQ"), (6, "1.00", "GBP")], "globex")
    for batch_id, table in ((0, good), (1, bad), (2, good)):
        verdicts = validate_rows(table, suite, primary_key=["order_id"], dataset="orders")
        assert write_result_json(store, verdicts, query_id=QUERY, batch_id=batch_id)


def write_config(tmp_path: Path, lake: dict[str, str], endpoint: str | None = None) -> Path:
    data: dict[str, Any] = {"group": {"name": "docs", "bucket": "lake"}, "lake": lake}
    data["stream"] = {"datasets_file": str(CONF / "datasets.yaml")}
    if endpoint:
        data["aws"] = {"endpoint_url": endpoint, "region": "us-east-1"}
    path = tmp_path / "docs.yaml"
    path.write_text(yaml.safe_dump(data), encoding="utf-8")
    return path


def test_run_identity_names_the_batch_or_retry_pass_and_keeps_the_ge_time() -> None:
    result = {"suite_name": "orders", "meta": {"batch_markers": {"ge_load_time": "20261207T053308.780755Z"}}}
    name = f"query={QUERY}/retry-{7:020d}-daily-orders-orders.json"
    assert run_identity(name, result) == (
        QUERY,
        -7,
        "daily-orders",
        "retry-7-query-0f9c2a10",
        dt.datetime(2026, 12, 7, 5, 33, 8, 780755, tzinfo=dt.UTC),
    )
    assert run_identity("notes/readme.json", result) is None


def test_docs_of_a_local_lake_render_in_chromium(tmp_path: Path, capsys: pytest.CaptureFixture[str]) -> None:
    lake = tmp_path / "lake"
    config = write_config(tmp_path, {"root": str(lake)})
    results = lake / "_ops" / "docs" / "quality" / "results"
    out = tmp_path / "site"

    # The null case: no results yet gives an empty index, not an error.
    assert main(["quality", "docs", "--config", str(config), "--out", str(out)]) == 0
    assert "No validation results yet" in capsys.readouterr().out
    assert parsed(rendered(out / "index.html")).rows == [
        ["suite", "dataset", "run", "validated", "status", "expectations passed", "query"]
    ]

    record(LocalBronzeStore(results))
    (results / f"query={QUERY}").joinpath("batch-00000000000000000009-orders-orders.json").write_text(
        "{trunc"
    )
    assert main(["quality", "docs", "--config", str(config), "--out", str(out)]) == 1
    printed = capsys.readouterr().out
    assert f"Data Docs: 3 validation runs of 1 suite (1 failed) -> {out / 'index.html'}" in printed
    assert f"skipped (not a readable validation result): query={QUERY}/batch-00000000000000000009" in printed

    index = parsed(rendered(out / "index.html"))
    runs = [[row[0], row[1], row[2], row[4], row[5], row[6]] for row in index.rows[1:]]
    assert sorted(runs, key=lambda r: r[2]) == [
        ["orders", "orders", "batch-0-query-0f9c2a10", "passed", "4 of 4", QUERY],
        ["orders", "orders", "batch-1-query-0f9c2a10", "failed", "2 of 4", QUERY],
        ["orders", "orders", "batch-2-query-0f9c2a10", "passed", "4 of 4", QUERY],
    ]
    assert "expectations/orders.html" in index.links
    pages = [link for link in index.links if link.startswith("validations/")]
    assert len(pages) == 3 and all((out / link).is_file() for link in pages)

    # The failed run's page, as great-expectations renders it.
    [failed] = [link for link in pages if "/batch-1-query-" in link]
    page = " ".join(parsed(rendered(out / failed)).text)
    assert "Expectation Suite: orders" in page and "Status: Failed" in page
    assert "Evaluated Expectations 4 Successful Expectations 2 Unsuccessful Expectations 2" in page
    assert "50% unexpected" in page  # 2 of the 4 amounts are negative
    assert "25% unexpected" in page  # 1 of the 4 currencies is unknown
    suite_page = " ".join(parsed(rendered(out / "expectations" / "orders.html")).text)
    assert "values must never be null" in suite_page

    # --last keeps the newest runs of each suite.
    assert (
        main(["quality", "docs", "--config", str(config), "--out", str(tmp_path / "two"), "--last", "2"]) == 1
    )
    newest = parsed((tmp_path / "two" / "index.html").read_text(encoding="utf-8"))
    assert [row[2] for row in newest.rows[1:]] == ["batch-2-query-0f9c2a10", "batch-1-query-0f9c2a10"]


def test_docs_of_an_s3_ops_root(
    tmp_path: Path, moto_endpoint: str, capsys: pytest.CaptureFixture[str], monkeypatch: pytest.MonkeyPatch
) -> None:
    s3 = boto3.client("s3", endpoint_url=moto_endpoint, region_name="us-east-1")
    s3.create_bucket(Bucket="docs-ops")
    config = write_config(
        tmp_path, {"root": str(tmp_path / "lake"), "ops_root": "s3://docs-ops/groups/docs/"}, moto_endpoint
    )
    record(S3BronzeStore("docs-ops", "groups/docs/quality/results/", s3))
    monkeypatch.chdir(tmp_path)
    assert main(["quality", "docs", "--config", str(config), "--out", "site"]) == 0  # a relative --out
    out = tmp_path / "site"
    assert (
        f"Data Docs: 3 validation runs of 1 suite (1 failed) -> {out / 'index.html'}"
        in capsys.readouterr().out
    )
    index = parsed(rendered(out / "index.html"))
    assert sorted(row[4] for row in index.rows[1:]) == ["failed", "passed", "passed"]

"""The notebooks in notebooks/: committed stripped, and executed end to end on a demo lake.

One demo run (its own process: moto, bridge, stream, verification) makes a small lake with
several micro-batches; each notebook then runs in a fresh kernel of this interpreter with
``SILVERLINE_CONFIG`` / ``SILVERLINE_LAKE_ROOT`` pointing at it. The notebooks assert on
what they show, so a failing cell fails its test with the cell's source and error.

pytest does not collect the ``.ipynb`` files itself: nbmake only does so with ``--nbmake``,
which neither pyproject.toml nor the Makefile passes. Each notebook runs once, from here.
"""

from __future__ import annotations

import re
import subprocess
import sys
import time
from pathlib import Path

import nbformat
import pytest

from tests import streamkit as kit

NOTEBOOKS = kit.PROJECT / "notebooks"
NAMES = [
    "01_explore_tenant_silver.ipynb",
    "02_debug_an_ingestion.ipynb",
    "03_data_quality.ipynb",
    "04_operations.ipynb",
]
CELL_TIMEOUT = 600
ANSI = re.compile(r"\x1b\[[0-9;]*m")
# Small and fast, yet several micro-batches (bronze files of at most 15 messages, one per
# trigger), so tables have more than one snapshot and the plots more than one point.
DEMO_ARGS = ("--tenants", "3", "--objects", "30", "--seed", "7")
DEMO_ENV = {
    "SILVERLINE__SPARK__MASTER": "local[2]",
    "SILVERLINE__BRIDGE__FLUSH_MAX_MESSAGES": "15",
    "SILVERLINE__STREAM__MAX_FILES_PER_TRIGGER": "1",
}


def notebook_env(lake: Path) -> dict[str, str]:
    env = {**kit.job_env(), "SILVERLINE_CONFIG": "conf/local.yaml", "SILVERLINE_LAKE_ROOT": str(lake)}
    env["SILVERLINE__SPARK__MASTER"] = "local[2]"
    env["MPLBACKEND"] = "Agg"
    env.pop("JPY_PARENT_PID", None)
    return env


@pytest.fixture(scope="module")
def demo_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """A lake left by ``silverline demo --lake-root`` (kept: the demo deletes only temporary lakes)."""
    lake = tmp_path_factory.mktemp("notebooks") / "lake"
    cmd = [
        sys.executable,
        "-m",
        "jobs",
        "demo",
        "--config",
        "conf/local.yaml",
        *DEMO_ARGS,
        "--lake-root",
        str(lake),
    ]
    started = time.monotonic()
    done = subprocess.run(
        cmd,
        cwd=kit.PROJECT,
        env={**kit.job_env(), **DEMO_ENV},
        capture_output=True,
        text=True,
        timeout=900,
        check=False,
    )
    assert done.returncode == 0, f"demo: exit {done.returncode}\n{done.stdout[-4000:]}\n{done.stderr[-4000:]}"
    assert "VERIFIED" in done.stdout and f"lake kept at {lake}" in done.stdout, done.stdout[-4000:]
    print(f"demo lake ready in {time.monotonic() - started:.0f} s")
    return lake


def execute(name: str, lake: Path) -> nbformat.NotebookNode:
    """Run a notebook in a fresh python3 kernel from the project root; fail with the failing cell."""
    from nbclient import NotebookClient
    from nbclient.exceptions import CellExecutionError

    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    client = NotebookClient(
        notebook,
        timeout=CELL_TIMEOUT,
        kernel_name="python3",
        resources={"metadata": {"path": str(kit.PROJECT)}},
    )
    try:
        client.execute(env=notebook_env(lake))
    except CellExecutionError as exc:
        pytest.fail(f"{name}: a cell failed\n{ANSI.sub('', str(exc))}", pytrace=False)
    return notebook


def outputs_of_type(notebook: nbformat.NotebookNode, output_type: str) -> list[dict[str, object]]:
    return [
        o
        for cell in notebook.cells
        if cell.cell_type == "code"
        for o in cell.outputs
        if o.output_type == output_type
    ]


# ---- unit: what is committed ----------------------------------------------------------------------


@pytest.mark.unit
def test_the_notebooks_are_the_four_documented_ones():
    assert sorted(p.name for p in NOTEBOOKS.glob("*.ipynb")) == NAMES
    readme = (NOTEBOOKS / "README.md").read_text(encoding="utf-8")
    assert all(name in readme for name in NAMES)


@pytest.mark.unit
@pytest.mark.parametrize("name", NAMES)
def test_committed_notebook_is_stripped_and_valid(name):
    notebook = nbformat.read(NOTEBOOKS / name, as_version=4)
    nbformat.validate(notebook)
    code = [cell for cell in notebook.cells if cell.cell_type == "code"]
    assert code
    assert all(cell.outputs == [] for cell in code), "outputs committed: strip them"
    assert all(cell.execution_count is None for cell in code), "execution counts committed: strip them"
    assert notebook.metadata.kernelspec.name == "python3"


@pytest.mark.unit
@pytest.mark.parametrize("name", NAMES)
def test_notebook_takes_its_lake_from_the_environment_only(name):
    text = (NOTEBOOKS / name).read_text(encoding="utf-8")
    assert "open_lake()" in text
    for absolute in ("/tmp/", "/home/", "/Users/", "file:///"):
        assert absolute not in text, absolute


@pytest.mark.unit
def test_pytest_does_not_collect_the_notebooks_itself():
    # nbmake collects .ipynb files only when --nbmake is given; it must not be, or every
    # notebook would run twice (once without a lake).
    pyproject = (kit.PROJECT / "pyproject.toml").read_text(encoding="utf-8")
    makefile = (kit.PROJECT / "Makefile").read_text(encoding="utf-8")
    assert "--nbmake" not in pyproject and "--nbmake" not in makefile


@pytest.mark.unit
def test_open_lake_reads_the_config_and_lake_root_from_the_environment(tmp_path, monkeypatch):
    from jobs.config import ConfigError
    from jobs.notebook import open_lake

    monkeypatch.chdir(kit.PROJECT)
    environ = {"SILVERLINE_LAKE_ROOT": str(tmp_path / "lake"), "SILVERLINE__GROUP__NAME": "g1"}
    lake = open_lake(environ)

    assert lake.config.lake.root == (tmp_path / "lake").as_uri() + "/"
    assert lake.root_dir == tmp_path / "lake" and lake.ops_dir == tmp_path / "lake" / "_ops" / "g1"
    assert lake.table("acme", "orders") == "`silverline`.`demo-lake`.`acme`.`silver`.`orders`"
    assert lake.table("acme", "orders", "quarantine").endswith("`acme`.`quarantine`.`orders`")
    assert lake.ops("ledger") == "silverline_ops.ops.ledger"
    assert (
        lake.object_path("acme/raw/orders/a b.csv")
        == tmp_path / "lake" / "demo-lake" / "acme/raw/orders/a b.csv"
    )
    assert lake.table_dir("acme", "orders") == tmp_path / "lake" / "demo-lake" / "acme" / "silver" / "orders"
    with pytest.raises(FileNotFoundError):
        lake.pyiceberg_table("acme", "orders")
    with pytest.raises(KeyError):
        lake.ops("nope")
    assert "spark" not in vars(lake)  # nothing started Spark

    default = open_lake({})  # conf/local.yaml, its own lake root
    assert default.config.lake.root == (kit.PROJECT / "lake").as_uri() + "/"
    with pytest.raises(ConfigError, match="cannot read config file"):
        open_lake({"SILVERLINE_CONFIG": str(tmp_path / "missing.yaml")})


@pytest.mark.unit
def test_count_raw_rows_counts_data_rows_of_each_format(tmp_path):
    import gzip

    import pyarrow as pa
    import pyarrow.parquet as pq

    from jobs.notebook import count_raw_rows

    (tmp_path / "a.csv").write_text("id,x\n1,a\n2,b\n\n", encoding="utf-8")
    (tmp_path / "b.csv.gz").write_bytes(gzip.compress(b"id\n1\n2\n3\n"))
    (tmp_path / "c.jsonl").write_text('{"a": 1}\n\n{"a": 2}\n', encoding="utf-8")
    pq.write_table(pa.table({"a": [1, 2, 3, 4]}), tmp_path / "d.parquet")
    (tmp_path / "e.txt").write_text("x\n", encoding="utf-8")

    counts = [count_raw_rows(tmp_path / n) for n in ("a.csv", "b.csv.gz", "c.jsonl", "d.parquet")]
    assert counts == [2, 3, 2, 4]
    with pytest.raises(ValueError, match=r"e\.txt"):
        count_raw_rows(tmp_path / "e.txt")


# ---- integration: each notebook on the demo lake ----------------------------------------------------


@pytest.mark.integration
@pytest.mark.notebook
@pytest.mark.timeout(1500)
@pytest.mark.parametrize("name", NAMES)
def test_notebook_runs_on_a_demo_lake(name, demo_lake):
    notebook = execute(name, demo_lake)

    assert not outputs_of_type(notebook, "error")
    images = [o for o in outputs_of_type(notebook, "display_data") if "image/png" in o["data"]]
    assert len(images) == {"03_data_quality.ipynb": 1, "04_operations.ipynb": 3}.get(name, 0)

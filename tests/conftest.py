"""Shared fixtures: one local Spark session, one moto server, AWS test credentials."""

from __future__ import annotations

import os
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest

# Never let a test reach a real AWS account, whatever the developer's environment holds.
os.environ.update(
    {
        "AWS_ACCESS_KEY_ID": "testing",
        "AWS_SECRET_ACCESS_KEY": "testing",
        "AWS_SESSION_TOKEN": "testing",
        "AWS_DEFAULT_REGION": "us-east-1",
    }
)
for _name in [n for n in os.environ if n.startswith("SILVERLINE__")]:
    del os.environ[_name]
# The tests' JVMs (this process's session, and each job a test starts) live seconds to
# minutes on small data: JIT compilation with C1 only spends less CPU than it saves
# there. Measured on the quality end-to-end tests: 72-74 s against 83-84 s.
# spark-submit adds SPARK_SUBMIT_OPTS to the driver JVM's command line.
os.environ.setdefault("SPARK_SUBMIT_OPTS", "-XX:TieredStopAtLevel=1")


@pytest.fixture(scope="session")
def moto_endpoint() -> Iterator[str]:
    """An in-process moto server (real SQS/S3 wire APIs) on a loopback port."""
    from jobs.localaws import local_aws

    with local_aws() as endpoint:
        yield endpoint


@pytest.fixture(scope="session")
def spark_lake(tmp_path_factory: pytest.TempPathFactory) -> Path:
    """The lake directory the session-wide Spark catalog is rooted in."""
    return tmp_path_factory.mktemp("lake")


@pytest.fixture(scope="session")
def spark(spark_lake: Path) -> Iterator[object]:
    """One local SparkSession for the whole run, built by the project's factory."""
    from jobs.config import load_config
    from jobs.session import build_spark_session

    project = Path(__file__).resolve().parents[1]
    config = load_config(
        project / "conf" / "local.yaml",
        environ={},
        overrides={
            "lake": {"root": str(spark_lake)},
            "spark": {
                "master": "local[2]",
                "defaults_file": str(project / "conf" / "spark" / "local.conf"),
                "conf": {"spark.sql.shuffle.partitions": "2"},
            },
        },
    )
    session = build_spark_session(config)
    try:
        yield session
    finally:
        session.stop()


# Started first: the longest tests (about 1.5 to 2.5 minutes each), so that two test
# processes (make test) do not end with one of them alone on a long test.
_SLOWEST_FIRST = (
    "tests/emr/test_emr_archive.py",
    "tests/maintenance/test_maintain_e2e.py",
    "tests/stream/test_faults_stream.py",
    "tests/bridge/test_faults_sqs.py",
    "tests/demo/test_demo.py",
)


# Modules whose tests share one expensive module fixture (a killed stream, a job run, the
# notebooks' demo lake): one worker runs all of a module's tests, so the fixture runs once.
_ONE_WORKER_MODULES = (
    "tests/stream/test_faults_stream.py",
    "tests/stream/test_faults_stream_inputs.py",
    "tests/stream/test_faults_messages.py",
    "tests/test_notebooks.py",
)


@pytest.hookimpl(tryfirst=True, optionalhook=True)
def pytest_xdist_make_scheduler(config: pytest.Config, log: Any) -> Any:
    """pytest-xdist: each test is a unit of work, except the modules above, which are one each.

    (``--dist loadgroup`` with ``xdist_group`` marks would say the same, but pytest-xdist
    3.8 groups by a suffix of the node id that pytest 9 no longer keeps.)
    """
    from xdist.scheduler import LoadScopeScheduling

    class Scheduler(LoadScopeScheduling):  # type: ignore[misc]
        def _split_scope(self, nodeid: str) -> str:
            module = nodeid.split("::")[0]
            return module if module in _ONE_WORKER_MODULES else nodeid

    return Scheduler(config, log)


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """Order the run: the slowest modules, then end-to-end, Spark and unit tests (stable within)."""

    def rank(item: pytest.Item) -> tuple[int, int]:
        module = item.nodeid.split("::")[0]
        if module in _SLOWEST_FIRST:
            return 0, _SLOWEST_FIRST.index(module)
        if item.get_closest_marker("integration"):
            return 1, 0
        return (2, 0) if item.get_closest_marker("spark") else (3, 0)

    items.sort(key=rank)


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--soak",
        action="store_true",
        default=False,
        help="run the fault-injection scenarios at soak size (longer outages, more kills, more batches)",
    )
    parser.addoption(
        "--cpu-hog",
        action="store_true",
        default=False,
        help="keep every core busy with a spinning process for the whole run: the suite must pass "
        "on a loaded machine (no test may depend on how fast the machine is)",
    )


_HOGS: list[subprocess.Popen[bytes]] = []


def pytest_configure(config: pytest.Config) -> None:
    """Under ``--cpu-hog``, start one spinning process per core (once, in the controlling process)."""
    if config.getoption("--cpu-hog") and not hasattr(config, "workerinput"):
        spin = "while True: pass"
        _HOGS.extend(subprocess.Popen([sys.executable, "-c", spin]) for _ in range(os.cpu_count() or 2))


def pytest_unconfigure(config: pytest.Config) -> None:
    for hog in _HOGS:
        hog.kill()
        hog.wait()
    _HOGS.clear()


@pytest.fixture(scope="session")
def soak(request: pytest.FixtureRequest) -> bool:
    """True under ``pytest --soak``: fault scenarios scale up (see docs/reliability.md)."""
    return bool(request.config.getoption("--soak"))

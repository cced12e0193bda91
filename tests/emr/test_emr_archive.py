"""The EMR archive proven: build ``silverline-venv.tar.gz`` and run the stream from it as EMR does.

``emr/packaging/build-archive.sh --local`` runs the Dockerfile's steps on this machine's
Python 3.11 (runtime requirements without pyspark/moto/test tools, the silverline wheel
with ``--no-deps``, venv-pack) and zips the configuration as ``silverline-conf.zip``.
The job then starts the way an EMR step starts it: ``spark-submit`` with
``--archives silverline-venv.tar.gz#environment,silverline-conf.zip#conf``,
``spark.pyspark.python=./environment/bin/python``, the entry script
``jobs/stream_ingest.py`` and ``--config conf/<name>``, from a working directory where
both archives are unpacked under those names (what YARN's localisation gives a
container). Only the archive's Python and packages are used: no project checkout, no
virtualenv of the tests on the path. Spark runs in local mode and the simulator's
oracle judges the silver tables it wrote.
"""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
import tarfile
import zipfile
from pathlib import Path

import pyspark
import pytest
import yaml

from jobs.session import find_iceberg_jar
from jobs.simulate import SimulationSpec, run, verify
from tests import streamkit as kit

pytestmark = pytest.mark.integration

ROOT = Path(__file__).resolve().parents[2]
BUILD = ROOT / "emr" / "packaging" / "build-archive.sh"


def emr_like_config(tmp_path: Path, lake: Path, endpoint: str, queue_url: str) -> Path:
    """The e2e config, with paths as the job sees them on EMR: contracts under ./conf."""
    config = yaml.safe_load(kit.write_config(tmp_path, lake, endpoint, queue_url).read_text(encoding="utf-8"))
    config["stream"]["datasets_file"] = "conf/datasets.yaml"
    config["stream"].pop("max_files_per_trigger")
    config["spark"]["iceberg_jar"] = str(find_iceberg_jar())  # EMR: the cluster's Iceberg
    path = tmp_path / "emr-test.yaml"
    path.write_text(yaml.safe_dump(config), encoding="utf-8")
    return path


def test_the_venv_archive_runs_the_stream_as_an_emr_step_does(tmp_path: Path, moto_endpoint: str) -> None:
    lake = tmp_path / "lake"
    bodies, truth = run(SimulationSpec(tenants=2, objects=12, dup_rate=0.2, reorder_rate=0.2, seed=7), lake)
    queue_url, _ = kit.make_queue(moto_endpoint)
    kit.send_all(moto_endpoint, queue_url, bodies)
    config = emr_like_config(tmp_path, lake, moto_endpoint, queue_url)

    out = tmp_path / "dist"
    built = subprocess.run(
        [
            "bash",
            str(BUILD),
            "--local",
            "--out",
            str(out),
            "--config",
            str(config),
            "--config-name",
            "emr.yaml",
        ],
        capture_output=True,
        text=True,
        timeout=1200,
        env={**os.environ, "PYTHON": sys.executable},
        check=False,
    )
    assert built.returncode == 0, built.stderr[-4000:]
    venv, conf = out / "silverline-venv.tar.gz", out / "silverline-conf.zip"
    with tarfile.open(venv) as archive:
        names = archive.getnames()
    assert "bin/python" in names and any(n.endswith("site-packages/jobs/stream/command.py") for n in names)
    assert not any("/site-packages/pyspark/" in n or "/site-packages/moto/" in n for n in names)  # excluded
    with zipfile.ZipFile(conf) as archive:
        assert {"emr.yaml", "datasets.yaml", "expectations/orders.json"} <= set(archive.namelist())

    # The container's working directory: the archives unpacked under their '#' names.
    container = tmp_path / "container"
    with tarfile.open(venv) as archive:
        archive.extractall(container / "environment", filter="fully_trusted")
    with zipfile.ZipFile(conf) as archive:
        archive.extractall(container / "conf")
    shutil.copy(ROOT / "jobs" / "stream_ingest.py", container / "stream_ingest.py")
    spark_submit = Path(sys.executable).parent / "spark-submit"
    python = "./environment/bin/python"
    env = {k: v for k, v in kit.job_env().items() if k not in ("PYTHONPATH", "VIRTUAL_ENV", "PYSPARK_PYTHON")}
    env["PATH"] = os.pathsep.join(p for p in env["PATH"].split(os.pathsep) if not p.startswith(str(ROOT)))
    env["SPARK_HOME"] = str(Path(pyspark.__file__).parent)  # on EMR: the cluster's Spark
    cmd = [
        str(spark_submit),
        "--master",
        "local[2]",
        "--jars",  # on EMR the cluster's Iceberg is on the classpath (iceberg-defaults)
        str(find_iceberg_jar()),
        "--archives",
        f"{venv}#environment,{conf}#conf",
        "--conf",
        f"spark.pyspark.python={python}",
        "--conf",
        f"spark.pyspark.driver.python={python}",
        "stream_ingest.py",
        "--config",
        "conf/emr.yaml",
        "--trigger",
        "available-now",
    ]
    done = subprocess.run(
        cmd, cwd=container, capture_output=True, text=True, timeout=600, env=env, check=False
    )
    assert done.returncode == 0, (done.stdout + done.stderr)[-6000:]
    assert "silverline" in done.stderr  # the job's own log lines, from the archive's package

    result = verify(lake, truth)
    assert result.ok, result.summary()
    assert kit.queue_counts(moto_endpoint, queue_url) == 0

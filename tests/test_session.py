"""The SparkSession factory's checks, without starting Spark."""

from __future__ import annotations

import zipfile
from pathlib import Path

import pytest

from jobs.config import load_config
from jobs.session import (
    SparkSetupError,
    check_iceberg_jar,
    check_java,
    find_iceberg_jar,
    read_defaults_file,
    session_settings,
)

pytestmark = pytest.mark.unit
PROJECT = Path(__file__).resolve().parents[1]


def fake_java(tmp_path: Path, version_line: str) -> str:
    script = tmp_path / "java"
    script.write_text(f"#!/bin/sh\necho '{version_line}' >&2\n", encoding="utf-8")
    script.chmod(0o755)
    return str(script)


def test_java_8_is_too_old_with_one_clear_message(tmp_path: Path) -> None:
    java = fake_java(tmp_path, 'openjdk version "1.8.0_392"')
    with pytest.raises(SparkSetupError, match=r"Java 8 is too old.*Java 11\+"):
        check_java(java)


def test_java_17_passes(tmp_path: Path) -> None:
    assert check_java(fake_java(tmp_path, 'openjdk version "17.0.15" 2025-04-15')) == 17


def test_missing_java_says_what_to_install(tmp_path: Path) -> None:
    with pytest.raises(SparkSetupError, match="openjdk-17"):
        check_java(str(tmp_path / "no-java-here"))


def test_the_pinned_pypi_jar_is_found_and_complete() -> None:
    jar = find_iceberg_jar()
    assert jar.name == "iceberg-spark-runtime-3.5_2.12-1.10.2.jar"


def test_a_jar_without_shaded_jackson_is_refused(tmp_path: Path) -> None:
    broken = tmp_path / "iceberg-spark-runtime-3.5_2.12-1.10.2.jar"
    with zipfile.ZipFile(broken, "w") as archive:
        archive.writestr("org/apache/iceberg/Table.class", b"")
    with pytest.raises(SparkSetupError, match="shaded Jackson"):
        check_iceberg_jar(broken)


def test_not_a_jar_is_refused(tmp_path: Path) -> None:
    bogus = tmp_path / "x.jar"
    bogus.write_text("nope", encoding="utf-8")
    with pytest.raises(SparkSetupError, match="not a jar"):
        check_iceberg_jar(bogus)


def test_defaults_file_parsing_and_errors(tmp_path: Path) -> None:
    good = tmp_path / "good.conf"
    good.write_text("# comment\n\nspark.a   1\nspark.b x y\n", encoding="utf-8")
    assert read_defaults_file(good) == {"spark.a": "1", "spark.b": "x y"}
    bad = tmp_path / "bad.conf"
    bad.write_text("spark.lonely\n", encoding="utf-8")
    with pytest.raises(SparkSetupError, match=r"bad.conf:1"):
        read_defaults_file(bad)


def test_local_settings_layer_defaults_jar_catalog_then_user_conf(tmp_path: Path) -> None:
    config = load_config(
        PROJECT / "conf" / "local.yaml",
        environ={},
        overrides={
            "lake": {"root": str(tmp_path)},
            "spark": {
                "defaults_file": str(PROJECT / "conf" / "spark" / "local.conf"),
                "conf": {"spark.sql.shuffle.partitions": "7"},
            },
        },
    )
    settings = session_settings(config)
    assert settings["spark.sql.shuffle.partitions"] == "7"
    assert settings["spark.ui.enabled"] == "false"
    assert settings["spark.jars"].endswith("iceberg-spark-runtime-3.5_2.12-1.10.2.jar")
    assert settings["spark.sql.catalog.silverline"] == "org.apache.iceberg.spark.SparkCatalog"
    assert settings["spark.sql.catalog.silverline.type"] == "hadoop"
    assert settings["spark.sql.catalog.silverline.warehouse"] == tmp_path.resolve().as_uri() + "/"


def test_emr_settings_add_no_local_jar_and_use_glue() -> None:
    config = load_config(PROJECT / "conf" / "emr.example.yaml", environ={})
    settings = session_settings(config)
    assert "spark.jars" not in settings and "spark.jars.packages" not in settings
    assert settings["spark.sql.catalog.silverline.catalog-impl"] == "org.apache.iceberg.aws.glue.GlueCatalog"
    assert settings["spark.sql.catalog.silverline.io-impl"] == "org.apache.iceberg.aws.s3.S3FileIO"
    # Executors fork their Python workers from the job's daemon (the archive ships the package).
    assert settings["spark.python.daemon.module"] == "jobs.sparkworker"


@pytest.mark.unit
def test_local_runs_use_the_quiet_log4j_file_unless_one_is_given() -> None:
    from jobs.session import QUIET_LOG4J, quiet_java_options

    assert QUIET_LOG4J.is_file()
    assert (
        quiet_java_options("-Dlog4j2.level=WARN")
        == f"-Dlog4j2.level=WARN -Dlog4j2.configurationFile={QUIET_LOG4J.as_uri()}"
    )
    own = "-Dlog4j2.configurationFile=file:/etc/mine.properties"
    assert quiet_java_options(own) == own
    text = QUIET_LOG4J.read_text()
    assert "org.apache.hadoop.util.NativeCodeLoader" in text and "rootLogger.level = warn" in text


@pytest.mark.unit
def test_verbose_brings_back_the_progress_bars_and_the_jvm_warnings(monkeypatch: pytest.MonkeyPatch) -> None:
    from jobs.cli import build_parser
    from jobs.session import QUIET_LOG4J, VERBOSE_ENV, console_settings

    base = {"spark.driver.extraJavaOptions": "-Xss4m"}
    quiet = console_settings(base, verbose=False)
    assert quiet["spark.ui.showConsoleProgress"] == "false"
    assert (
        quiet["spark.driver.extraJavaOptions"] == f"-Xss4m -Dlog4j2.configurationFile={QUIET_LOG4J.as_uri()}"
    )
    assert (
        console_settings({**base, "spark.ui.showConsoleProgress": "true"}, verbose=False)[
            "spark.ui.showConsoleProgress"
        ]
        == "true"
    )  # the user's own choice stands
    loud = console_settings(base, verbose=True)
    assert loud == {"spark.driver.extraJavaOptions": "-Xss4m", "spark.ui.showConsoleProgress": "true"}
    assert "--verbose" in build_parser().format_help()
    monkeypatch.setenv(VERBOSE_ENV, "0")  # recorded, so the test's "1" is undone afterwards
    from jobs import cli

    monkeypatch.setattr(cli, "build_parser", lambda: _parser_running(lambda args: 0))
    assert cli.main(["--verbose", "noop"]) == 0
    import os

    assert os.environ[VERBOSE_ENV] == "1"


def _parser_running(func: object) -> object:
    import argparse

    parser = argparse.ArgumentParser()
    parser.add_argument("--log-level", default="INFO")
    parser.add_argument("--verbose", action="store_true")
    sub = parser.add_subparsers(dest="command")
    sub.add_parser("noop").set_defaults(func=func)
    return parser


THREAD_PROBE = """
import sys
from concurrent.futures import ThreadPoolExecutor
from jobs.config import load_config
from jobs.session import build_spark_session

config = load_config(None, environ={}, overrides={"lake": {"root": sys.argv[1]}, "spark": {"master": "local[1]"}})
spark = build_spark_session(config)
name = "`silverline`.`lake`.`acme`.`silver`.`orders`"

def load(_):
    try:
        spark._jvm.org.apache.iceberg.spark.Spark3Util.loadIcebergTable(spark._jsparkSession, name)
        return "found"
    except Exception as exc:
        return str(exc).splitlines()[0]

with ThreadPoolExecutor(2) as pool:  # the commits' thread pool is the first to touch the catalog
    print("RESULT", list(pool.map(load, range(2))))
"""


@pytest.mark.spark
def test_the_catalogs_are_loaded_before_a_commit_thread_first_needs_them(tmp_path: Path) -> None:
    """A catalog first used from another Python thread resolved tenant tables in spark_catalog."""
    import subprocess
    import sys

    done = subprocess.run(
        [sys.executable, "-c", THREAD_PROBE, str(tmp_path / "lake")],
        capture_output=True,
        text=True,
        timeout=300,
        check=False,
    )
    assert done.returncode == 0, done.stderr[-3000:]
    [line] = [x for x in done.stdout.splitlines() if x.startswith("RESULT")]
    assert "REQUIRES_SINGLE_PART_NAMESPACE" not in line
    assert line.count("TABLE_OR_VIEW_NOT_FOUND") == 2, (
        line
    )  # resolved in the silverline catalog: no table yet

"""The one SparkSession factory. Only entry points (and test fixtures) call it.

Local mode: ``local[*]``, Spark/Iceberg settings from the defaults file in
``conf/spark/``, the Iceberg Spark runtime jar from the pinned PyPI package
(or a user-given jar / Maven coordinates) and an Iceberg catalog rooted in the
lake. EMR mode adds nothing local: the cluster provides jars and defaults, the
config provides the (Glue) catalog.
"""

from __future__ import annotations

import logging
import os
import re
import shutil
import subprocess
import sys
import time
import zipfile
from collections.abc import Mapping, Sequence
from importlib import util as importlib_util
from pathlib import Path
from typing import TYPE_CHECKING

from jobs.config import SilverlineConfig

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

MIN_JAVA = 11
TESTED_JAVA = 17
_JAR_PACKAGE = "snowpark_connect_deps_iceberg"
_JAR_GLOB = "iceberg-spark-runtime-3.5_2.12-*.jar"
# Present in a good runtime jar; missing from the broken 1.0.3 PyPI build.
_SHADED_JACKSON = "org/apache/iceberg/shaded/com/fasterxml/jackson/core/JsonFactoryBuilder.class"
_CATALOG_IMPL = {
    "glue": "org.apache.iceberg.aws.glue.GlueCatalog",
}


class SparkSetupError(RuntimeError):
    """Spark cannot start here; the message says what to install or change."""


def java_major_version(java: str | None = None) -> int:
    """Return the major version of the Java that Spark will launch.

    Args:
        java: The java executable; default ``$JAVA_HOME/bin/java`` or ``java`` on PATH.

    Returns:
        The major version (8, 11, 17, 21, ...).

    Raises:
        SparkSetupError: No Java is found or its version cannot be read.
    """
    if java is None:
        home = os.environ.get("JAVA_HOME")
        java = str(Path(home) / "bin" / "java") if home else shutil.which("java")
    if not java or not Path(java).exists():
        raise SparkSetupError(
            "Java was not found: Spark 3.5 needs Java 17 (JAVA_HOME or `java` on PATH). "
            "On Debian/Ubuntu: apt-get install -y openjdk-17-jre-headless"
        )
    try:
        out = subprocess.run([java, "-version"], capture_output=True, text=True, timeout=30, check=False)
    except OSError as exc:
        raise SparkSetupError(f"cannot run {java}: {exc}") from exc
    match = re.search(r'version "(\d+)(?:\.(\d+))?', out.stderr + out.stdout)
    if not match:
        raise SparkSetupError(f"cannot read the Java version from `{java} -version`: {out.stderr.strip()}")
    major = int(match.group(1))
    return int(match.group(2)) if major == 1 and match.group(2) else major


def check_java(java: str | None = None) -> int:
    """Fail early, with one clear message, when Java is missing or too old.

    Args:
        java: The java executable to check (default as in :func:`java_major_version`).

    Returns:
        The Java major version.

    Raises:
        SparkSetupError: Java is missing or older than 11.
    """
    major = java_major_version(java)
    if major < MIN_JAVA:
        raise SparkSetupError(
            f"Java {major} is too old: Spark 3.5 with Iceberg 1.10 needs Java {MIN_JAVA}+ "
            f"(EMR 7.x runs Java {TESTED_JAVA}). Set JAVA_HOME to a Java {TESTED_JAVA} installation."
        )
    if major != TESTED_JAVA:
        log.warning("Java %d found; silverline is tested on Java %d", major, TESTED_JAVA)
    return major


def check_iceberg_jar(jar: Path) -> Path:
    """Verify that an Iceberg runtime jar exists and is complete.

    Args:
        jar: Path to ``iceberg-spark-runtime-3.5_2.12-*.jar``.

    Returns:
        The absolute path.

    Raises:
        SparkSetupError: The file is missing, not a jar, or lacks the shaded classes.
    """
    if not jar.is_file():
        raise SparkSetupError(f"Iceberg jar not found: {jar}")
    try:
        with zipfile.ZipFile(jar) as archive:
            names = set(archive.namelist())
    except zipfile.BadZipFile as exc:
        raise SparkSetupError(f"{jar} is not a jar file") from exc
    if _SHADED_JACKSON not in names:
        raise SparkSetupError(
            f"{jar} lacks Iceberg's shaded Jackson classes (a known broken build, e.g. "
            "snowpark-connect-deps-iceberg 1.0.3). Install snowpark-connect-deps-iceberg==1.0.2 "
            "or set spark.iceberg_jar to a good iceberg-spark-runtime-3.5_2.12 jar."
        )
    return jar.resolve()


def find_iceberg_jar() -> Path:
    """Locate the Iceberg Spark runtime jar shipped by the pinned PyPI package.

    Returns:
        The verified jar path.

    Raises:
        SparkSetupError: The package is not installed or holds no usable jar.
    """
    spec = importlib_util.find_spec(_JAR_PACKAGE)
    if spec is None or not spec.submodule_search_locations:
        raise SparkSetupError(
            "the Iceberg Spark runtime jar is missing: pip install snowpark-connect-deps-iceberg==1.0.2 "
            "(or set spark.iceberg_jar / spark.iceberg_packages)"
        )
    jars = sorted(Path(next(iter(spec.submodule_search_locations))).glob(f"jars/{_JAR_GLOB}"))
    if not jars:
        raise SparkSetupError(f"no {_JAR_GLOB} inside the {_JAR_PACKAGE} package")
    return check_iceberg_jar(jars[-1])


def read_defaults_file(path: str | Path) -> dict[str, str]:
    """Read a spark-defaults style file (``key<whitespace>value``, ``#`` comments).

    Args:
        path: The file.

    Returns:
        Settings in file order.

    Raises:
        SparkSetupError: The file cannot be read or a line has no value.
    """
    try:
        text = Path(path).read_text(encoding="utf-8")
    except OSError as exc:
        raise SparkSetupError(f"spark.defaults_file {path}: {exc.strerror or exc}") from exc
    settings: dict[str, str] = {}
    for number, line in enumerate(text.splitlines(), start=1):
        line = line.strip()
        if not line or line.startswith("#"):
            continue
        parts = line.split(None, 1)
        if len(parts) != 2:
            raise SparkSetupError(f"{path}:{number}: expected 'key value', got {line!r}")
        settings[parts[0]] = parts[1].strip()
    return settings


def ops_catalog_name(config: SilverlineConfig) -> str:
    """Name of the Iceberg catalog holding the job's own tables (ledger, metrics, ...)."""
    return f"{config.catalog.name}_ops"


def _one_catalog(config: SilverlineConfig, name: str, warehouse: str) -> dict[str, str]:
    prefix = f"spark.sql.catalog.{name}"
    settings = {prefix: "org.apache.iceberg.spark.SparkCatalog"}
    if config.catalog.type in _CATALOG_IMPL:
        settings[f"{prefix}.catalog-impl"] = _CATALOG_IMPL[config.catalog.type]
    else:
        settings[f"{prefix}.type"] = config.catalog.type
    settings[f"{prefix}.warehouse"] = warehouse
    for key, value in config.catalog.properties.items():
        settings[f"{prefix}.{key}"] = value
    return settings


def catalog_settings(config: SilverlineConfig) -> dict[str, str]:
    """Spark settings that register the silver catalog and the ops catalog.

    The silver catalog's warehouse is the lake (tenant tables at
    ``<bucket>.<tenant>.silver.<dataset>``); the ops catalog's is the ops root,
    outside every tenant prefix.

    Args:
        config: The job configuration.

    Returns:
        ``spark.sql.catalog.<name>.*`` settings.
    """
    settings = _one_catalog(config, config.catalog.name, config.warehouse)
    settings.update(_one_catalog(config, ops_catalog_name(config), config.ops_root + "tables/"))
    return settings


def session_settings(config: SilverlineConfig) -> dict[str, str]:
    """All settings the factory applies, lowest precedence first.

    Args:
        config: The job configuration.

    Returns:
        The merged settings (defaults file, jars, catalog, then ``spark.conf``).
    """
    settings: dict[str, str] = {}
    if config.spark.defaults_file:
        settings.update(read_defaults_file(config.spark.defaults_file))
    if config.mode == "local":
        if config.spark.iceberg_packages:
            settings["spark.jars.packages"] = config.spark.iceberg_packages
        else:
            jar = (
                check_iceberg_jar(Path(config.spark.iceberg_jar))
                if config.spark.iceberg_jar
                else find_iceberg_jar()
            )
            settings["spark.jars"] = str(jar)
    settings.update(catalog_settings(config))
    # Python workers are forked from a daemon that has the batch tasks' code imported.
    settings["spark.python.daemon.module"] = "jobs.sparkworker"
    settings.update(config.spark.conf)
    return settings


# Known JVM warnings that need no action, off unless logging at DEBUG (local mode only).
QUIET_LOG4J = Path(__file__).with_name("log4j2-quiet.properties")


def quiet_java_options(options: str) -> str:
    """The driver's Java options with :data:`QUIET_LOG4J` as log4j2's configuration (unless one is set)."""
    if "log4j2.configurationFile" in options or "log4j.configurationFile" in options:
        return options
    return f"{options} -Dlog4j2.configurationFile={QUIET_LOG4J.as_uri()}".strip()


# Set (to 1) by ``silverline --verbose``; inherited by the processes it starts.
VERBOSE_ENV = "SILVERLINE_VERBOSE_SPARK"


def console_settings(settings: dict[str, str], *, verbose: bool) -> dict[str, str]:
    """Local runs keep Spark's console quiet: no stage progress bars, known JVM warnings off.

    ``verbose`` (``silverline --verbose``, or ``--log-level DEBUG``) brings both back.
    """
    quiet = dict(settings)
    if verbose:
        quiet["spark.ui.showConsoleProgress"] = "true"
        return quiet
    quiet.setdefault("spark.ui.showConsoleProgress", "false")
    quiet["spark.driver.extraJavaOptions"] = quiet_java_options(
        quiet.get("spark.driver.extraJavaOptions", "")
    )
    return quiet


def use_utc_local_time() -> None:
    """Make this process's local time UTC: pyspark returns timestamps as naive local times."""
    os.environ["TZ"] = "UTC"
    time.tzset()


def build_spark_session(config: SilverlineConfig, extra: Mapping[str, str] | None = None) -> SparkSession:
    """Create (or return the active) SparkSession for this configuration.

    Args:
        config: The job configuration.
        extra: Settings that override everything else (e.g. from a CLI flag).

    Returns:
        The session.

    Raises:
        SparkSetupError: Java or the Iceberg jar is missing or unusable.
    """
    from pyspark.sql import SparkSession

    settings = session_settings(config)
    settings.update(extra or {})
    builder = SparkSession.builder.appName(config.spark.app_name)
    if config.mode == "local":
        check_java()
        builder = builder.master(config.spark.master or "local[*]")
        # Tasks run Python (the event parser): in this process's environment, where the
        # package is installed, not whatever `python3` the PATH finds first. (pyspark reads
        # only the variable; on EMR the archive's python is set by spark.pyspark.python.)
        os.environ.setdefault("PYSPARK_PYTHON", sys.executable)
        # One machine: bind to loopback rather than warn that the hostname resolves to it.
        os.environ.setdefault("SPARK_LOCAL_IP", "127.0.0.1")
        verbose = os.environ.get(VERBOSE_ENV) == "1" or logging.getLogger().isEnabledFor(logging.DEBUG)
        settings = console_settings(settings, verbose=verbose)
    elif config.spark.master:
        builder = builder.master(config.spark.master)
    for key, value in settings.items():
        builder = builder.config(key, value)
    log.info("starting Spark (%s mode, catalog %s)", config.mode, config.catalog.name)
    session = builder.getOrCreate()
    session.sparkContext.setLogLevel("WARN")
    load_catalogs(session, [config.catalog.name, ops_catalog_name(config)])
    return session


def load_catalogs(session: SparkSession, names: Sequence[str]) -> None:
    """Load the job's catalogs now, in this (the driver's main) thread.

    Spark loads a catalog plugin on its first use. A first use from another Python
    thread (the commits run on a thread pool) has no active session on the JVM side,
    finds no ``spark.sql.catalog.<name>``, and Iceberg's name resolution then falls back
    to ``spark_catalog``: ``REQUIRES_SINGLE_PART_NAMESPACE`` for every tenant table.
    A catalog that cannot be loaded is logged here and fails where it is used.
    """
    manager = session._jsparkSession.sessionState().catalogManager()
    for name in names:
        try:
            manager.catalog(name)
        except Exception as exc:
            first = str(exc).splitlines()[0] if str(exc) else type(exc).__name__
            log.warning("catalog %s could not be loaded: %s", name, first)

"""Schema evolution of tenant tables at startup: contracts may grow, never break.

Adding a column to a contract adds it (nullable) to every existing tenant table
of that dataset, in place: Iceberg only writes new metadata, no data file is
rewritten, and old rows read the new column as null. Widening a type the way
Iceberg allows (int -> bigint, float -> double, decimal(P,S) -> decimal(P',S)
with P' > P) is applied too. Anything else — a narrower or different type, or a
column the tables have and the contract dropped — stops the job before it
starts, with an error that names the dataset, the column and the fix. Every
table is planned before any is changed, so a refused change changes nothing.

With 100,000 tenants that check is hundreds of thousands of table loads, so it is
not repeated while nothing it depends on changed: after a full check the
fingerprint of the contracts it checked against (and of the release's table
layout) goes to ``<ops_root>schema-checks/last.json``, and a start-up whose
fingerprint is that one skips the scan. Only the last check counts: going back to
earlier contracts checks again (a column the tables gained since is then refused as
dropped). Reading or writing that marker never stops a start-up; without it the
tables are checked.
"""

from __future__ import annotations

import hashlib
import json
import logging
import os
import re
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING
from urllib.parse import unquote, urlparse

from jobs.config import ConfigError, SilverlineConfig
from jobs.contracts import DatasetContract
from jobs.silver.commit import silver_columns
from jobs.storage import QUARANTINE, SILVER, table_name

if TYPE_CHECKING:
    from pyspark.sql import SparkSession

log = logging.getLogger(__name__)

_DECIMAL = re.compile(r"^decimal\((\d+),(\d+)\)$")
_WIDENINGS = {("int", "bigint"), ("float", "double")}


class SchemaEvolutionError(ConfigError):
    """A contract change the existing tables cannot follow."""


@dataclass(frozen=True)
class ColumnChange:
    """One change to one table: add a column or widen its type."""

    table: str
    column: str
    action: str  # "add" | "widen"
    type: str

    def sql(self) -> str:
        """The ``ALTER TABLE`` statement."""
        if self.action == "add":
            return f"ALTER TABLE {self.table} ADD COLUMNS (`{self.column}` {self.type})"
        return f"ALTER TABLE {self.table} ALTER COLUMN `{self.column}` TYPE {self.type}"


def normalise_type(spark_type: str) -> str:
    """A Spark SQL type as the contracts spell it (``integer`` -> ``int``, no spaces)."""
    value = spark_type.strip().lower().replace(" ", "")
    return {"integer": "int", "long": "bigint", "short": "smallint"}.get(value, value)


def is_widening(old: str, new: str) -> bool:
    """Whether Iceberg can change a column from ``old`` to ``new`` in place."""
    if (old, new) in _WIDENINGS:
        return True
    old_dec, new_dec = _DECIMAL.match(old), _DECIMAL.match(new)
    return bool(old_dec and new_dec and new_dec[2] == old_dec[2] and int(new_dec[1]) > int(old_dec[1]))


def plan_table(
    table: str,
    contract: DatasetContract,
    zone: str,
    current: Sequence[tuple[str, str]],
) -> list[ColumnChange]:
    """The changes that bring one table to its contract.

    Args:
        table: The table identifier.
        contract: The dataset's contract.
        zone: ``silver`` or ``quarantine`` (which columns the table must have).
        current: The table's columns now, (name, Spark SQL type).

    Returns:
        Columns to add and to widen, in contract order.

    Raises:
        SchemaEvolutionError: A change the table cannot follow; the message names the
            dataset, the column and the fix.
    """
    have = {name: normalise_type(kind) for name, kind in current}
    want = [(name, normalise_type(kind)) for name, kind in silver_columns(contract, zone)]
    wanted = {name for name, _ in want}
    required = {c.name for c in contract.columns if not c.nullable}
    for name in have:
        if name not in wanted:
            kind = "required column" if name in required else "column"
            raise SchemaEvolutionError(
                f"dataset {contract.name!r}: {kind} {name!r} of existing table {table} is no longer in the "
                f"contract. Columns cannot be dropped in place: put {name!r} back in the contract (rows "
                "that lack it read as null), or migrate the tables before deploying the change"
            )
    changes = []
    for name, kind in want:
        old = have.get(name)
        if old is None:
            changes.append(ColumnChange(table, name, "add", kind))
        elif old != kind:
            if not is_widening(old, kind):
                raise SchemaEvolutionError(
                    f"dataset {contract.name!r}: column {name!r} is {old} in existing table {table} and "
                    f"{kind} in the contract. Only widening (int->bigint, float->double, a larger decimal "
                    f"precision) is done in place: declare {name!r} as {old} again, or add a new column "
                    f"with the new type"
                )
            changes.append(ColumnChange(table, name, "widen", kind))
    return changes


def tables_in_ledger(spark: SparkSession, config: SilverlineConfig) -> list[tuple[str, str, str]]:
    """(tenant, zone, dataset) of the tenant tables that exist for the pairs the ledger knows.

    Glue cannot list tables by tenant (one database per group, names hashed where Glue's
    alphabet needs it), so the ledger says which (tenant, dataset) pairs were ever applied.
    """
    from pyspark.sql import functions as F

    from jobs.stream.ops import ops_table

    ledger = ops_table(config, "ledger")
    if not spark.catalog.tableExists(ledger):
        return []
    pairs = (
        spark.table(ledger)
        .filter(F.col("bucket") == config.group.bucket)
        .select("tenant", "dataset")
        .distinct()
        .collect()
    )
    found = []
    for row in sorted(pairs, key=lambda r: (r["tenant"], r["dataset"])):
        for zone in (SILVER, QUARANTINE):
            name = table_name(config, config.group.bucket, row["tenant"], row["dataset"], zone)
            if spark.catalog.tableExists(name):
                found.append((row["tenant"], zone, row["dataset"]))
    return found


def tables_on_disk(warehouse: Path, bucket: str) -> list[tuple[str, str, str]]:
    """(tenant, zone, dataset) of every silver and quarantine table of a bucket in a local hadoop catalog.

    Read from the directories, as Iceberg's hadoop catalog itself lists them: a table is a
    directory whose ``metadata/`` holds a ``*.metadata.json`` file. The lake mirrors the
    bucket, so the bucket's directory holds every tenant's raw objects too: asking the
    catalog instead costs two failed ``SHOW TABLES`` for each tenant without tables
    (7 s for 300 tenants here), at every start-up after a contract change.
    """
    found = []
    for zone in (SILVER, QUARANTINE):
        for metadata in (warehouse / bucket).glob(f"*/{zone}/*/metadata"):
            if any(metadata.glob("*.metadata.json*")):
                found.append((metadata.parent.parent.parent.name, zone, metadata.parent.name))
    return sorted(found)


def existing_tables(spark: SparkSession, catalog: str, bucket: str) -> list[tuple[str, str, str]]:
    """(tenant, zone, dataset) of every silver and quarantine table of a bucket in the catalog."""
    found = []
    tenants = spark.sql(f"SHOW NAMESPACES IN `{catalog}`.`{bucket}`").collect()
    for row in tenants:
        tenant = row[0].split(".")[-1].strip("`")
        for zone in (SILVER, QUARANTINE):
            namespace = f"`{catalog}`.`{bucket}`.`{tenant}`.`{zone}`"
            try:
                tables = spark.sql(f"SHOW TABLES IN {namespace}").collect()
            except Exception:  # no such namespace: the tenant has no table of this zone
                continue
            found += [(tenant, zone, t["tableName"]) for t in tables]
    return found


def evolve_tables(
    spark: SparkSession, config: SilverlineConfig, contracts: Mapping[str, DatasetContract]
) -> list[ColumnChange]:
    """Plan every existing tenant table of the group against its contract, then apply.

    Args:
        spark: The session.
        config: The job configuration (catalog and bucket).
        contracts: Dataset contracts by name.

    Returns:
        The changes applied.

    Raises:
        SchemaEvolutionError: A table cannot follow its contract (nothing was changed).
    """
    catalog, bucket = config.catalog.name, config.group.bucket
    fingerprint = contracts_fingerprint(config, contracts)
    if last_check(config) == fingerprint:
        log.info("schema check: contracts and table layout as at the last check; tables not scanned")
        return []
    try:
        if config.catalog.type == "glue":
            tables = tables_in_ledger(spark, config)
        elif config.catalog.type == "hadoop" and config.warehouse.startswith("file:"):
            tables = tables_on_disk(Path(unquote(urlparse(config.warehouse).path)), bucket)
        else:
            tables = existing_tables(spark, catalog, bucket)
    except Exception as exc:  # no namespace for the bucket yet: a new group
        log.debug("no tenant tables yet in %s.%s: %s", catalog, bucket, exc)
        record_check(config, fingerprint, tables=0, changes=0)
        return []
    planned: list[ColumnChange] = []
    for tenant, zone, dataset in tables:
        contract = contracts.get(dataset)
        if contract is None:
            log.warning("table %s/%s/%s has no contract any more; left as it is", tenant, zone, dataset)
            continue
        name = table_name(config, bucket, tenant, dataset, zone)
        fields = spark.table(name).schema.fields
        planned += plan_table(name, contract, zone, [(f.name, f.dataType.simpleString()) for f in fields])
    for change in planned:
        log.info("schema evolution: %s", change.sql())
        spark.sql(change.sql())
    log.info("schema check: %d tables, %d column changes", len(tables), len(planned))
    record_check(config, fingerprint, tables=len(tables), changes=len(planned))
    return planned


def contracts_fingerprint(config: SilverlineConfig, contracts: Mapping[str, DatasetContract]) -> str:
    """A digest of the contracts as the group's tables follow them, and of the release's table layout."""
    described = {
        name: [
            contract.model_dump(mode="json"),
            *(silver_columns(contract, zone) for zone in (SILVER, QUARANTINE)),
        ]
        for name, contract in sorted(contracts.items())
    }
    text = json.dumps([config.catalog.name, config.group.bucket, described], sort_keys=True, default=str)
    return hashlib.sha256(text.encode()).hexdigest()[:32]


def _marker_uri(config: SilverlineConfig) -> str:
    return f"{config.ops_root}schema-checks/last.json"


def last_check(config: SilverlineConfig) -> str | None:
    """The fingerprint of the last full check, or None (none yet, or the marker cannot be read)."""
    uri = _marker_uri(config)
    try:
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            path = Path(unquote(parsed.path))
            data = path.read_bytes() if path.is_file() else b""
        else:
            from jobs.bridge.landing import open_file_store

            store = open_file_store(uri.rsplit("/", 1)[0] + "/", config)
            data = store.read("last.json") if "last.json" in store.names() else b""
        return str(json.loads(data)["fingerprint"]) if data else None
    except Exception as exc:  # best effort: the tables are checked
        log.warning("schema check: cannot read %s (%s); checking every table", uri, exc)
        return None


def record_check(config: SilverlineConfig, fingerprint: str, *, tables: int, changes: int) -> None:
    """Remember a full check's fingerprint; a failure only means the next start-up checks again."""
    uri = _marker_uri(config)
    data = json.dumps({"fingerprint": fingerprint, "tables": tables, "changes": changes}).encode()
    try:
        parsed = urlparse(uri)
        if parsed.scheme == "file":  # not through the bronze store: its faults are not this file's
            path = Path(unquote(parsed.path))
            path.parent.mkdir(parents=True, exist_ok=True)
            tmp = path.with_name(f".{path.name}.{os.getpid()}")
            tmp.write_bytes(data)
            os.replace(tmp, path)
        else:
            from jobs.bridge.landing import open_file_store

            open_file_store(uri.rsplit("/", 1)[0] + "/", config).write("last.json", data)
    except Exception as exc:
        log.warning("schema check: cannot record it in %s (%s); the next start-up checks again", uri, exc)

"""Table names per catalog: multi-level namespaces locally, one Glue database per tenant group."""

from __future__ import annotations

import pytest

from jobs.config import load_config
from jobs.storage import glue_database, glue_name, table_name
from jobs.stream.ops import ops_table

pytestmark = pytest.mark.unit


def config(catalog_type: str, group: str = "eu-1") -> object:
    return load_config(
        None,
        environ={},
        overrides={"group": {"name": group, "bucket": "tenants-eu1"}, "catalog": {"type": catalog_type}},
    )


def test_a_hadoop_catalog_keeps_the_bucket_tenant_zone_namespace() -> None:
    hadoop = config("hadoop")
    assert table_name(hadoop, "tenants-eu1", "acme", "orders") == (
        "`silverline`.`tenants-eu1`.`acme`.`silver`.`orders`"
    )
    assert table_name(hadoop, "tenants-eu1", "acme", "orders", "quarantine") == (
        "`silverline`.`tenants-eu1`.`acme`.`quarantine`.`orders`"
    )
    assert ops_table(hadoop, "ledger") == "silverline_ops.ops.ledger"


def test_glue_puts_a_groups_tables_in_one_database_with_glue_safe_names() -> None:
    glue = config("glue")
    assert (
        table_name(glue, "tenants-eu1", "acme", "orders") == "`silverline`.`silverline_eu_1`.`acme__orders`"
    )
    assert table_name(glue, "tenants-eu1", "acme", "orders", "quarantine") == (
        "`silverline`.`silverline_eu_1`.`acme__orders__quarantine`"
    )
    assert ops_table(glue, "ledger") == "silverline_ops.silverline_eu_1_ops.ledger"  # not shared by groups
    assert glue_database("EU-west-2") == "silverline_eu_west_2"


@pytest.mark.parametrize(
    ("first", "second"),
    [("Acme", "acme"), ("a-b", "a_b"), ("a__b", "a_b"), ("x-y", "X-Y")],
)
def test_names_outside_glues_alphabet_never_share_a_table(first: str, second: str) -> None:
    assert glue_name(first) != glue_name(second)
    for name in (first, second):
        encoded = glue_name(name)
        assert encoded == encoded.lower() and set(encoded) <= set("abcdefghijklmnopqrstuvwxyz0123456789_")
    glue = config("glue")
    assert table_name(glue, "b", first, "d") != table_name(glue, "b", second, "d")


def test_tenant_and_dataset_cannot_trade_underscores() -> None:
    glue = config("glue")
    assert table_name(glue, "b", "a__b", "orders") != table_name(glue, "b", "a", "b__orders")
    assert glue_name("acme") == "acme" and glue_name("orders_v2") == "orders_v2"  # plain names stay readable
    assert glue_name("Acme") == "acme_" + __import__("hashlib").sha256(b"Acme").hexdigest()[:8]

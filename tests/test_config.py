"""Configuration: file, environment and flag precedence; validation messages name the key."""

from __future__ import annotations

from pathlib import Path

import pytest
from pydantic import ValidationError

from jobs.config import ConfigError, env_overrides, load_config

pytestmark = pytest.mark.unit

PROJECT = Path(__file__).resolve().parents[1]


def write(tmp_path: Path, text: str) -> Path:
    path = tmp_path / "c.yaml"
    path.write_text(text, encoding="utf-8")
    return path


def test_shipped_local_config_loads_with_documented_defaults() -> None:
    config = load_config(PROJECT / "conf" / "local.yaml", environ={})
    assert config.mode == "local"
    assert config.group.bucket == "demo-lake"
    assert config.bridge.max_messages == 10
    assert config.lake.root.startswith("file:///") and config.lake.root.endswith("/lake/")
    assert config.ops_root == config.lake.root + "_ops/demo/"
    assert config.warehouse == config.lake.root


def test_emr_example_validates_as_emr_mode() -> None:
    config = load_config(PROJECT / "conf" / "emr.example.yaml", environ={})
    assert config.mode == "emr"
    assert config.catalog.type == "glue"
    assert config.ops_root.startswith("s3://")


def test_environment_overrides_file_and_flags_override_environment(tmp_path: Path) -> None:
    path = write(tmp_path, "bridge:\n  receivers: 2\nsqs:\n  queue_url: http://file/q\n")
    env = {"SILVERLINE__BRIDGE__RECEIVERS": "6", "SILVERLINE__SQS__QUEUE_URL": "http://env/q"}
    config = load_config(path, environ=env, overrides={"sqs": {"queue_url": "http://flag/q"}})
    assert config.bridge.receivers == 6  # env beats file, parsed as int
    assert config.sqs.queue_url == "http://flag/q"  # flag beats env


def test_none_flags_do_not_override(tmp_path: Path) -> None:
    path = write(tmp_path, "sqs:\n  queue_url: http://file/q\n")
    config = load_config(path, environ={}, overrides={"sqs": {"queue_url": None}})
    assert config.sqs.queue_url == "http://file/q"


def test_unknown_key_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "bridge:\n  recievers: 2\n")
    with pytest.raises(ConfigError, match=r"bridge\.recievers: unknown key"):
        load_config(path, environ={})


def test_bad_value_is_named(tmp_path: Path) -> None:
    path = write(tmp_path, "bridge:\n  max_messages: 50\n")
    with pytest.raises(ConfigError, match=r"bridge\.max_messages: .*less than or equal to 10"):
        load_config(path, environ={})


def test_bad_environment_value_is_named() -> None:
    with pytest.raises(ConfigError, match=r"bridge\.receivers"):
        load_config(None, environ={"SILVERLINE__BRIDGE__RECEIVERS": "many"})


def test_bad_bucket_name_is_named() -> None:
    with pytest.raises(ConfigError, match=r"group\.bucket: .*bucket name"):
        load_config(None, environ={}, overrides={"group": {"bucket": "Bad_Bucket"}})


def test_emr_mode_rejects_local_paths() -> None:
    with pytest.raises(ConfigError, match="s3:// root"):
        load_config(None, environ={}, overrides={"mode": "emr", "lake": {"root": "/tmp/lake"}})


def test_missing_file_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="cannot read config file"):
        load_config(tmp_path / "nope.yaml", environ={})


def test_not_a_mapping_is_a_clear_error(tmp_path: Path) -> None:
    with pytest.raises(ConfigError, match="top level must be a mapping"):
        load_config(write(tmp_path, "- a\n- b\n"), environ={})


def test_config_is_frozen() -> None:
    config = load_config(None, environ={})
    with pytest.raises(ValidationError):
        config.bridge.receivers = 3  # type: ignore[misc]


def test_env_overrides_nest_and_ignore_other_variables() -> None:
    tree = env_overrides({"SILVERLINE__SPARK__CONF__x": "1", "HOME": "/root", "SILVERLINE__MODE": "local"})
    assert tree == {"spark": {"conf": {"x": 1}}, "mode": "local"}


def test_both_jar_sources_rejected() -> None:
    with pytest.raises(ConfigError, match="not both"):
        load_config(
            None, environ={}, overrides={"spark": {"iceberg_jar": "a.jar", "iceberg_packages": "g:a:v"}}
        )


def test_bytes_per_trigger_needs_bounded_bronze_files_and_lowers_the_file_count() -> None:
    with pytest.raises(ConfigError, match=r"bridge\.flush_max_bytes"):
        load_config(None, environ={}, overrides={"stream": {"max_bytes_per_trigger": 10_000_000}})
    with pytest.raises(ConfigError, match=r">= bridge\.flush_max_bytes"):
        load_config(
            None,
            environ={},
            overrides={"stream": {"max_bytes_per_trigger": 2048}, "bridge": {"flush_max_bytes": 4096}},
        )
    config = load_config(
        None,
        environ={},
        overrides={
            "stream": {"max_bytes_per_trigger": 10_000_000, "max_files_per_trigger": 200},
            "bridge": {"flush_max_bytes": 1_000_000},
        },
    )
    assert config.files_per_trigger == 10
    assert load_config(None, environ={}).files_per_trigger == 200  # no byte limit: the file limit

"""Unit tests of the checkpoint pre-flight check and its recovery (jobs.stream.checkpoint).

The files are written here in the formats Spark 3.5 writes (metadata-log text
files, lz4-java block streams, Hadoop ``.crc`` checksums); the end-to-end test
in tests/stream/test_faults_stream.py damages a checkpoint Spark itself wrote.
"""

from __future__ import annotations

import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path

import pytest

from jobs.stream.checkpoint import (
    CheckpointError,
    check_checkpoint,
    checkpoint_problem,
    move_checkpoint_aside,
)

LZ4_END = b"LZ4Block" + struct.pack("<Biii", 0x15, 0, 0, 0)
RAW_BLOCK = b"LZ4Block" + struct.pack("<Biii", 0x15, 4, 4, 0) + b"\xff\xff\xff\xff"


def crc_file(data: bytes, chunk: int = 512) -> bytes:
    sums = b"".join(zlib.crc32(data[i : i + chunk]).to_bytes(4, "big") for i in range(0, len(data), chunk))
    return b"crc\x00" + chunk.to_bytes(4, "big") + sums


def write(path: Path, data: bytes, *, crc: bool = True) -> Path:
    path.parent.mkdir(parents=True, exist_ok=True)
    path.write_bytes(data)
    if crc:
        path.with_name(f".{path.name}.crc").write_bytes(crc_file(data))
    return path


@pytest.fixture
def checkpoint(tmp_path: Path) -> Path:
    cp = tmp_path / "ingest"
    write(cp / "metadata", b'{"id":"0b7c4a52-6a6c-4d5e-9a39-1f2c3d4e5f60"}')
    write(cp / "offsets" / "0", b'v1\n{"batchWatermarkMs":0,"conf":{}}\n{"logOffset":0}')
    write(cp / "offsets" / "1", b'v1\n{"batchWatermarkMs":5,"conf":{}}\n-')
    write(cp / "commits" / "0", b'v1\n{"nextBatchWatermarkMs":0}')
    write(cp / "sources" / "0" / "0", b'v1\n{"path":"file:///b/1.jsonl","timestamp":1,"batchId":0}')
    write(cp / "sources" / "0" / "9.compact", b"v1\n", crc=False)
    write(cp / "state" / "0" / "0" / "1.delta", RAW_BLOCK + LZ4_END)
    write(cp / "state" / "0" / "1" / "10.snapshot", LZ4_END)
    write(cp / "state" / "0" / "0" / "_metadata" / "schema", b"\x00\x02v2\x00\x00\x00\x01binary")
    (cp / "offsets" / ".2.5e1f.tmp").write_bytes(b"half")  # a kill's leftover: hidden, ignored
    return cp


def test_a_sound_checkpoint_and_a_missing_one_pass(checkpoint: Path, tmp_path: Path) -> None:
    assert checkpoint_problem(str(checkpoint)) is None
    assert checkpoint_problem(checkpoint.as_uri() + "/") is None
    assert checkpoint_problem(str(tmp_path / "absent")) is None
    assert checkpoint_problem("s3://ops/checkpoints/ingest/") is None  # not checked here


@pytest.mark.parametrize(
    ("name", "data", "what"),
    [
        ("metadata", b'{"id":"0b7c', "not JSON"),
        ("metadata", b"[]", "no query id"),
        ("offsets/1", b"", "empty"),
        ("offsets/1", b"v1\n", "truncated"),
        ("offsets/1", b'v1\n{"batchWatermarkMs":5,"co', "truncated: 2 lines"),
        ("offsets/1", b'v1\n{"batchWatermarkMs":5}\n{"logOff', "line 3 is not JSON"),
        ("offsets/1", b"PNG garbage\n", "no version line"),
        ("commits/0", b"v1", "truncated"),
        ("sources/0/0", b'v1\n{"path":"file:///b/1.js', "line 2 is not JSON"),
        ("sources/0/9.compact", b"\xff\xfe", "not UTF-8"),
        ("state/0/0/1.delta", RAW_BLOCK, "no lz4 end block"),
        ("state/0/0/1.delta", RAW_BLOCK[:23], "truncated lz4 block at byte 21"),
        ("state/0/0/1.delta", RAW_BLOCK + LZ4_END[:10], "truncated lz4 block header"),
        ("state/0/1/10.snapshot", b"", "empty"),
    ],
)
def test_each_kind_of_damage_is_named_with_the_file_and_the_recovery(
    checkpoint: Path, name: str, data: bytes, what: str
) -> None:
    path = write(checkpoint / name, data, crc=False)
    path.with_name(f".{path.name}.crc").unlink(missing_ok=True)
    problem = checkpoint_problem(str(checkpoint))
    assert problem is not None and what in problem
    assert problem.startswith(f"checkpoint file {path} is damaged")
    assert "--reset-checkpoint" in problem and "\n" not in problem
    with pytest.raises(CheckpointError, match="reset-checkpoint"):
        check_checkpoint(str(checkpoint))


def test_a_change_that_keeps_the_format_is_caught_by_the_checksum(checkpoint: Path) -> None:
    path = checkpoint / "offsets" / "0"
    path.write_bytes(path.read_bytes().replace(b'"logOffset":0', b'"logOffset":7'))
    problem = checkpoint_problem(str(checkpoint))
    assert problem is not None and "does not match its checksum file .0.crc" in problem
    schema = checkpoint / "state" / "0" / "0" / "_metadata" / "schema"
    write(checkpoint / "offsets" / "0", b'v1\n{"batchWatermarkMs":0,"conf":{}}\n{"logOffset":0}')
    schema.write_bytes(b"garbage!")
    assert str(schema) in (checkpoint_problem(str(checkpoint)) or "")


def test_reset_moves_the_checkpoint_aside_and_never_deletes_it(checkpoint: Path) -> None:
    before = sorted(p.relative_to(checkpoint) for p in checkpoint.rglob("*"))
    moment = datetime(2024, 3, 1, 12, 0, 5, tzinfo=UTC)
    moved = move_checkpoint_aside(checkpoint.as_uri() + "/", now=moment)
    assert moved == checkpoint.with_name("ingest.moved-20240301T120005Z")
    assert not checkpoint.exists()
    assert sorted(p.relative_to(moved) for p in moved.rglob("*")) == before
    checkpoint.mkdir()
    again = move_checkpoint_aside(str(checkpoint), now=moment)
    assert again == checkpoint.with_name("ingest.moved-20240301T120005Z-2") and moved.exists()
    assert move_checkpoint_aside(str(checkpoint)) is None  # nothing to move: a fresh start
    with pytest.raises(CheckpointError, match="aws s3 mv"):
        move_checkpoint_aside("s3://ops/checkpoints/ingest/")


def test_a_key_segment_longer_than_the_local_name_limit_is_quarantined_not_a_crash(tmp_path: Path) -> None:
    """Found by the hostile-keys scenario: ENAMETOOLONG used to fail the whole micro-batch."""
    from jobs.objects.fetch import UnreadableError, read_file

    bucket_dir = tmp_path / "demo-lake"
    (bucket_dir / "acme" / "raw" / "orders").mkdir(parents=True)
    key = "acme/raw/orders/" + "s" * 300 + ".csv"  # legal on S3 (keys up to 1,024 bytes)
    with pytest.raises(UnreadableError) as caught:
        read_file(str(bucket_dir / key), key, None, bucket_dir=str(bucket_dir))
    assert (caught.value.status, caught.value.reason) == ("quarantined", "key_too_long_for_filesystem")


def test_a_failed_query_is_one_line_and_names_the_recovery_only_for_checkpoint_files(tmp_path: Path) -> None:
    from jobs.config import load_config
    from jobs.stream.query import checkpoint_uri, failure_message

    config = load_config(None, environ={}, overrides={"lake": {"root": str(tmp_path / "lake")}})
    where = checkpoint_uri(config).removeprefix("file://")
    python_error = (
        "An exception was raised by the Python Proxy. Return Message: Traceback (most recent call last):\n"
        '  File "jobs/objects/fetch.py", line 67, in read_file\n'
        "OSError: [Errno 5] Input/output error: '/lake/demo-lake/acme/raw/orders/a.csv'\n\n"
        f"=== Streaming Query ===\nIdentifier: silverline_ingest\ncheckpoint {where}\n"
        "\tat org.apache.spark.sql.execution.streaming.StreamExecution.run(StreamExecution.scala:1)"
    )
    line = failure_message(Exception(python_error), config)
    assert line == "OSError: [Errno 5] Input/output error: '/lake/demo-lake/acme/raw/orders/a.csv'"
    damaged = f"Log file was malformed: failed to read correct log version from {where}offsets/7.\n\tat x"
    line = failure_message(Exception(damaged), config)
    assert line.startswith("Log file was malformed") and "--reset-checkpoint" in line and "\n" not in line

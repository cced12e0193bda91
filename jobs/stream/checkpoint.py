"""The ingest query's checkpoint: a pre-flight check of its files, and the documented recovery.

Spark reads the checkpoint of a restarted query deep inside its JVM and, when a
file is damaged, fails with a long stack trace that does not say what to do.
:func:`checkpoint_problem` reads every checkpoint file first — ``metadata``,
``offsets/N``, ``commits/N``, ``sources/<i>/N[.compact]``, the state store's
``state/<op>/<partition>/N.delta|.snapshot`` — checks its format and, where the
local filesystem keeps one, its Hadoop ``.crc`` checksum, and returns one line
naming the first damaged file and the recovery (:data:`RECOVERY`).

The recovery, :func:`move_checkpoint_aside` (``silverline stream
--reset-checkpoint``), renames the checkpoint directory (nothing is deleted) so
the query starts again from the first bronze file; the object ledger turns every
event already applied into ``duplicate`` or ``stale``, so nothing is applied
twice (R6). Only ``file://`` checkpoints are checked and moved here; on S3 the
same recovery is a prefix move (see :data:`RECOVERY`).
"""

from __future__ import annotations

import json
import logging
import re
import struct
import zlib
from datetime import UTC, datetime
from pathlib import Path
from urllib.parse import unquote, urlparse

from jobs.config import ConfigError

log = logging.getLogger(__name__)

RECOVERY = (
    "recovery: stop the job and rerun it with `silverline stream --reset-checkpoint` (the checkpoint "
    "is moved aside, never deleted; the query re-reads bronze and the ledger counts what was already "
    "applied as duplicate or stale)"
)
_VERSION_RE = re.compile(r"^v[1-9][0-9]*$")
_BATCH_RE = re.compile(r"^[0-9]+$")
SOURCE_LOG_RE = re.compile(r"^[0-9]+(\.compact)?$")
_STATE_RE = re.compile(r"^[0-9]+\.(delta|snapshot)$")
_LZ4_MAGIC = b"LZ4Block"
_LZ4_HEADER = struct.Struct("<8sBiii")  # magic, token, compressed length, original length, checksum
_CRC_MAGIC = b"crc\x00"


class CheckpointError(ConfigError):
    """A checkpoint cannot be used or moved as asked; the message says what to do.

    A :class:`jobs.config.ConfigError`, so the command line prints it as one line.
    """


def local_path(uri: str) -> Path | None:
    """The local directory of a ``file://`` URI (or a plain path); None for object stores."""
    parsed = urlparse(uri)
    if parsed.scheme == "file":
        return Path(unquote(parsed.path))
    if parsed.scheme == "":
        return Path(uri)
    return None


def checkpoint_problem(uri: str) -> str | None:
    """Check every file of a checkpoint before Spark reads it.

    Args:
        uri: The query's checkpoint location (``file://`` or a path; other schemes are not checked).

    Returns:
        None when the checkpoint is absent or sound, else one line: ``checkpoint file <path>
        is damaged (<what>); <recovery>``.
    """
    root = local_path(uri)
    if root is None or not root.is_dir():
        return None
    for path in sorted(p for p in root.rglob("*") if p.is_file() and not p.name.startswith(".")):
        try:
            data = path.read_bytes()
            what = _crc_problem(path, data) or _format_problem(path.relative_to(root), data)
        except OSError as exc:
            what = f"unreadable: {exc.strerror or exc}"
        if what is not None:
            return f"checkpoint file {path} is damaged ({what}); {RECOVERY}"
    return None


def check_checkpoint(uri: str) -> None:
    """Raise :class:`CheckpointError` when :func:`checkpoint_problem` finds one."""
    problem = checkpoint_problem(uri)
    if problem is not None:
        raise CheckpointError(problem)


def _crc_problem(path: Path, data: bytes) -> str | None:
    """Compare ``data`` with the Hadoop checksum file ``.<name>.crc`` beside it, if there is one."""
    crc_path = path.with_name(f".{path.name}.crc")
    if not crc_path.is_file():
        return None
    crc = crc_path.read_bytes()
    if len(crc) < 8 or crc[:4] != _CRC_MAGIC:
        return f"its checksum file {crc_path.name} is malformed"
    chunk = int.from_bytes(crc[4:8], "big")
    if chunk <= 0:
        return f"its checksum file {crc_path.name} is malformed"
    sums = [zlib.crc32(data[i : i + chunk]) for i in range(0, len(data), chunk)]
    stored = [int.from_bytes(crc[8 + 4 * i : 12 + 4 * i], "big") for i in range((len(crc) - 8) // 4)]
    if sums != stored:
        return f"content does not match its checksum file {crc_path.name}"
    return None


def _format_problem(relative: Path, data: bytes) -> str | None:
    """What is wrong with one file's content, judged by its place in the checkpoint."""
    parts = relative.parts
    if parts == ("metadata",):
        return _metadata_problem(data)
    if len(parts) == 2 and parts[0] == "offsets" and _BATCH_RE.match(parts[1]):
        return _log_problem(data, min_lines=3, dash_ok=True)
    if len(parts) == 2 and parts[0] == "commits" and _BATCH_RE.match(parts[1]):
        return _log_problem(data, min_lines=2)
    if len(parts) == 3 and parts[0] == "sources" and SOURCE_LOG_RE.match(parts[2]):
        return _log_problem(data, min_lines=1)
    if parts[0] == "state" and _STATE_RE.match(parts[-1]) and data[: len(_LZ4_MAGIC)] == _LZ4_MAGIC:
        return _lz4_problem(data)
    if parts[0] == "state" and _STATE_RE.match(parts[-1]) and not data:
        return "empty"
    return None


def _metadata_problem(data: bytes) -> str | None:
    try:
        value = json.loads(data.decode("utf-8"))
    except (UnicodeDecodeError, ValueError):
        return "not JSON"
    if not isinstance(value, dict) or not isinstance(value.get("id"), str):
        return "no query id"
    return None


def _log_problem(data: bytes, *, min_lines: int, dash_ok: bool = False) -> str | None:
    """A metadata-log file: a version line, then one JSON value per line."""
    try:
        lines = data.decode("utf-8").split("\n")
    except UnicodeDecodeError:
        return "not UTF-8 text"
    if lines and lines[-1] == "":
        lines.pop()
    if not lines or not _VERSION_RE.match(lines[0]):
        return "no version line" if data else "empty"
    if len(lines) < min_lines:
        return f"truncated: {len(lines)} lines, at least {min_lines} expected"
    for number, line in enumerate(lines[1:], start=2):
        if dash_ok and line == "-":
            continue
        try:
            json.loads(line)
        except ValueError:
            return f"line {number} is not JSON"
    return None


def _lz4_problem(data: bytes) -> str | None:
    """Walk the block headers of an lz4-java block stream; it must end with the empty end block."""
    offset = 0
    while offset < len(data):
        if len(data) - offset < _LZ4_HEADER.size:
            return f"truncated lz4 block header at byte {offset}"
        magic, _token, compressed, original, _checksum = _LZ4_HEADER.unpack_from(data, offset)
        if magic != _LZ4_MAGIC or compressed < 0 or original < 0:
            return f"bad lz4 block at byte {offset}"
        offset += _LZ4_HEADER.size
        if compressed == 0 and original == 0:
            return None if offset == len(data) else f"data after the end block at byte {offset}"
        if offset + compressed > len(data):
            return f"truncated lz4 block at byte {offset}"
        offset += compressed
    return "no lz4 end block (truncated)"


def move_checkpoint_aside(uri: str, now: datetime | None = None) -> Path | None:
    """Rename the checkpoint directory to ``<name>.moved-<UTC time>`` beside it (nothing is deleted).

    Args:
        uri: The query's checkpoint location.
        now: The time stamped into the new name (default: now).

    Returns:
        Where the checkpoint went, or None when there was none.

    Raises:
        CheckpointError: The checkpoint is not on a local filesystem (move the prefix by hand).
    """
    root = local_path(uri)
    if root is None:
        raise CheckpointError(
            f"--reset-checkpoint moves only local checkpoints; move {uri} aside by hand "
            f"(e.g. `aws s3 mv --recursive {uri} {uri.rstrip('/')}.moved-<time>/`) and restart"
        )
    root = Path(str(root).rstrip("/"))
    if not root.exists():
        log.info("no checkpoint at %s: the query starts from the first bronze file", root)
        return None
    stamp = (now or datetime.now(UTC)).strftime("%Y%m%dT%H%M%SZ")
    target = root.with_name(f"{root.name}.moved-{stamp}")
    suffix = 1
    while target.exists():
        suffix += 1
        target = root.with_name(f"{root.name}.moved-{stamp}-{suffix}")
    root.rename(target)
    log.warning(
        "checkpoint moved aside to %s: the query re-reads bronze from the start; the ledger counts "
        "events already applied as duplicate or stale",
        target,
    )
    return target

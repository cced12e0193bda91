"""The writer lease: at most one process applies events to a tenant group's tables.

The stream holds it while it runs and renews it every few seconds; a backfill or
replay that finds it held hands its events to the holder (:mod:`jobs.stream.handoff`)
instead of committing next to it, and applies them itself when nobody holds it.
A lease that was not renewed for ``ttl`` seconds (its holder died) can be taken over.

Locally the lease is ``<ops_root>leases/writer.json``, created with ``O_EXCL``; on
S3 it is an object written with conditional PUTs (``If-None-Match: *`` to create,
``If-Match: <eTag>`` to renew or take over), so two processes never both win.
"""

from __future__ import annotations

import json
import logging
import os
import socket
import threading
import time
import uuid
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING, Any, Protocol
from urllib.parse import unquote, urlparse

from jobs.config import ConfigError, SilverlineConfig

if TYPE_CHECKING:
    from mypy_boto3_s3 import S3Client

log = logging.getLogger(__name__)

DEFAULT_TTL_SECONDS = 60.0
RENEW_SECONDS = 10.0


class LeaseLostError(RuntimeError):
    """Another process holds the writer lease now: this one must not commit."""


@dataclass(frozen=True)
class Holder:
    """Who holds the lease, as recorded in it."""

    owner: str
    role: str
    renewed_at: float
    host: str = ""
    pid: int = 0

    @classmethod
    def from_record(cls, data: dict[str, Any]) -> Holder:
        """Read a lease record (missing fields: an abandoned lease)."""
        return cls(
            owner=str(data.get("owner")),
            role=str(data.get("role")),
            renewed_at=float(data.get("renewed_at", 0.0)),
            host=str(data.get("host", "")),
            pid=int(data.get("pid", 0)),
        )

    def age(self) -> float:
        """Seconds since the last renewal."""
        return time.time() - self.renewed_at

    def alive(self, ttl: float) -> bool:
        """Renewed within ``ttl`` and, when it ran on this host, its process still exists."""
        if self.age() >= ttl:
            return False
        if self.host == socket.gethostname() and self.pid > 0:
            try:
                os.kill(self.pid, 0)
            except ProcessLookupError:
                return False  # killed without releasing: no need to wait for the ttl
            except PermissionError:
                return True
        return True


class _Slot(Protocol):
    def read(self) -> tuple[dict[str, Any] | None, str | None]: ...

    def create(self, data: bytes) -> bool: ...

    def replace(self, data: bytes, token: str | None) -> bool: ...

    def delete(self) -> None: ...


class _LocalSlot:
    def __init__(self, path: Path) -> None:
        self.path = path

    def read(self) -> tuple[dict[str, Any] | None, str | None]:
        try:
            text = self.path.read_text(encoding="utf-8")
        except FileNotFoundError:
            return None, None
        try:
            return json.loads(text), text
        except ValueError:
            return {}, text  # torn or foreign content: treated as an expired lease

    def create(self, data: bytes) -> bool:
        self.path.parent.mkdir(parents=True, exist_ok=True)
        try:
            fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_EXCL, 0o644)
        except FileExistsError:
            return False
        with os.fdopen(fd, "wb") as handle:
            handle.write(data)
        return True

    def replace(self, data: bytes, token: str | None) -> bool:
        _, current = self.read()
        if current != token:
            return False
        tmp = self.path.with_name(f".{self.path.name}.{uuid.uuid4().hex}")
        tmp.write_bytes(data)
        os.replace(tmp, self.path)
        return True

    def delete(self) -> None:
        self.path.unlink(missing_ok=True)


class _S3Slot:
    def __init__(self, client: S3Client, bucket: str, key: str) -> None:
        self.client, self.bucket, self.key = client, bucket, key

    def read(self) -> tuple[dict[str, Any] | None, str | None]:
        from botocore.exceptions import ClientError

        try:
            response = self.client.get_object(Bucket=self.bucket, Key=self.key)
        except ClientError as exc:
            if exc.response.get("Error", {}).get("Code") in ("NoSuchKey", "404"):
                return None, None
            raise
        try:
            return json.loads(response["Body"].read()), response["ETag"]
        except ValueError:
            return {}, response["ETag"]

    def _put(self, data: bytes, **condition: str) -> bool:
        from botocore.exceptions import ClientError

        try:
            self.client.put_object(Bucket=self.bucket, Key=self.key, Body=data, **condition)  # type: ignore[arg-type]
        except ClientError as exc:
            code = exc.response.get("Error", {}).get("Code")
            if code in ("PreconditionFailed", "ConditionalRequestConflict"):
                return False
            raise
        return True

    def create(self, data: bytes) -> bool:
        return self._put(data, IfNoneMatch="*")

    def replace(self, data: bytes, token: str | None) -> bool:
        return self._put(data, IfMatch=token or "*")

    def delete(self) -> None:
        self.client.delete_object(Bucket=self.bucket, Key=self.key)


class WriterLease:
    """The writer lease of one tenant group."""

    def __init__(self, slot: _Slot, role: str, ttl: float = DEFAULT_TTL_SECONDS) -> None:
        """Create a handle (nothing is acquired yet).

        Args:
            slot: Where the lease lives.
            role: What this process is (``stream``, ``backfill``, ``replay``), for messages.
            ttl: Seconds without renewal after which the lease counts as abandoned.
        """
        self._slot = slot
        self.role = role
        self.ttl = ttl
        self.owner = f"{role}@{socket.gethostname()}:{os.getpid()}:{uuid.uuid4().hex[:8]}"
        self._token: str | None = None
        self._renewed = 0.0
        self._lock = threading.RLock()  # the heartbeat thread renews while the writer verifies
        self._stop_beat = threading.Event()
        self._heartbeat: threading.Thread | None = None

    @classmethod
    def for_config(cls, config: SilverlineConfig, role: str, ttl: float = DEFAULT_TTL_SECONDS) -> WriterLease:
        """The lease under ``<ops_root>leases/writer.json``."""
        uri = f"{config.ops_root}leases/writer.json"
        parsed = urlparse(uri)
        if parsed.scheme == "file":
            return cls(_LocalSlot(Path(unquote(parsed.path))), role, ttl)
        if parsed.scheme in ("s3", "s3a"):
            from jobs.bridge.landing import s3_client_for

            slot = _S3Slot(s3_client_for(config), parsed.netloc, parsed.path.lstrip("/"))
            return cls(slot, role, ttl)
        raise ConfigError(f"lake.ops_root: needs a file:// or s3:// URI, got {config.ops_root!r}")

    def _record(self) -> bytes:
        record = {
            "owner": self.owner,
            "role": self.role,
            "renewed_at": time.time(),
            "host": socket.gethostname(),
            "pid": os.getpid(),
        }
        return json.dumps(record).encode()

    def holder(self) -> Holder | None:
        """The live holder (None: free or abandoned)."""
        data, _ = self._slot.read()
        if not data:
            return None
        holder = Holder.from_record(data)
        return holder if holder.alive(self.ttl) else None

    @property
    def held(self) -> bool:
        """This handle holds the lease."""
        return self._token is not None

    def try_acquire(self) -> bool:
        """Take the lease if it is free or abandoned; True when this handle now holds it."""
        record = self._record()
        if self._slot.create(record):
            return self._confirm()
        data, token = self._slot.read()
        if data is None:  # released in between: try once more from the start
            return self._slot.create(record) and self._confirm()
        holder = Holder.from_record(data)
        if data and holder.alive(self.ttl):
            return False
        log.warning("taking over the abandoned writer lease of %s (%.0f s old)", holder.owner, holder.age())
        return self._slot.replace(record, token) and self._confirm()

    def _confirm(self) -> bool:
        data, token = self._slot.read()
        if not data or data.get("owner") != self.owner:
            return False
        self._token = token
        self._renewed = time.monotonic()
        return True

    def acquire(self, wait_log_every: float = 30.0, stop: Any = None) -> bool:
        """Wait until the lease is taken (False: ``stop`` was set first)."""
        last_log = 0.0
        while not self.try_acquire():
            holder = self.holder()
            if time.monotonic() - last_log >= wait_log_every:
                who = holder.owner if holder else "another process"
                log.info("waiting for the writer lease held by %s", who)
                last_log = time.monotonic()
            if (stop or threading.Event()).wait(2.0):  # an unset event: a plain pause
                return False
        return True

    def renew(self, force: bool = False) -> None:
        """Renew the lease (at most every :data:`RENEW_SECONDS` unless ``force``)."""
        with self._lock:
            if self._token is None or (not force and time.monotonic() - self._renewed < RENEW_SECONDS):
                return
            if not self._slot.replace(self._record(), self._token):
                log.error("lost the writer lease (another process took it over)")
                self._token = None
                return
            self._confirm()

    def start_heartbeat(self, interval: float | None = None) -> None:
        """Renew the lease from a thread of its own until :meth:`release`.

        Renewal must not wait for a micro-batch or a retry pass: one that outlives the
        ttl would let a waiting backfill take the lease over while this process still
        commits. A failed renewal (storage unreachable) is logged and tried again at
        the next beat; a lost lease stops the beats (:meth:`verify` then says so).

        Args:
            interval: Seconds between renewals (default: the lesser of
                :data:`RENEW_SECONDS` and a quarter of the ttl).
        """
        if self._heartbeat is not None:
            return
        every = interval if interval is not None else min(RENEW_SECONDS, self.ttl / 4)
        self._stop_beat.clear()

        def beat() -> None:
            while not self._stop_beat.wait(every) and self.held:
                try:
                    self.renew(force=True)
                except Exception as exc:  # the next beat tries again, well within the ttl
                    log.warning("could not renew the writer lease: %s", exc)

        self._heartbeat = threading.Thread(target=beat, name="writer-lease-heartbeat", daemon=True)
        self._heartbeat.start()

    def verify(self) -> bool:
        """Read the lease again: True when this handle still holds it (checked before commits)."""
        with self._lock:
            if self._token is None:
                return False
            data, _ = self._slot.read()
            if not data or data.get("owner") != self.owner:
                holder = Holder.from_record(data).owner if data else "nobody"
                log.error("lost the writer lease: it is held by %s", holder)
                self._token = None
                return False
            return True

    def release(self) -> None:
        """Stop the heartbeat and give the lease up (only if this handle still holds it)."""
        self._stop_beat.set()
        if self._heartbeat is not None:
            self._heartbeat.join()
            self._heartbeat = None
        with self._lock:
            if self._token is None:
                return
            data, token = self._slot.read()
            if data and data.get("owner") == self.owner and token == self._token:
                self._slot.delete()
            self._token = None

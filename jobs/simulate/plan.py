"""The operations of a simulation: uploads, overwrites, bad files and deletes, in time order.

Both modes (local files with hand-made notifications, and the S3 API with
moto's notifications) execute the same plan, so one seed means one history.
"""

from __future__ import annotations

import datetime as dt
import random
from dataclasses import dataclass
from typing import Any, Literal

from jobs.simulate.content import BAD_KINDS, ContentFactory
from jobs.simulate.spec import DATASETS, SimulationSpec, tenant_names

_FIRST_SEQUENCER = 0x0055AED6DCD90281E5
_SEQUENCER_WIDTHS = (16, 18, 18, 18)


@dataclass(frozen=True)
class Operation:
    """One change to the bucket.

    Attributes:
        kind: ``put`` or ``delete``.
        tenant: The key's tenant.
        dataset: The key's dataset directory (``unknown_ds`` for a file under an undeclared one).
        key: The decoded key.
        event_name: ``ObjectCreated:Put``, ``ObjectCreated:CompleteMultipartUpload`` or
            ``ObjectRemoved:Delete``.
        moment: When it happened.
        sequencer: S3-style sequencer (upper-case hex, 16 or 18 digits).
        data: The bytes written (None for deletes).
        rows: The rows of a good file (None for bad files and deletes).
        overwrite: Whether a put replaces an earlier version.
        bad_reason: Quarantine reason for a bad file, else None.
    """

    kind: Literal["put", "delete"]
    tenant: str
    dataset: str
    key: str
    event_name: str
    moment: dt.datetime
    sequencer: str
    data: bytes | None = None
    rows: tuple[dict[str, Any], ...] | None = None
    overwrite: bool = False
    bad_reason: str | None = None


@dataclass(frozen=True)
class _Slot:
    """A planned operation before its time, key and content exist."""

    kind: str  # new | over | bad | delete
    ref: int  # key number (new/over/delete) or bad-file number


def counts(spec: SimulationSpec) -> dict[str, int]:
    """Exact numbers of uploads, overwrites, new keys, deletes and bad files (see the spec module)."""
    overwrites = min(round(spec.objects * spec.overwrite_rate), spec.objects - 1)
    new_keys = spec.objects - overwrites
    return {
        "overwrites": overwrites,
        "new_keys": new_keys,
        "deletes": round(new_keys * spec.delete_rate),
        "bad_files": round(spec.objects * spec.bad_rate),
    }


def _slots(spec: SimulationSpec, rng: random.Random) -> list[_Slot]:
    """Order of operations: puts shuffled, each delete after its key's last put."""
    n = counts(spec)
    kinds = ["new"] * n["new_keys"] + ["over"] * n["overwrites"] + ["bad"] * n["bad_files"]
    rng.shuffle(kinds)
    first_new = kinds.index("new")
    if "over" in kinds[:first_new]:
        kinds.insert(0, kinds.pop(first_new))
    puts: list[_Slot] = []
    made = bad = 0
    last_put: dict[int, int] = {}
    for position, kind in enumerate(kinds):
        if kind == "new":
            ref, made = made, made + 1
        elif kind == "over":
            ref = rng.randrange(made)
        else:
            ref, bad = bad, bad + 1
        if kind != "bad":
            last_put[ref] = position
        puts.append(_Slot(kind, ref))
    timed: list[tuple[float, int, _Slot]] = [(float(i), 0, s) for i, s in enumerate(puts)]
    for ref in rng.sample(range(made), n["deletes"]):
        after = last_put[ref]
        timed.append((rng.uniform(after + 0.01, len(puts)), 1, _Slot("delete", ref)))
    return [slot for _, _, slot in sorted(timed, key=lambda t: (t[0], t[1]))]


class _Clock:
    """Event times and sequencers: both strictly increase with every operation."""

    def __init__(self, rng: random.Random, start: dt.datetime, step_ms: tuple[int, int]) -> None:
        self._rng = rng
        self.now = start
        self._step_ms = step_ms
        self._sequencer = _FIRST_SEQUENCER

    def tick(self) -> tuple[dt.datetime, str]:
        self.now += dt.timedelta(milliseconds=self._rng.randint(*self._step_ms))
        self._sequencer += self._rng.randint(1, 1 << 24)
        width = self._rng.choice(_SEQUENCER_WIDTHS)
        return self.now, f"{self._sequencer:0{width}X}"


def plan_operations(spec: SimulationSpec, rng: random.Random) -> list[Operation]:
    """Every operation of the simulation in time order.

    Args:
        spec: The spec.
        rng: The simulation's random generator.

    Returns:
        Puts (new keys, overwrites, bad files) and deletes; sequencers and event
        times strictly increase in this order.
    """
    content = ContentFactory(rng)
    clock = _Clock(rng, spec.start_time(), spec.step_ms)
    tenants = tenant_names(spec.tenants)
    keys: dict[int, tuple[str, str, str, bool]] = {}  # ref -> tenant, dataset, key, gzip
    ops: list[Operation] = []
    for slot in _slots(spec, rng):
        moment, sequencer = clock.tick()
        if slot.kind == "bad":
            ops.append(_bad_put(slot.ref, rng.choice(tenants), moment, sequencer, content))
            continue
        if slot.kind == "new":
            tenant, dataset = rng.choice(tenants), rng.choice(DATASETS)
            gz = dataset == "orders" and rng.random() < spec.gzip_rate
            name = content.file_name(dataset, gz=gz, odd=rng.random() < spec.odd_name_rate)
            keys[slot.ref] = (tenant, dataset, f"{tenant}/raw/{dataset}/{moment:%Y/%m/%d}/{name}", gz)
        tenant, dataset, key, gz = keys[slot.ref]
        if slot.kind == "delete":
            ops.append(Operation("delete", tenant, dataset, key, "ObjectRemoved:Delete", moment, sequencer))
            continue
        count = rng.randint(*spec.rows_per_object)
        rows = tuple(content.rows(dataset, count, moment, spec.bad_row_rate))
        multipart = rng.random() < spec.multipart_rate
        event = "ObjectCreated:CompleteMultipartUpload" if multipart else "ObjectCreated:Put"
        data = content.encode(dataset, list(rows), gz=gz)
        over = slot.kind == "over"
        ops.append(Operation("put", tenant, dataset, key, event, moment, sequencer, data, rows, over))
    return ops


def _bad_put(
    number: int, tenant: str, moment: dt.datetime, sequencer: str, content: ContentFactory
) -> Operation:
    """The ``number``-th bad file; the kinds take turns so that a few bad files show each."""
    kinds = list(BAD_KINDS)
    kind = kinds[number % len(kinds)]
    directory, name, data = content.bad_file(kind, moment)
    key = f"{tenant}/raw/{directory}/{moment:%Y/%m/%d}/{name}"
    return Operation(
        "put",
        tenant,
        directory,
        key,
        "ObjectCreated:Put",
        moment,
        sequencer,
        data,
        bad_reason=BAD_KINDS[kind],
    )

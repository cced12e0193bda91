"""Fault injection on the stream (issue #13): SIGKILL at random points, then a damaged checkpoint.

One seeded simulation runs over many small micro-batches (one bronze file of at most
three messages per batch) while the job's process group is SIGKILLed at points a
seeded RNG picks: after a random time, just after a silver commit (before the
ledger), just after a batch's offsets are logged (before its commit), just after
a batch's metrics are written. The job restarts after each kill. Then the same
lake's checkpoint is damaged file by file (the job must refuse to start with one
line naming the file and the recovery) and recovered with ``--reset-checkpoint``.
Every expectation comes from the simulator's ground truth or the test's own
generator, never from the job's output. Reproduce a run with
``SILVERLINE_TEST_SEED=<seed> pytest tests/stream/test_faults_stream.py``; ``--soak``
runs more traffic and more kills.
"""

from __future__ import annotations

import os
import random
import signal
import subprocess
import time
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest
import yaml

from jobs.simulate import GroundTruth, SimulationSpec, run, verify
from jobs.stream.checkpoint import checkpoint_problem
from tests import streamkit as kit
from tests.stream.test_stream_e2e import assert_conserved, bronze_record_count, metrics

# The module's own waits are bounded (180 s per kill point, 900 s per job run); the soak run's
# kills and catch-up together outlast the suite's default 900 s per test.
pytestmark = [pytest.mark.integration, pytest.mark.timeout(2700)]

SEED = int(os.environ.get("SILVERLINE_TEST_SEED", "1313"))
PHASES = ("timer", "after-silver-commit", "after-offsets", "after-metrics")


@dataclass
class KilledRun:
    """The lake a seeded run left behind after its kills and the final catch-up run."""

    tmp: Path
    lake_dir: Path
    config: Path
    endpoint: str
    queue: str
    dlq: str
    truth: GroundTruth
    tenants: int
    sent: list[str]
    kills: list[str] = field(default_factory=list)
    phase_order: list[str] = field(default_factory=list)
    final: subprocess.CompletedProcess[str] | None = None

    @property
    def checkpoint(self) -> Path:
        return self.lake_dir / "_ops" / "e2e" / "checkpoints" / "ingest"


def small_batch_config(tmp: Path, lake_dir: Path, endpoint: str, queue: str, files: int = 1) -> Path:
    """One bronze file of at most 3 messages per micro-batch (``files`` per batch): many small batches."""
    config = kit.write_config(tmp, lake_dir, endpoint, queue, max_files_per_trigger=files)
    data = yaml.safe_load(config.read_text(encoding="utf-8"))
    data["bridge"].update(
        {"receivers": 1, "max_messages": 3, "flush_max_messages": 3, "flush_interval_seconds": 1}
    )
    config.write_text(yaml.safe_dump(data), encoding="utf-8")
    return config


def _count(paths: Any) -> int:
    return sum(1 for _ in paths)


def phase_probe(run_: KilledRun, phase: str) -> Callable[[], int]:
    """A counter that grows when the job passes the phase (read from the files the job writes)."""
    lake, cp = run_.lake_dir, run_.checkpoint
    if phase == "after-silver-commit":
        return lambda: _count((lake / "demo-lake").glob("*/silver/*/metadata/v*.metadata.json"))
    if phase == "after-offsets":  # the newest batch id planned (its offsets logged, its work to do)
        return lambda: max((int(p.name) for p in (cp / "offsets").glob("[0-9]*")), default=-1)
    if phase == "after-metrics":
        return lambda: _count((lake / "_ops" / "e2e" / "metrics" / "batches").rglob("*.jsonl"))
    raise ValueError(phase)


def started_queries(log: Path) -> int:
    return log.read_text(encoding="utf-8", errors="replace").count("jobs.stream.query: ingest query")


def kill_once(run_: KilledRun, rng: random.Random, number: int, log: Path) -> None:
    """Start the job, wait for the RNG's kill point, SIGKILL its process group, check it was alive.

    Each run of four kills goes through the phases once, in an order the RNG draws. A timer kill
    comes a random 1-15 s after the query started; a phase kill as soon as the job's
    files show the phase (or after 180 s, logged).
    """
    order = rng.sample(PHASES, len(PHASES)) if number % len(PHASES) == 0 else run_.phase_order
    run_.phase_order = order
    phase = order[number % len(PHASES)]
    delay = rng.uniform(1, 15)
    before_start = started_queries(log) if log.exists() else 0
    probe = phase_probe(run_, phase) if phase != "timer" else None
    before = probe() if probe else 0
    proc = kit.start_job(run_.config, "--trigger", "interval=1s", log=log)
    started = time.monotonic()
    while started_queries(log) <= before_start and proc.poll() is None and time.monotonic() - started < 180:
        time.sleep(0.1)
    if probe is None:
        time.sleep(delay)
        point = f"timer {delay:.1f}s after the query started"
    else:
        while probe() <= before and time.monotonic() - started < 180 and proc.poll() is None:
            time.sleep(0.05)
        point = f"{phase} ({time.monotonic() - started:.1f}s after the start)"
        if probe() <= before:
            point += " — phase not reached: killed on the timeout"
    alive = proc.poll() is None
    os.killpg(proc.pid, signal.SIGKILL)
    proc.wait(timeout=30)
    run_.kills.append(f"kill {number}: {point}")
    print(run_.kills[-1])
    tail = log.read_text(encoding="utf-8", errors="replace")[-3000:]
    assert alive, f"the job died by itself before {point}:\n{tail}"
    # The pre-flight check reads a checkpoint left by SIGKILL as sound (no false alarm).
    assert checkpoint_problem(str(run_.checkpoint)) is None, checkpoint_problem(str(run_.checkpoint))


@pytest.fixture(scope="module")
def killed_run(tmp_path_factory: pytest.TempPathFactory, moto_endpoint: str, soak: bool) -> KilledRun:
    tmp = tmp_path_factory.mktemp("faults")
    kills = 8 if soak else 3
    lake_dir = tmp / "lake"
    queue, dlq = kit.make_queue(moto_endpoint, max_receive_count=kills + 5)
    spec = SimulationSpec(
        tenants=4 if soak else 2,
        objects=100 if soak else 20,
        rows_per_object=(2, 6),
        dup_rate=0.3,
        reorder_rate=0.3,
        seed=SEED,
    )
    bodies, truth = run(spec, lake_dir)
    print(f"seed {SEED}: {len(bodies)} messages, {kills} kills (SILVERLINE_TEST_SEED={SEED} reproduces)")
    config = small_batch_config(tmp, lake_dir, moto_endpoint, queue)
    sent = kit.send_all(moto_endpoint, queue, bodies)
    run_ = KilledRun(tmp, lake_dir, config, moto_endpoint, queue, dlq, truth, spec.tenants, sent)
    rng = random.Random(SEED)
    for number in range(kills):
        kill_once(run_, rng, number, tmp / "job.log")
    # The catch-up run only converges: three bronze files per batch keep CI within its budget.
    catch_up = small_batch_config(tmp, lake_dir, moto_endpoint, queue, files=1 if soak else 3)
    run_.final = kit.run_job(catch_up, "--trigger", "available-now", timeout=900)
    return run_


def test_sigkill_at_random_points_converges_with_no_duplicate_and_no_lost_message(
    killed_run: KilledRun,
) -> None:
    run_ = killed_run
    assert run_.final is not None and run_.final.returncode == 0, (run_.kills, run_.final.stderr[-4000:])
    result = verify(run_.lake_dir, run_.truth)
    assert result.ok, "\n".join([*run_.kills, result.summary()])
    assert len(result.tables) == run_.tenants * 3
    assert all(t.duplicates == 0 for t in result.tables)
    assert set(run_.sent) <= set(kit.bronze_message_ids(run_.lake_dir)), "a sent message never landed"
    assert kit.queue_counts(run_.endpoint, run_.queue) == 0
    assert kit.queue_counts(run_.endpoint, run_.dlq) == 0, "a message went to the DLQ"
    assert_conserved(run_.lake_dir)
    batches = {r["batch_id"] for r in metrics(run_.lake_dir) if r["batch_id"] >= 0}
    print(f"{len(batches)} micro-batches; {'; '.join(run_.kills)}")
    assert len(batches) >= 4, f"only {len(batches)} micro-batches: the scenario wants many small ones"


# ---- a damaged checkpoint: a clear refusal, then the documented recovery ------------------------------
def damage_targets(cp: Path) -> dict[str, Path]:
    """One file of each kind in a stopped job's checkpoint (the newest of each log)."""

    def newest(folder: Path, suffix: str = "") -> Path:
        files = [p for p in folder.iterdir() if p.name.removesuffix(suffix).isdigit() and p.is_file()]
        return max(files, key=lambda p: int(p.name.removesuffix(suffix)))

    return {
        "metadata": cp / "metadata",
        "offsets": newest(cp / "offsets"),
        "commits": newest(cp / "commits"),
        "sources": newest(cp / "sources" / "0"),
        "state-delta": newest(cp / "state" / "0" / "0", ".delta"),
        "state-schema": cp / "state" / "0" / "0" / "_metadata" / "schema",
    }


def damage(path: Path, mode: str, rng: random.Random) -> bytes:
    """``truncated``: cut to half, checksum file gone (the format check must see it);
    ``garbage``: same length of random bytes, checksum file kept (the checksum must see it)."""
    data = path.read_bytes()
    bad = data[: len(data) // 2] if mode == "truncated" else rng.randbytes(max(len(data), 16))
    path.write_bytes(bad)
    crc = path.with_name(f".{path.name}.crc")
    if mode == "truncated" and path.name != "schema":  # the binary schema has only its checksum
        crc.unlink(missing_ok=True)
    return bad


def restore(cp: Path, pristine: Path) -> None:
    import shutil

    shutil.rmtree(cp)
    shutil.copytree(pristine, cp)


def assert_refused_with_one_clear_line(done: subprocess.CompletedProcess[str], path: Path) -> None:
    lines = done.stderr.splitlines()
    errors = [line for line in lines if " ERROR " in line]
    assert done.returncode == 1, done.stderr[-3000:]
    assert len(errors) == 1, done.stderr[-3000:]
    assert str(path) in errors[0] and "--reset-checkpoint" in errors[0], errors[0]
    assert not any(line.lstrip().startswith("at ") for line in lines), "a JVM stack trace"
    assert "starting Spark" not in done.stderr, "the check must run before Spark starts"


def refuse_each_damaged_file(run_: KilledRun, rng: random.Random) -> list[str]:
    """Damage each kind of file both ways, one at a time; the job must refuse to start each time."""
    import shutil

    cp = run_.checkpoint
    pristine = run_.tmp / "checkpoint-pristine"
    shutil.copytree(cp, pristine)
    seen = []
    for kind, path in damage_targets(cp).items():
        for mode in ("truncated", "garbage"):
            damage(path, mode, rng)
            started = time.monotonic()
            done = kit.run_job(run_.config, "--trigger", "available-now", "--no-bridge", timeout=120)
            seen.append(f"{kind} {mode}: exit {done.returncode} in {time.monotonic() - started:.1f}s")
            assert_refused_with_one_clear_line(done, path)
            restore(cp, pristine)
    return seen


def add_new_objects(run_: KilledRun, count: int) -> list[str]:
    """Upload ``count`` objects of a new tenant (lakegen), add them to the truth, send their events."""
    from tests.lakegen import Lake

    lake = Lake(run_.lake_dir, seed=SEED)
    names = ["order_id", "customer_id", "amount", "currency", "order_ts"]
    for i in range(count):
        key = lake.put("newco", "orders", f"after-reset-{i}.csv", rows=3)
        rows = lake.oracle[("newco", "orders")][key]
        run_.truth.record_put("newco", "orders", key, [dict(zip(names, r, strict=True)) for r in rows])
    kit.send_all(run_.endpoint, run_.queue, lake.messages)
    return lake.messages


def test_damaged_checkpoint_is_refused_clearly_and_reset_recovers_without_double_apply(
    spark: Any,
    killed_run: KilledRun,
) -> None:
    from jobs.events import parse_message

    run_ = killed_run
    cp = run_.checkpoint
    assert checkpoint_problem(str(cp)) is None
    rng = random.Random(SEED)
    print("\n".join(refuse_each_damaged_file(run_, rng)))

    # The recovery: a damaged offsets file, new traffic, then --reset-checkpoint.
    old_query = json_id(cp / "metadata")
    offsets = damage_targets(cp)["offsets"]
    broken = damage(offsets, "garbage", rng)
    bronze_before = bronze_record_count(run_.lake_dir)
    silver_before = silver_metadata_files(run_.lake_dir)
    messages = add_new_objects(run_, 3)
    # Bronze is re-read from its first file: in a few batches here, not one file per batch.
    config = small_batch_config(run_.tmp, run_.lake_dir, run_.endpoint, run_.queue, files=100)
    done = kit.run_here(spark, config, "stream", "--trigger", "available-now", "--reset-checkpoint")
    assert done.returncode == 0, done.stderr[-4000:]

    [moved] = list(cp.parent.glob("ingest.moved-*"))
    assert (moved / "offsets" / offsets.name).read_bytes() == broken, "the old checkpoint is kept as it was"
    new_query = json_id(cp / "metadata")
    assert json_id(moved / "metadata") == old_query != new_query
    result = verify(run_.lake_dir, run_.truth)
    assert result.ok, result.summary()
    after = silver_metadata_files(run_.lake_dir)
    assert {t: v for t, v in after.items() if not t.startswith("newco/")} == silver_before
    rows = [r for r in metrics(run_.lake_dir) if r["query_id"] == new_query]
    kit.assert_balanced(rows)
    totals = {k: sum(r[k] for r in rows) for k in ("records_in", "applied", "parked", "quarantined")}
    # Only the new objects apply; everything re-read from bronze is duplicate, stale, ignored or rejected.
    assert (totals["applied"], totals["quarantined"], totals["parked"]) == (3, 0, 0), totals
    progress = kit.read_table(kit.ops_dir(run_.lake_dir, "stream_progress"))
    assert progress is not None
    dropped = sum(
        r["duplicates_dropped"] + r["late_dropped"]
        for r in progress.to_pylist()
        if r["query_id"] == new_query
    )
    new_records = sum(len(parse_message(m)) for m in messages)
    assert totals["records_in"] + dropped == bronze_before + new_records == bronze_record_count(run_.lake_dir)


def json_id(path: Path) -> str:
    import json

    return str(json.loads(path.read_text(encoding="utf-8"))["id"])


def silver_metadata_files(lake_dir: Path) -> dict[str, list[str]]:
    """``tenant/dataset`` -> metadata file names of every silver and quarantine table."""
    tables: dict[str, list[str]] = {}
    for path in sorted((lake_dir / "demo-lake").glob("*/*/*/metadata/*.metadata.json")):
        table = path.parents[1]
        tables.setdefault(f"{table.parents[1].name}/{table.parent.name}/{table.name}", []).append(path.name)
    return tables

"""Backfill and replay planning, the writer lease and the hand-off inbox, without Spark."""

from __future__ import annotations

import json
import os
import subprocess
import sys
import time
from datetime import UTC, datetime, timedelta
from pathlib import Path

import pytest

from jobs.batchruns.listing import RawObject
from jobs.batchruns.plan import (
    CREATE,
    CURRENT,
    DELETE,
    OUT_OF_RANGE,
    REAPPLY,
    RESUBMIT,
    SKIPPED,
    UPDATE,
    LedgerEntry,
    plan_backfill,
    plan_replay,
    synthetic_event,
)
from jobs.bridge.landing import LocalBronzeStore
from jobs.stream.handoff import BACKFILL, REPLAY, RequestInbox
from jobs.stream.lease import WriterLease, _LocalSlot

pytestmark = pytest.mark.unit

BUCKET = "lake"
NOW = datetime(2026, 11, 23, 12, 0, tzinfo=UTC)
T0 = datetime(2026, 11, 1, 8, 0, tzinfo=UTC)


def obj(key: str, etag: str, when: datetime = T0, size: int = 10) -> RawObject:
    return RawObject(key=key, size=size, etag=etag, last_modified=when)


def entry(key: str, etag: str | None, event_id: str, state: str = "live", when: datetime = T0) -> LedgerEntry:
    return LedgerEntry(key=key, state=state, etag=etag, event_id=event_id, event_time=when)


def actions(plan: object) -> dict[str, str]:
    """key -> action, from the plan's examples (enough for these small plans)."""
    out: dict[str, str] = {}
    for action, keys in plan.examples.items():  # type: ignore[attr-defined]
        for key in keys:
            out[key.split(" (")[0]] = action
    return out


# ---- backfill ------------------------------------------------------------------------------------------
def test_backfill_creates_unknown_updates_changed_and_skips_current_objects() -> None:
    listing = [
        obj("acme/raw/orders/new.csv", '"aaa"'),
        obj("acme/raw/orders/changed.csv", '"bbb"'),
        obj("acme/raw/orders/same.csv", '"ccc"'),
        obj("acme/raw/orders/back.csv", '"ddd"'),  # the ledger holds it as deleted: it came back
    ]
    ledger = {
        "acme/raw/orders/changed.csv": entry("acme/raw/orders/changed.csv", "old", "ev-changed"),
        "acme/raw/orders/same.csv": entry("acme/raw/orders/same.csv", "ccc", "ev-same"),
        "acme/raw/orders/back.csv": entry("acme/raw/orders/back.csv", "ddd", "ev-back", state="deleted"),
    }
    plan = plan_backfill(BUCKET, listing, ledger, request_id="backfill-1", now=NOW)
    assert actions(plan) == {
        "acme/raw/orders/new.csv": CREATE,
        "acme/raw/orders/changed.csv": UPDATE,
        "acme/raw/orders/same.csv": CURRENT,
        "acme/raw/orders/back.csv": UPDATE,
    }
    by_key = {e["key"]: e for e in plan.events}
    assert set(by_key) == {
        "acme/raw/orders/new.csv",
        "acme/raw/orders/changed.csv",
        "acme/raw/orders/back.csv",
    }
    new = by_key["acme/raw/orders/new.csv"]
    assert (new["tenant"], new["dataset"], new["event_kind"]) == ("acme", "orders", "created")
    assert new["event_name"] == "ObjectCreated:Backfill"
    assert new["etag"] == "aaa"  # quotes of the listing removed
    assert new["event_time"] == T0
    assert (new["directive"], new["expect_event_id"]) == (BACKFILL, None)
    assert (new["message_id"], new["received_at"]) == ("backfill-1", NOW)
    assert by_key["acme/raw/orders/changed.csv"]["expect_event_id"] == "ev-changed"
    assert by_key["acme/raw/orders/back.csv"]["expect_event_id"] == "ev-back"
    assert plan.changes == 3


def test_backfill_removes_missing_objects_only_when_asked() -> None:
    ledger = {
        "acme/raw/orders/gone.csv": entry("acme/raw/orders/gone.csv", "e1", "ev-gone"),
        "acme/raw/orders/was-deleted.csv": entry(
            "acme/raw/orders/was-deleted.csv", None, "ev-d", state="deleted"
        ),
        "acme/raw/orders/bad.csv": entry("acme/raw/orders/bad.csv", "e2", "ev-bad", state="quarantined"),
    }
    assert plan_backfill(BUCKET, [], ledger, request_id="r", now=NOW).events == []
    plan = plan_backfill(BUCKET, [], ledger, request_id="r", now=NOW, delete_missing=True)
    events = {e["key"]: e for e in plan.events}
    assert set(events) == {"acme/raw/orders/gone.csv", "acme/raw/orders/bad.csv"}
    gone = events["acme/raw/orders/gone.csv"]
    assert (gone["event_kind"], gone["event_name"]) == ("removed", "ObjectRemoved:Backfill")
    assert gone["expect_event_id"] == "ev-gone"
    assert gone["event_time"] == T0  # the superseded event's time: any real later event still wins
    assert plan.total(DELETE) == 2


def test_backfill_time_window_applies_to_listing_and_removals() -> None:
    early, late = T0 - timedelta(days=5), T0 + timedelta(days=5)
    listing = [obj("t/raw/d/early.csv", "e", when=early), obj("t/raw/d/late.csv", "l", when=late)]
    ledger = {"t/raw/d/gone-early.csv": entry("t/raw/d/gone-early.csv", "x", "ev", when=early)}
    plan = plan_backfill(
        BUCKET,
        listing,
        ledger,
        request_id="r",
        now=NOW,
        delete_missing=True,
        since=T0,
        until=late + timedelta(1),
    )
    assert actions(plan) == {
        "t/raw/d/early.csv": OUT_OF_RANGE,
        "t/raw/d/late.csv": CREATE,
        "t/raw/d/gone-early.csv": OUT_OF_RANGE,
    }
    assert [e["key"] for e in plan.events] == ["t/raw/d/late.csv"]


def test_backfill_skips_keys_the_stream_would_not_accept() -> None:
    listing = [
        obj("acme/raw/orders/../../other/raw/orders/x.csv", "a"),  # traversal (R2)
        obj("acme/raw/short.csv", "b"),  # no dataset segment
        obj("acme/raw/orders/ok file+plus.csv", "c"),  # spaces and plus signs survive the encoding
    ]
    plan = plan_backfill(BUCKET, listing, {}, request_id="r", now=NOW)
    assert [e["key"] for e in plan.events] == ["acme/raw/orders/ok file+plus.csv"]
    assert plan.total(SKIPPED) == 2


def test_synthetic_event_ids_are_deterministic_and_version_specific() -> None:
    first, _ = synthetic_event(BUCKET, "t/raw/d/a.csv", "ObjectCreated:Backfill", T0, etag="e1")
    again, _ = synthetic_event(BUCKET, "t/raw/d/a.csv", "ObjectCreated:Backfill", T0, etag="e1")
    other, _ = synthetic_event(BUCKET, "t/raw/d/a.csv", "ObjectCreated:Backfill", T0, etag="e2")
    assert first is not None and again is not None and other is not None
    assert first["event_id"] == again["event_id"] != other["event_id"]


# ---- replay --------------------------------------------------------------------------------------------
def landed(key: str, event_id: str) -> dict[str, object]:
    tenant, _, dataset = key.split("/")[:3]
    return {
        "bucket": BUCKET, "key": key, "tenant": tenant, "dataset": dataset, "event_kind": "created",
        "event_name": "ObjectCreated:Put", "event_time": T0, "sequencer": "0055", "version_id": None,
        "etag": "e", "size": 3, "event_id": event_id, "message_id": "m-" + event_id,
    }  # fmt: skip


def test_replay_resubmits_unapplied_events_and_skips_current_ones_without_force() -> None:
    ledger = {
        "t/raw/d/applied.csv": entry("t/raw/d/applied.csv", "e", "ev-a"),
        "t/raw/d/behind.csv": entry("t/raw/d/behind.csv", "e", "ev-older"),
    }
    events = [
        landed("t/raw/d/applied.csv", "ev-a"),
        landed("t/raw/d/behind.csv", "ev-b"),
        landed("t/raw/d/new.csv", "ev-n"),
    ]
    plan = plan_replay(BUCKET, events, ledger, request_id="replay-1", now=NOW)
    assert actions(plan) == {
        "t/raw/d/applied.csv": CURRENT,
        "t/raw/d/behind.csv": RESUBMIT,
        "t/raw/d/new.csv": RESUBMIT,
    }
    for event in plan.events:
        assert event["directive"] is None  # judged like any landed event
        assert event["message_id"] == "m-" + str(event["event_id"])  # lineage keeps the landed message


def test_replay_force_reapplies_the_ledgers_version_only_while_it_is_current() -> None:
    ledger = {
        "t/raw/d/applied.csv": entry("t/raw/d/applied.csv", "e", "ev-a"),
        "t/raw/d/from-backfill.csv": entry("t/raw/d/from-backfill.csv", "bf", "ev-backfill"),
        "t/raw/d/deleted.csv": entry("t/raw/d/deleted.csv", None, "ev-del", state="deleted"),
    }
    events = [
        landed("t/raw/d/applied.csv", "ev-a"),
        landed("t/raw/d/from-backfill.csv", "ev-old"),
        landed("t/raw/d/deleted.csv", "ev-x"),
    ]
    plan = plan_replay(BUCKET, events, ledger, request_id="replay-1", now=NOW, force=True)
    assert actions(plan) == {
        "t/raw/d/applied.csv": REAPPLY,
        "t/raw/d/from-backfill.csv": REAPPLY,
        "t/raw/d/deleted.csv": CURRENT,
    }
    by_key = {e["key"]: e for e in plan.events}
    applied = by_key["t/raw/d/applied.csv"]
    assert (applied["directive"], applied["expect_event_id"], applied["event_id"]) == (REPLAY, "ev-a", "ev-a")
    rebuilt = by_key["t/raw/d/from-backfill.csv"]
    assert rebuilt["expect_event_id"] == "ev-backfill"
    assert rebuilt["etag"] == "bf"  # the ledger's version, not the older landed one


# ---- hand-off inbox ------------------------------------------------------------------------------------
def test_inbox_writes_whole_files_per_request_and_forgets_them_when_done(tmp_path: Path) -> None:
    inbox = RequestInbox(LocalBronzeStore(tmp_path / "requests"))
    assert inbox.pending() == []
    event = plan_backfill(BUCKET, [obj("t/raw/d/a.csv", "e")], {}, request_id="r1", now=NOW).events[0]
    names = inbox.submit("r1", [event])
    inbox.submit("r2", [event, event])
    assert names == ["r1/part-00000.jsonl"]
    assert inbox.pending("r1") == names
    assert len(inbox.pending()) == 2
    line = json.loads((tmp_path / "requests" / names[0]).read_text(encoding="utf-8"))
    assert line["event_time"] == "2026-11-01T08:00:00.000000Z"
    assert line["directive"] == BACKFILL and line["expect_event_id"] is None
    inbox.done(names)
    assert inbox.pending() == ["r2/part-00000.jsonl"]
    assert not list((tmp_path / "requests").rglob("*.tmp"))


# ---- writer lease --------------------------------------------------------------------------------------
def lease(path: Path, role: str = "stream", ttl: float = 60.0) -> WriterLease:
    return WriterLease(_LocalSlot(path), role, ttl)


def test_lease_is_exclusive_until_released(tmp_path: Path) -> None:
    path = tmp_path / "leases" / "writer.json"
    first, second = lease(path), lease(path, "backfill")
    assert first.try_acquire()
    assert not second.try_acquire()
    holder = second.holder()
    assert holder is not None and holder.owner == first.owner and holder.role == "stream"
    first.renew(force=True)
    assert first.held
    first.release()
    assert not path.exists()
    assert second.try_acquire()
    assert second.holder() is not None


def test_an_expired_lease_is_taken_over_and_its_old_holder_notices(tmp_path: Path) -> None:
    path = tmp_path / "writer.json"
    old, new = lease(path, ttl=0.5), lease(path, "backfill", ttl=0.5)
    assert old.try_acquire()
    time.sleep(0.7)
    assert new.try_acquire()
    old.renew(force=True)
    assert not old.held  # it lost the lease and says so instead of writing on
    old.release()  # releasing a lost lease must not delete the new holder's
    assert path.exists() and new.holder() is not None


def test_the_heartbeat_renews_the_lease_while_the_holder_is_busy_elsewhere(tmp_path: Path) -> None:
    """A long retry pass or batch must not let the lease lapse: renewal does not wait for them."""
    from tests.streamkit import wait_for

    path = tmp_path / "writer.json"
    holder, waiting = lease(path), lease(path, "backfill")
    assert holder.try_acquire()
    first = json.loads(path.read_text())["renewed_at"]
    holder.start_heartbeat(interval=0.05)  # the holder itself never calls renew() here
    try:

        def renewed() -> None:
            assert json.loads(path.read_text())["renewed_at"] > first

        wait_for(renewed, 60, "a heartbeat renewal")
        assert holder.held and not waiting.try_acquire()
    finally:
        holder.release()
    assert not path.exists()  # releasing stops the heartbeat and gives the lease up
    assert waiting.try_acquire()


def test_a_holder_that_lost_the_lease_finds_out_before_it_commits(tmp_path: Path) -> None:
    path = tmp_path / "writer.json"
    old, new = lease(path, ttl=0.5), lease(path, "backfill", ttl=0.5)
    assert old.try_acquire() and old.verify()
    time.sleep(0.7)  # old's process stalled past the ttl without renewing
    assert new.try_acquire()
    assert not old.verify()  # checked right before each commit: the batch is aborted
    assert not old.held and new.verify()


def test_the_lease_of_a_dead_process_on_this_host_is_taken_at_once(tmp_path: Path) -> None:
    path = tmp_path / "writer.json"
    code = (
        "import sys; from pathlib import Path; from jobs.stream.lease import WriterLease, _LocalSlot; "
        "lease = WriterLease(_LocalSlot(Path(sys.argv[1])), 'stream'); assert lease.try_acquire()"
    )
    subprocess.run([sys.executable, "-c", code, str(path)], check=True, cwd=Path(__file__).parents[2])
    record = json.loads(path.read_text(encoding="utf-8"))
    assert record["pid"] != os.getpid() and time.time() - record["renewed_at"] < 60
    assert lease(path, "backfill").try_acquire()  # its pid is gone: no need to wait for the ttl


def test_a_torn_lease_file_counts_as_expired(tmp_path: Path) -> None:
    path = tmp_path / "writer.json"
    path.write_text("{not json", encoding="utf-8")
    fresh = lease(path)
    assert fresh.holder() is None
    assert fresh.try_acquire()
    assert json.loads(path.read_text(encoding="utf-8"))["owner"] == fresh.owner


# ---- command line --------------------------------------------------------------------------------------
def test_spark_submit_entry_point_takes_the_backfill_arguments() -> None:
    project = Path(__file__).parents[2]
    run = subprocess.run(
        [sys.executable, "jobs/backfill.py", "--help"],
        cwd=project,
        capture_output=True,
        text=True,
        check=False,
    )
    assert run.returncode == 0, run.stderr
    assert run.stdout.startswith("usage: silverline backfill")
    assert "--delete-missing" in run.stdout and "--dry-run" in run.stdout


def test_a_group_other_than_the_configurations_is_refused_before_anything_runs(
    tmp_path: Path, capsys: pytest.CaptureFixture[str]
) -> None:
    from jobs.cli import main

    config = tmp_path / "c.yaml"
    config.write_text("group: {name: blue, bucket: blue-bucket}\nlake: {root: " + str(tmp_path) + "}\n")
    assert main(["backfill", "--config", str(config), "--group", "green"]) == 2
    err = capsys.readouterr().err
    assert "--group green" in err and "'blue'" in err
    window = ["--since", "2026-12-01", "--until", "2026-11-01"]
    assert main(["backfill", "--config", str(config), *window]) == 2
    assert "--since must be before --until" in capsys.readouterr().err
    with pytest.raises(SystemExit) as exit_info:
        main(["backfill", "--config", str(config), "--since", "last tuesday"])
    assert exit_info.value.code == 2
    assert "not an ISO date or time" in capsys.readouterr().err
    assert not (tmp_path / "_ops").exists()

"""``silverline emr ...``: render, deploy, stop, inspect and schedule silverline on Amazon EMR."""

from __future__ import annotations

import argparse
import json
import time
from typing import Any

from jobs.cliargs import (
    add_command,
    add_command_group,
    add_config_arguments,
    aws_errors_exit_1,
    config_from_args,
)
from jobs.config import SilverlineConfig

_DESCRIPTION = """\
Run silverline on Amazon EMR 7.x: on an EMR on EC2 cluster (emr.target: cluster,
steps through command-runner.jar) or on an EMR Serverless application
(emr.target: serverless). The artifacts (entry scripts, the venv-pack archive,
the configuration archive) must be under emr.artifacts_uri; see emr/README.md.
"""

_EPILOG = """\
examples:
  silverline emr render --config conf/emr.yaml          # spark-submit, step and StartJobRun payloads
  silverline emr render --config conf/emr.yaml --job backfill -- --tenant acme --delete-missing
  silverline emr deploy-stream --config conf/emr.yaml               # no second copy of a running stream
  silverline emr status --config conf/emr.yaml
  silverline emr stop-stream --config conf/emr.yaml --wait 600      # graceful: between micro-batches
  silverline emr submit-backfill --config conf/emr.yaml -- --since 2026-11-01
  silverline emr schedule-backfill --config conf/emr.yaml --cron "cron(30 2 * * ? *)" -- --delete-missing
  silverline emr schedule-maintain --config conf/emr.yaml --cron "cron(0 4 * * ? *)"

exit codes: 0 done; 1 an AWS call failed or the stream did not stop in time; 2 bad configuration.
"""


def add_parser(subparsers: Any) -> None:
    """Register ``silverline emr`` and its actions.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    actions = add_command_group(
        subparsers,
        "emr",
        summary="deploy and operate silverline on Amazon EMR",
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )

    def action(name: str, summary: str, func: Any, job_args: bool = False) -> argparse.ArgumentParser:
        sub = add_command(actions, name, summary=summary, description=summary)
        add_config_arguments(sub, queue_flags=False)
        if job_args:
            sub.add_argument("job_args", nargs="*", metavar="-- ARGS", help="arguments for the job itself")
        sub.set_defaults(func=func)
        return sub

    render = action(
        "render", "print the spark-submit, EMR step and EMR Serverless payloads", run_render, True
    )
    render.add_argument(
        "--job",
        choices=["stream", "backfill", "maintain"],
        default="stream",
        help="which job (default stream)",
    )
    action("deploy-stream", "start the stream unless it already runs (idempotent)", run_deploy_stream, True)
    stop = action(
        "stop-stream", "stop the stream between micro-batches, then cancel it if needed", run_stop_stream
    )
    stop.add_argument("--wait", type=float, default=600.0, metavar="SECONDS", help="graceful stop time (600)")
    stop.add_argument(
        "--no-cancel", action="store_true", help="only request the stop; never cancel the step/job"
    )
    action(
        "status",
        "the stream's step or job run, writer lease, stop marker, pending requests, last batch",
        run_status,
    )
    for job in ("backfill", "maintain"):
        article = "a backfill" if job == "backfill" else "table maintenance"
        submit_action = action(
            f"submit-{job}", f"submit {article} as a step or a BATCH job run", run_submit_batch, True
        )
        submit_action.set_defaults(job=job)
        schedule = action(
            f"schedule-{job}",
            f"create or update an EventBridge Scheduler schedule for {article}",
            run_schedule,
            True,
        )
        schedule.set_defaults(job=job)
        schedule.add_argument(
            "--cron", required=True, metavar="EXPR", help='e.g. "cron(30 2 * * ? *)" or "rate(1 day)"'
        )
        schedule.add_argument(
            "--name", metavar="NAME", help=f"schedule name (default silverline-<group>-{job})"
        )
        schedule.add_argument("--timezone", default="UTC", help="ScheduleExpressionTimezone (default UTC)")


def _print(data: Any) -> None:
    print(json.dumps(data, indent=2, sort_keys=True, default=str))


def run_render(args: argparse.Namespace) -> int:
    """``silverline emr render``."""
    from jobs.emr.submit import render

    _print(render(config_from_args(args), args.job, args.job_args))
    return 0


@aws_errors_exit_1
def run_deploy_stream(args: argparse.Namespace) -> int:
    """``silverline emr deploy-stream``: submit the stream unless one of ours is unfinished."""
    from jobs.emr.submit import running, submit
    from jobs.stream.control import clear_stop, stop_requested

    config = config_from_args(args)
    found = running(config, "stream")
    if found:
        ids = ", ".join(f"{j.id} ({j.state})" for j in found)
        print(f"the stream already runs: {ids}; nothing submitted")
        return 0
    if stop_requested(config) is not None:
        clear_stop(config)
        print("removed the stop marker of the previous stop")
    print(f"submitted the stream: {submit(config, 'stream', args.job_args)}")
    return 0


@aws_errors_exit_1
def run_stop_stream(args: argparse.Namespace) -> int:
    """``silverline emr stop-stream``: the stop marker, a graceful wait, then cancellation."""
    from jobs.emr.submit import cancel, running
    from jobs.stream.control import request_stop

    config = config_from_args(args)
    uri = request_stop(config, "silverline emr stop-stream")
    print(f"stop requested ({uri}); the driver stops after its current micro-batch")
    deadline = time.monotonic() + args.wait
    found = running(config, "stream")
    while found and time.monotonic() < deadline:
        time.sleep(min(10.0, max(0.0, deadline - time.monotonic())))
        found = running(config, "stream")
    if not found:
        print("the stream has stopped")
        return 0
    ids = ", ".join(j.id for j in found)
    if args.no_cancel:
        print(f"still running after {args.wait:.0f} s: {ids} (not cancelled: --no-cancel)")
        return 1
    for job in found:
        cancel(config, job.id)
    print(f"still running after {args.wait:.0f} s: cancelled {ids}")
    return 0


def last_batch(config: SilverlineConfig) -> dict[str, Any] | None:
    """The newest batch's metrics from their JSON-lines copy (None: no batch yet)."""
    from jobs.bridge.landing import open_store
    from jobs.stream.ops import metrics_uri

    store: Any = open_store(metrics_uri(config), config)
    names = [n for n in store.names() if n.endswith(".jsonl")]
    newest: dict[str, Any] | None = None
    for name in names[-50:]:
        row = json.loads(store.read(name).decode("utf-8").splitlines()[0])
        if newest is None or str(row.get("finished_at")) > str(newest.get("finished_at")):
            newest = row
    return newest


_BATCH_KEYS = ("batch_id", "finished_at", "records_in", "applied", "parked", "quarantined", "freshness_p95_s")


@aws_errors_exit_1
def run_status(args: argparse.Namespace) -> int:
    """``silverline emr status``."""
    from jobs.emr.submit import running
    from jobs.stream.control import stop_requested
    from jobs.stream.handoff import RequestInbox
    from jobs.stream.lease import WriterLease

    config = config_from_args(args)
    holder = WriterLease.for_config(config, "status").holder()
    lease = (
        None
        if holder is None
        else {"owner": holder.owner, "role": holder.role, "age_s": round(holder.age(), 1)}
    )
    batch = last_batch(config)
    status: dict[str, Any] = {
        "group": config.group.name,
        "target": config.emr.target,
        "writer_lease": lease,
        "stop_requested": stop_requested(config),
        "pending_request_files": len(RequestInbox.for_config(config).pending()),
        "last_batch": None if batch is None else {k: batch.get(k) for k in _BATCH_KEYS},
        "stream_jobs": [{"id": j.id, "state": j.state} for j in running(config, "stream")],
    }
    _print(status)
    return 0


@aws_errors_exit_1
def run_submit_batch(args: argparse.Namespace) -> int:
    """``silverline emr submit-backfill`` and ``submit-maintain``."""
    from jobs.emr.submit import submit

    print(f"submitted the {args.job}: {submit(config_from_args(args), args.job, args.job_args)}")
    return 0


@aws_errors_exit_1
def run_schedule(args: argparse.Namespace) -> int:
    """``silverline emr schedule-backfill`` and ``schedule-maintain``."""
    from jobs.emr.submit import job_name, put_schedule, schedule_request, submission

    config = config_from_args(args)
    name = args.name or job_name(config, args.job)
    sub = submission(config, args.job, args.job_args)
    request = schedule_request(config, name, args.cron, sub, timezone=args.timezone, job=args.job)
    print(f"schedule {name} {put_schedule(config, request)}: {args.cron} ({args.timezone})")
    return 0

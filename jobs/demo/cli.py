"""``silverline demo``: simulate a SaaS tenant group, ingest it, and prove silver is right."""

from __future__ import annotations

import argparse
import logging
import shutil
import tempfile
import time
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from jobs.cliargs import add_command, add_config_arguments, config_from_args
from jobs.config import SilverlineConfig
from jobs.demo.console import DemoConsole
from jobs.demo.report import Conservation, bronze_bodies, conservation, read_batches, table_activity
from jobs.simulate.cli import add_spec_arguments, required_local_dir, spec_values

log = logging.getLogger(__name__)

_DESCRIPTION = """\
Run the whole platform on this machine and prove it worked. Starts the local
AWS APIs (moto's server, in-process), lets the traffic simulator create the
group's queue and DLQ and upload objects with duplicated, reordered, delayed
and malformed notifications, runs the streaming job until the queue and bronze
are drained, then checks every tenant table against the simulator's ground
truth with an independent reader (pyiceberg) and checks that every message and
record is accounted for (R7). Exit 0 only if both hold.

The configuration file gives the Spark, catalog and stream settings; the demo
points it at its own lake, queue and local AWS endpoint.
"""

_EPILOG = """\
examples:
  silverline demo --config conf/local.yaml                     # the defaults: 5 tenants, 60 uploads
  silverline demo --config conf/local.yaml --tenants 10 --objects 300 --dup-rate 0.3 --keep
  make demo                                                    # install if needed, then the first line

exit codes: 0 silver matches the ground truth and every message is accounted for;
1 a check failed or the job failed; 2 bad arguments or configuration.
"""


def add_parser(subparsers: Any) -> None:
    """Register the ``demo`` subcommand.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    parser = add_command(
        subparsers,
        "demo",
        summary="run the whole platform locally on simulated tenants and verify the result",
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )
    add_config_arguments(parser, queue_flags=False)
    add_spec_arguments(parser)
    parser.add_argument(
        "--keep",
        action="store_true",
        help="keep the lake (silver tables, ops tables, bronze, ground truth) for exploring; "
        "default: a temporary lake, deleted at the end (or --lake-root DIR, always kept)",
    )
    parser.add_argument(
        "--mode",
        choices=("files", "s3-api"),
        default="files",
        help="files: write objects into the local lake and publish S3-format notifications with "
        "injected faults (default); s3-api: upload through moto's S3 API, which sends the "
        "notifications itself (no sequencer: ordering falls back to event time), and read the "
        "objects back through the S3 API",
    )
    parser.add_argument(
        "--verbose", action="store_true", help="show the job's log (default: only warnings and the batches)"
    )
    parser.set_defaults(func=run_demo)


def run_demo(args: argparse.Namespace) -> int:
    """Entry of ``silverline demo``.

    Args:
        args: Parsed arguments.

    Returns:
        The exit code.
    """
    from jobs.simulate import SimulationSpec

    console = DemoConsole()
    base = config_from_args(args)  # validates the file and flags before anything starts
    if not args.verbose:
        logging.getLogger().setLevel(logging.WARNING)
    values = spec_values(args)
    # Event times start now, milliseconds apart, so freshness (event time -> commit) is real.
    now = datetime.now(UTC).isoformat(timespec="milliseconds")
    try:
        spec = SimulationSpec(
            **values, bucket=base.group.bucket, region=base.aws.region, start=now, step_ms=(1, 20)
        )
    except ValueError as exc:
        console.error(str(exc))
        return 2
    chosen = args.lake_root is not None
    lake = Path(args.lake_root) if chosen else Path(tempfile.mkdtemp(prefix="silverline-demo-"))
    if chosen and (lake / base.group.bucket).exists():
        console.error(f"{lake / base.group.bucket} exists: the demo needs a fresh lake (another --lake-root)")
        return 2
    try:
        return _run(args, spec, lake.resolve(), console)
    finally:
        if chosen or args.keep:
            console.note(f"lake kept at {lake.resolve()}")
        else:
            shutil.rmtree(lake, ignore_errors=True)


def _run(args: argparse.Namespace, spec: Any, lake: Path, console: DemoConsole) -> int:
    import boto3

    from jobs.bridge.bridge import SqsBridge
    from jobs.localaws import local_aws
    from jobs.simulate import create_group, publish, run, run_s3_api, verify
    from jobs.stream.command import run_ingest

    started = time.monotonic()
    with local_aws() as endpoint:
        sqs = boto3.client("sqs", endpoint_url=endpoint, region_name=spec.region)
        queues = create_group(sqs, f"{spec.bucket}-events")
        config = _demo_config(args, lake, endpoint, queues.queue_url)
        console.heading(spec, lake, endpoint, args.mode)
        if args.mode == "s3-api":
            s3 = boto3.client("s3", endpoint_url=endpoint, region_name=spec.region)
            with console.progress("uploading through the S3 API", 1):
                truth = run_s3_api(s3, sqs, spec.bucket, queues.queue_arn, spec)
            sent = truth.injected.messages
        else:
            bodies, truth = run(spec, lake)
            # The bridge lands messages while they are published, as in production. It also
            # keeps moto's queue shallow: moto's receive and delete scan the whole queue.
            bridge = SqsBridge(config)
            bridge.start()
            try:
                with console.progress("publishing notifications", len(bodies)) as advance:
                    publish(sqs, queues.queue_url, bodies, lambda done, _total: advance(done))
            finally:
                bridge.stop()
            sent = len(bodies)
        truth_path = truth.save(lake / "_simulate" / "truth.json")
        with console.progress("ingesting (bridge + stream)", truth.injected.records) as advance:
            done = {"records": 0}

            def on_batch(counts: Any) -> None:
                done["records"] += counts.records_in
                advance(done["records"])
                console.batch(counts)

            code = run_ingest(config, on_batch=on_batch)
        if code != 0:
            console.error("the streaming job failed; see the log above")
            return 1
        result = verify(lake, truth)
        ops = required_local_dir(config.ops_root, "lake.ops_root (for the demo)")
        batches = read_batches(ops / "metrics" / "batches")
        check = _conservation(ops, sqs, queues, sent, batches, config)
    console.summary(result, table_activity(batches), check, truth, config, time.monotonic() - started)
    kept = args.keep or args.lake_root is not None
    console.snippet(result, truth, config, args.config or "conf/local.yaml", kept)
    console.note(f"ground truth: {truth_path}")
    return 0 if result.ok and check.ok else 1


def _demo_config(args: argparse.Namespace, lake: Path, endpoint: str, queue_url: str) -> SilverlineConfig:
    """The configuration file's settings, pointed at the demo's lake, queue and local AWS APIs."""
    return config_from_args(
        argparse.Namespace(**{**vars(args), "lake_root": str(lake), "queue_url": queue_url}),
        aws={"endpoint_url": endpoint},
        sqs={"endpoint_url": endpoint},
        lake={"ops_root": None, "objects_root": "s3://" if args.mode == "s3-api" else None},
        stream={"trigger": "available-now", "checkpoint_root": None},
        # moto's SQS is single-threaded and slow: two receivers and short waits drain it fastest.
        bridge={"receivers": 2, "wait_time_seconds": 1, "flush_interval_seconds": 1},
    )


def _conservation(
    ops: Path, sqs: Any, queues: Any, sent: int, batches: list[dict[str, Any]], config: Any
) -> Conservation:
    return conservation(
        sent=sent,
        bronze=bronze_bodies(ops / "bronze"),
        queue_left=_queue_depth(sqs, queues.queue_url),
        dlq=_queue_depth(sqs, queues.dlq_url),
        batches=batches,
        dedupe_dropped=_dedupe_dropped(config),
    )


def _queue_depth(sqs: Any, url: str) -> int:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attrs = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return sum(int(attrs.get(n, 0)) for n in names)


def _dedupe_dropped(config: Any) -> int:
    from jobs.lakeread import ops_location, read_iceberg

    rows = read_iceberg(ops_location(config, "stream_progress"), config, ["duplicates_dropped"])
    return 0 if rows is None else sum(int(n or 0) for n in rows["duplicates_dropped"].to_pylist())

"""``silverline simulate``: play a SaaS platform feeding one tenant group, and keep the ground truth."""

from __future__ import annotations

import argparse
import logging
import sys
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path
from typing import TYPE_CHECKING, Any
from urllib.parse import urlsplit
from urllib.request import url2pathname

import boto3
from botocore.exceptions import BotoCoreError, ClientError

from jobs.bridge.landing import s3_client_for
from jobs.cliargs import add_command, add_config_arguments, config_from_args
from jobs.config import ConfigError, SilverlineConfig
from jobs.simulate.s3api import run_s3_api
from jobs.simulate.simulator import run
from jobs.simulate.spec import SimulationSpec
from jobs.simulate.sqs import Progress, PublishError, create_group, publish, queue_arn
from jobs.simulate.truth import GroundTruth

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient

log = logging.getLogger(__name__)

_DESCRIPTION = """\
Simulate a SaaS platform feeding one tenant group (one bucket, one SQS queue):
tenants upload orders (CSV, some .csv.gz), clicks (JSON lines) and inventory
(Parquet) under <tenant>/raw/<dataset>/<yyyy>/<mm>/<dd>/, overwrite and delete
some of them, and upload a few bad files. Notifications are published in real
S3 format, with duplicates, swapped order, held-back messages, SNS envelopes,
two-record messages, s3:TestEvents, events on the silver zone and malformed
bodies mixed in.

Modes:
  files   (default) write the objects into the local lake (<lake.root>/<bucket>/<key>)
          and publish hand-built notifications (with sequencers) to the queue.
  s3-api  upload through the S3 API (aws.endpoint_url, e.g. moto's server) and let
          the store send its own notifications to the queue (no sequencers there);
          the job then reads the objects through the S3 API (lake.objects_root: s3://).

The ground truth (what every silver table must hold, which files must be
quarantined, and counters of everything injected) is written as JSON to --truth
(default <lake.root>/_simulate/<group>-seed<N>.json). Use a fresh lake or another
seed for every run: one seed always writes the same keys.
"""

_EPILOG = """\
example (moto's server on port 5000):
  silverline simulate --config conf/local.yaml --sqs-endpoint-url http://127.0.0.1:5000 \\
      --create-queue demo-events --tenants 5 --objects 60 --dup-rate 0.1 --seed 7
  silverline bridge --config conf/local.yaml --sqs-endpoint-url http://127.0.0.1:5000 \\
      --queue-url http://127.0.0.1:5000/123456789012/demo-events --until-empty

Rates are shares between 0 and 1 and become exact counts (round(rate * base)).
exit codes: 0 done; 1 publishing or the S3 API failed (files mode: the truth is still written);
2 invalid configuration or arguments.
"""

SPEC_FLAGS: tuple[tuple[str, type, str], ...] = (
    ("tenants", int, "tenants uploading"),
    ("objects", int, "good uploads incl. overwrites"),
    ("overwrite_rate", float, "share of uploads overwriting an earlier key"),
    ("delete_rate", float, "share of keys deleted later"),
    ("dup_rate", float, "share of notifications published twice"),
    ("reorder_rate", float, "notifications swapped out of order, as a share"),
    ("delay_rate", float, "share of notifications held back and published last"),
    ("bad_rate", float, "bad files, as a share of uploads"),
    ("malformed_rate", float, "malformed bodies, as a share of uploads"),
    ("seed", int, "random seed"),
)


_DEFAULTS = SimulationSpec()


def add_parser(subparsers: Any) -> None:
    """Register the ``simulate`` subcommand.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    parser = add_command(
        subparsers,
        "simulate",
        summary="simulate tenants' uploads and publish their notifications (with a ground truth)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )
    add_config_arguments(parser)
    parser.add_argument("--create-queue", metavar="NAME", help="create (or reuse) queue NAME and NAME-dlq")
    parser.add_argument("--mode", choices=("files", "s3-api"), default="files", help="default: files")
    add_spec_arguments(parser)
    parser.add_argument("--truth", metavar="FILE", help="where to write the ground truth (JSON)")
    parser.add_argument("--bodies", metavar="FILE", help="also write the bodies as JSON lines (files mode)")
    parser.set_defaults(func=run_simulate)


def add_spec_arguments(parser: argparse.ArgumentParser) -> None:
    """Add one flag per :data:`SPEC_FLAGS` entry (``--dup-rate`` ...), defaulting to the spec's."""
    for name, kind, text in SPEC_FLAGS:
        flag = "--" + name.replace("_", "-")
        default = getattr(_DEFAULTS, name)
        metavar = "N" if kind is int else "R"
        parser.add_argument(flag, dest=name, type=kind, metavar=metavar, help=f"{text} (default {default})")


def spec_values(args: argparse.Namespace) -> dict[str, Any]:
    """The spec fields the flags of :func:`add_spec_arguments` set."""
    return {name: getattr(args, name) for name, _, _ in SPEC_FLAGS if getattr(args, name) is not None}


def spec_from_args(args: argparse.Namespace, config: SilverlineConfig) -> SimulationSpec:
    """The spec the flags ask for, in the configured bucket and region."""
    return SimulationSpec(**spec_values(args), bucket=config.group.bucket, region=config.aws.region)


def local_dir(uri: str) -> Path | None:
    """The directory of a ``file:`` URI, None for any other scheme."""
    return Path(url2pathname(urlsplit(uri).path)) if uri.startswith("file:") else None


def required_local_dir(uri: str, what: str) -> Path:
    """The directory of a ``file:`` URI; a :class:`ConfigError` naming ``what`` for any other scheme."""
    path = local_dir(uri)
    if path is None:
        raise ConfigError(f"{what} must be a local directory (file://), got {uri}")
    return path


def run_simulate(args: argparse.Namespace) -> int:
    """Run ``simulate``.

    Args:
        args: Parsed arguments.

    Returns:
        0 done, 1 publishing or the S3 API failed, 2 bad arguments.
    """
    config = config_from_args(args)
    try:
        spec = spec_from_args(args, config)
    except (TypeError, ValueError) as exc:
        return _usage_error(str(exc))
    lake = local_dir(config.lake.root)
    truth_path = Path(args.truth) if args.truth else None
    if truth_path is None and lake is not None:
        truth_path = lake / "_simulate" / f"{config.group.name}-seed{spec.seed}.json"
    if truth_path is None:
        return _usage_error("lake.root is not local: pass --truth FILE")
    has_queue = bool(args.create_queue or config.sqs.queue_url)
    if args.mode == "files" and lake is None:
        return _usage_error("files mode writes into a local lake: lake.root must be a directory")
    if not has_queue and (args.mode == "s3-api" or not args.bodies):
        return _usage_error("no queue: pass --queue-url, --create-queue NAME or set sqs.queue_url")
    sqs = boto3.client("sqs", endpoint_url=config.sqs_endpoint_url, region_name=config.aws.region)
    try:
        queue_url = (
            create_group(sqs, args.create_queue).queue_url if args.create_queue else config.sqs.queue_url
        )
        if args.mode == "s3-api" and queue_url:
            s3 = s3_client_for(config)
            truth = run_s3_api(s3, sqs, spec.bucket, queue_arn(sqs, queue_url), spec)
            truth.save(truth_path)
        elif lake is not None:
            truth = _files_mode(spec, lake, truth_path, queue_url, sqs, args.bodies)
        else:
            return _usage_error(f"cannot run mode {args.mode} with this configuration")
    except (PublishError, BotoCoreError, ClientError) as exc:
        print(f"silverline simulate: {exc}", file=sys.stderr)
        return 1
    print(_summary(args.mode, spec, truth, queue_url, truth_path))
    return 0


def _files_mode(
    spec: SimulationSpec,
    lake: Path,
    truth_path: Path,
    queue_url: str | None,
    sqs: SQSClient,
    bodies_path: str | None,
) -> GroundTruth:
    """Write the files and the truth, then publish (and maybe save) the bodies."""
    bodies, truth = run(spec, lake)
    truth.save(truth_path)
    if bodies_path:
        Path(bodies_path).write_text("".join(b + "\n" for b in bodies), encoding="utf-8")
    if queue_url:
        with _progress(len(bodies)) as progress:
            publish(sqs, queue_url, bodies, progress)
    return truth


@contextmanager
def _progress(total: int) -> Iterator[Progress]:
    """A rich progress bar on a terminal, else a log line every tenth of the way."""
    if sys.stderr.isatty():
        from rich.console import Console
        from rich.progress import Progress as Bar

        with Bar(console=Console(stderr=True), transient=False) as bar:
            task = bar.add_task("publishing", total=total)
            yield lambda sent, _total: bar.update(task, completed=sent)
        return
    step = max(1, total // 10)
    marks = {"next": step}

    def report(sent: int, all_: int) -> None:
        if sent >= marks["next"] or sent == all_:
            log.info("published %d of %d messages", sent, all_)
            marks["next"] = sent + step

    yield report


def _summary(mode: str, spec: SimulationSpec, truth: GroundTruth, queue_url: str | None, path: Path) -> str:
    n = truth.injected
    rows = sum(len(truth.expected_rows(t, d)) for t, d in truth.table_pairs())
    return "\n".join(
        [
            f"simulate ({mode}): bucket {truth.bucket}, {spec.tenants} tenants, seed {spec.seed}",
            f"  objects:  {n.uploads} uploads ({n.new_keys} new keys, {n.overwrites} overwrites, "
            f"{n.multipart} multipart), {n.deletes} deletes, {n.bad_files} bad files",
            f"  delivery: {n.messages} messages / {n.records} records: {n.duplicates} duplicates, "
            f"{n.reordered} swapped, {n.delayed} delayed, {n.sns_wrapped} SNS-wrapped, "
            f"{n.multi_record_messages} two-record, {n.malformed} malformed, {n.test_events} test events, "
            f"{n.non_raw_events} non-raw",
            f"  expected: {len(truth.table_pairs())} tables, {rows} rows; "
            f"{len(truth.quarantined)} files to quarantine",
            f"  queue:    {queue_url or '(not published)'}",
            f"  truth:    {path}",
        ]
    )


def _usage_error(message: str) -> int:
    print(f"silverline simulate: {message}", file=sys.stderr)
    return 2

"""``silverline dlq inspect|redrive``: the dead-lettered messages of a tenant group's queue."""

from __future__ import annotations

import argparse
import json
import sys
from collections.abc import Callable, Sequence
from typing import TYPE_CHECKING, Any, TextIO

from jobs.bridge.sqsapi import make_sqs_client
from jobs.cliargs import (
    add_command,
    add_command_group,
    add_config_arguments,
    aws_errors_exit_1,
    config_from_args,
)
from jobs.config import ConfigError, SilverlineConfig
from jobs.dlq.moves import RedriveResult, redrive
from jobs.dlq.peek import peek
from jobs.dlq.queues import dlq_depth, resolve_queues
from jobs.dlq.view import format_outcomes, json_rows, outcome_counts, text_lines, view_message

if TYPE_CHECKING:
    from mypy_boto3_sqs import SQSClient
    from mypy_boto3_sqs.type_defs import MessageTypeDef

_DESCRIPTION = """\
Look at and redrive the messages SQS moved to the tenant group's dead-letter
queue (after maxReceiveCount receives of the main queue). The DLQ is --dlq-url,
else the target of the main queue's RedrivePolicy (--queue-url / sqs.queue_url).
AWS calls go to aws.region and sqs.endpoint_url / aws.endpoint_url
(--sqs-endpoint-url, e.g. moto's server).
"""

_EPILOG = """\
examples (moto's server on port 5000; the group's queue is silverline-<group>):
  export SILVERLINE__AWS__ENDPOINT_URL=http://127.0.0.1:5000
  export SILVERLINE__SQS__QUEUE_URL=http://127.0.0.1:5000/123456789012/silverline-demo
  silverline dlq inspect --config conf/local.yaml --limit 20
  silverline dlq inspect --config conf/local.yaml --json | jq -c '{message_id, outcome, reason, key}'
  silverline dlq redrive --config conf/local.yaml --dry-run
  silverline dlq redrive --config conf/local.yaml --limit 100
  silverline dlq inspect --dlq-url http://127.0.0.1:5000/123456789012/silverline-demo-dlq

exit codes: 0 done; 1 an AWS request failed or some messages were not moved
(they stay in the DLQ); 2 bad configuration: no queue URL, no dead-letter queue.
"""

_INSPECT = """\
Show dead-lettered messages without consuming them: up to --limit messages are
received with a short visibility timeout and made visible again at once
(also when the command fails), so the DLQ is left as it was except for each
message's receive count. Each message is shown with its id, receive count and
sent time, then one line per S3 record as `silverline parse-events` reads it:
outcome, reason, event name, bucket, decoded key, sequencer (and a preview of
the body when a record was rejected). --json prints parse-events' JSON lines
(plus message_id, receive_count, sent_time) and the summary on stderr.
"""

_REDRIVE = """\
Move dead-lettered messages back to the main queue: receive 10 at a time, send
each body with its message attributes to the main queue (SendMessageBatch) and
delete it from the DLQ only after its send succeeded. Nothing is lost: a message
whose send failed stays in the DLQ; a crash between send and delete leaves it in
both queues, and the stream drops the duplicate. --dry-run only lists what
would move and leaves every message where it is.
"""


def _positive(value: str) -> int:
    number = int(value)
    if number < 1:
        raise argparse.ArgumentTypeError("must be at least 1")
    return number


def _visibility(value: str) -> int:
    number = int(value)
    if not 1 <= number <= 43200:
        raise argparse.ArgumentTypeError("must be 1..43200 seconds")
    return number


def add_parser(subparsers: Any) -> None:
    """Register ``dlq`` with its actions ``inspect`` and ``redrive``.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    actions = add_command_group(
        subparsers,
        "dlq",
        summary="inspect or redrive the dead-lettered messages of the group's queue",
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )
    inspect = add_command(
        actions,
        "inspect",
        summary="show dead-lettered messages and their parsed records, leaving them in the DLQ",
        description=_INSPECT,
        epilog=_EPILOG,
    )
    _common(inspect, visibility_default=60)
    inspect.add_argument("--limit", type=_positive, default=10, metavar="N", help="messages (default 10)")
    inspect.add_argument("--json", action="store_true", help="JSON lines, one per record")
    inspect.set_defaults(func=aws_errors_exit_1(run_inspect))

    move = add_command(
        actions,
        "redrive",
        summary="move dead-lettered messages back to the main queue",
        description=_REDRIVE,
        epilog=_EPILOG,
    )
    _common(move, visibility_default=300)
    move.add_argument("--limit", type=_positive, metavar="N", help="move at most N messages (default: all)")
    move.add_argument("--dry-run", action="store_true", help="only list what would move; change nothing")
    move.set_defaults(func=aws_errors_exit_1(run_redrive))


def _common(parser: argparse.ArgumentParser, *, visibility_default: int) -> None:
    add_config_arguments(parser)
    parser.add_argument(
        "--dlq-url",
        metavar="URL",
        help="the dead-letter queue (default: the main queue's RedrivePolicy target)",
    )
    parser.add_argument(
        "--visibility-timeout",
        type=_visibility,
        default=visibility_default,
        metavar="S",
        help=f"hold received messages this long while the command runs (default {visibility_default})",
    )


def run_inspect(args: argparse.Namespace) -> int:
    """Entry of ``silverline dlq inspect``.

    Args:
        args: Parsed arguments.

    Returns:
        The exit code.
    """
    config = config_from_args(args)
    return inspect_dlq(
        config,
        dlq_url=args.dlq_url,
        limit=args.limit,
        as_json=args.json,
        visibility_seconds=args.visibility_timeout,
    )


def inspect_dlq(
    config: SilverlineConfig,
    *,
    dlq_url: str | None = None,
    limit: int = 10,
    as_json: bool = False,
    visibility_seconds: int = 60,
    sqs: SQSClient | None = None,
    out: TextIO | None = None,
) -> int:
    """Print up to ``limit`` dead-lettered messages and their records; leave them in the DLQ.

    Args:
        config: The job configuration (``sqs.queue_url``, endpoint, region).
        dlq_url: The DLQ; default: the main queue's redrive target.
        limit: At most this many messages.
        as_json: JSON lines on ``out`` and the summary on stderr.
        visibility_seconds: How long messages are held while the command runs.
        sqs: SQS client (default: built from ``config``).
        out: Where the output goes (default: stdout).

    Returns:
        0.

    Raises:
        ConfigError: No queue URL or no dead-letter queue.
    """
    out = out or sys.stdout
    sqs = sqs or make_sqs_client(config)
    queues = resolve_queues(sqs, config.sqs.queue_url, dlq_url)
    views = [
        view_message(m) for m in peek(sqs, queues.dlq_url, limit=limit, visibility_seconds=visibility_seconds)
    ]
    if not as_json:
        print(f"dead-letter queue {queues.dlq_url}", file=out)
    for position, view in enumerate(views):
        if as_json:
            for row in json_rows(position, view):
                out.write(json.dumps(row, ensure_ascii=False) + "\n")
        else:
            out.write("\n".join(text_lines(position, view)) + "\n")
    depth = dlq_depth(sqs, queues.dlq_url)
    summary = (
        f"dlq inspect: {len(views)} messages shown; records: {format_outcomes(outcome_counts(views))}; "
        f"DLQ depth ~{depth.visible} ({depth.in_flight} in flight)"
    )
    print(summary, file=sys.stderr if as_json else out)
    return 0


def run_redrive(args: argparse.Namespace) -> int:
    """Entry of ``silverline dlq redrive``.

    Args:
        args: Parsed arguments.

    Returns:
        The exit code.
    """
    config = config_from_args(args)
    return redrive_dlq(
        config,
        dlq_url=args.dlq_url,
        limit=args.limit,
        dry_run=args.dry_run,
        visibility_seconds=args.visibility_timeout,
    )


def _progress(out: TextIO, dry_run: bool) -> Callable[[RedriveResult, Sequence[MessageTypeDef]], None]:
    def report(result: RedriveResult, batch: Sequence[MessageTypeDef]) -> None:
        if dry_run:
            for message in batch:
                view = view_message(message)
                print(
                    f"would move id={view.message_id} receives={view.receive_count} sent={view.sent_time} "
                    f"bytes={len(view.body.encode('utf-8'))}",
                    file=out,
                )
        else:
            print(f"  {len(batch)} received: {result.moved} moved, {result.failed} failed so far", file=out)

    return report


def redrive_dlq(
    config: SilverlineConfig,
    *,
    dlq_url: str | None = None,
    limit: int | None = None,
    dry_run: bool = False,
    visibility_seconds: int = 300,
    sqs: SQSClient | None = None,
    out: TextIO | None = None,
) -> int:
    """Move messages from the DLQ back to the main queue and print progress and a summary.

    Args:
        config: The job configuration (``sqs.queue_url``, endpoint, region).
        dlq_url: The DLQ; default: the main queue's redrive target.
        limit: At most this many messages (None: all).
        dry_run: Only list what would move.
        visibility_seconds: How long messages are held while the command runs.
        sqs: SQS client (default: built from ``config``).
        out: Where the output goes (default: stdout).

    Returns:
        0 when every message handled was moved, 1 when some were not.

    Raises:
        ConfigError: No queue URL, no dead-letter queue, or the DLQ is the main queue.
    """
    out = out or sys.stdout
    sqs = sqs or make_sqs_client(config)
    queues = resolve_queues(sqs, config.sqs.queue_url, dlq_url)
    if not queues.queue_url:
        raise ConfigError(
            "no main queue to move messages to: set sqs.queue_url in the config "
            "(or SILVERLINE__SQS__QUEUE_URL) or pass --queue-url URL"
        )
    if queues.queue_url == queues.dlq_url:
        raise ConfigError(f"--dlq-url and the main queue are the same queue ({queues.dlq_url})")
    verb = "dry run, nothing changes" if dry_run else "moving"
    print(f"dlq redrive ({verb}): {queues.dlq_url} -> {queues.queue_url}", file=out)
    result = redrive(
        sqs,
        queues.dlq_url,
        queues.queue_url,
        limit=limit,
        dry_run=dry_run,
        visibility_seconds=visibility_seconds,
        on_batch=_progress(out, dry_run),
    )
    depth = dlq_depth(sqs, queues.dlq_url)
    if result.stopped:
        print(f"silverline dlq redrive: stopped: {result.stopped}", file=sys.stderr)
    if dry_run:
        summary = f"{result.would_move} messages would move; nothing was changed"
    else:
        summary = f"{result.moved} moved, {result.failed} failed (still in the DLQ)"
        if result.not_deleted:
            summary += f", {result.not_deleted} sent but not deleted (in both queues)"
        if result.errors:
            summary += "; errors: " + ", ".join(f"{code} x{n}" for code, n in sorted(result.errors.items()))
    print(f"dlq redrive: {summary}; DLQ depth now ~{depth.visible} ({depth.in_flight} in flight)", file=out)
    return 0 if result.ok else 1

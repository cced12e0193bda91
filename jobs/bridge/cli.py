"""``silverline bridge``: drain the SQS queue into the bronze landing log."""

from __future__ import annotations

import argparse
import contextlib
import json
import logging
import sys
from typing import Any

from jobs.bridge.bridge import SqsBridge
from jobs.bridge.retry import BridgeError
from jobs.cliargs import add_command, add_config_arguments, config_from_args
from jobs.signals import stop_on_signals as on_signals

log = logging.getLogger(__name__)

_DESCRIPTION = """\
Receive S3 event notifications from the tenant group's SQS queue (parallel long
polls, 10 messages a call) and land them, one JSON line per message, in durable
files under <ops_root>bronze/dt=YYYY-MM-DD/. A message is deleted from SQS only
after the file holding it is durable, so a crash loses nothing (at worst a
message lands twice; the stream dedupes it). SIGTERM / Ctrl-C stop cleanly:
what was received is landed and deleted first.
"""

_EPILOG = """\
example (local, moto's server on port 5000):
  silverline bridge --config conf/local.yaml \\
      --sqs-endpoint-url http://127.0.0.1:5000 \\
      --queue-url http://127.0.0.1:5000/123456789012/demo-events --until-empty

tuning: SILVERLINE__BRIDGE__RECEIVERS=8, SILVERLINE__BRIDGE__FLUSH_INTERVAL_SECONDS=2, ...
SILVERLINE__BRIDGE__SQS_TRANSPORT=boto3 sends the SQS calls through botocore instead
of the bridge's lean client (about 3x the CPU per request; behind an HTTP proxy
botocore is used anyway).
exit codes: 0 stopped cleanly or queue drained; 1 gave up (SQS or the store kept
failing; nothing is lost); 2 invalid configuration (e.g. no queue URL).
On exit the final metrics are printed to stdout as one JSON object.
"""


def add_parser(subparsers: Any) -> None:
    """Register the ``bridge`` subcommand.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    parser = add_command(
        subparsers,
        "bridge",
        summary="drain the SQS queue into the bronze landing log",
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )
    add_config_arguments(parser)
    parser.add_argument(
        "--until-empty",
        action="store_true",
        help="exit 0 once the queue is drained and everything landed is deleted "
        "(default: run until SIGTERM/SIGINT)",
    )
    parser.set_defaults(func=run_bridge)


def run_bridge(args: argparse.Namespace) -> int:
    """Run the bridge as the ``bridge`` subcommand does.

    Args:
        args: Parsed arguments.

    Returns:
        0 when stopped cleanly or drained, 1 when the bridge gave up.
    """
    bridge = SqsBridge(config_from_args(args))
    with stop_on_signals(bridge):
        try:
            snapshot = bridge.run_until_empty() if args.until_empty else bridge.run()
        except BridgeError as exc:
            log.error("%s", exc)
            print(f"silverline bridge: {exc}", file=sys.stderr)
            print(json.dumps(bridge.metrics().as_dict()))
            return 1
    print(json.dumps(snapshot.as_dict()))
    return 0


def stop_on_signals(bridge: SqsBridge) -> contextlib.AbstractContextManager[None]:
    """Turn the first SIGTERM / SIGINT into a clean stop of ``bridge``; a second one acts as usual."""
    return on_signals(bridge.request_stop)

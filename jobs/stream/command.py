"""``silverline stream``: run the SQS bridge and the ingest query together.

``available-now`` drains the queue into bronze, processes everything landed,
commits and exits 0 (scheduled catch-up runs, tests); past ``stream.overlap_backlog``
queued messages it processes what has landed while the drain goes on
(:mod:`jobs.stream.overlap`). ``interval=<N>s`` runs
until SIGTERM/SIGINT, which stop it between micro-batches.
"""

from __future__ import annotations

import argparse
import contextlib
import logging
import threading
import time
from typing import Any

from jobs.cliargs import add_command, add_config_arguments, config_from_args
from jobs.config import ConfigError, SilverlineConfig
from jobs.signals import stop_on_signals

log = logging.getLogger(__name__)

_DESCRIPTION = """\
Run silverline's streaming job for one tenant group: the SQS bridge lands
notifications in the bronze log (when a queue URL is configured), and the
ingest query turns them into per-tenant Iceberg silver tables — duplicates
dropped, the newest version of every object applied exactly once, every record
counted in the batch metrics (<ops_root>tables/ops/batch_metrics).
"""

_EPILOG = """\
examples:
  silverline stream --config conf/local.yaml --trigger available-now
  silverline stream --config conf/local.yaml --queue-url URL --sqs-endpoint-url http://127.0.0.1:5000 \\
      --trigger interval=10s
  spark-submit jobs/stream_ingest.py --config conf/emr.yaml     # same arguments

exit codes: 0 finished or stopped cleanly; 1 the query or the bridge failed; 2 bad configuration.

damaged checkpoint: the job checks every checkpoint file before it starts and, if one is damaged,
exits 1 with one line naming it. Recover with --reset-checkpoint: the checkpoint directory is
renamed to <name>.moved-<UTC time> beside it (never deleted), the query re-reads the bronze log
from the start, and the object ledger counts every event already applied as duplicate or stale,
so nothing is applied twice. Use it for one run only (every run with it re-reads all of bronze).
On S3 the check does not run and the move is by hand: aws s3 mv --recursive <checkpoint> <aside>.
"""


def add_parser(subparsers: Any) -> None:
    """Register the ``stream`` subcommand.

    Args:
        subparsers: The top-level parser's subparsers action.
    """
    parser = add_command(
        subparsers,
        "stream",
        summary="run the streaming job (bridge + bronze -> silver)",
        description=_DESCRIPTION,
        epilog=_EPILOG,
    )
    add_config_arguments(parser)
    parser.add_argument("--checkpoint-root", metavar="DIR|URI", help="checkpoints (stream.checkpoint_root)")
    parser.add_argument(
        "--trigger",
        metavar="MODE",
        help="available-now | interval=<N>s (stream.trigger; default available-now)",
    )
    parser.add_argument(
        "--no-bridge", action="store_true", help="only process what is already in bronze; do not poll SQS"
    )
    parser.add_argument(
        "--reset-checkpoint",
        action="store_true",
        help="move the query's checkpoint aside (never deleted) and re-read bronze from the start; "
        "the recovery for a damaged checkpoint (use it for one run, not in a restart policy)",
    )
    parser.set_defaults(func=run_stream_command)


def run_stream_command(args: argparse.Namespace) -> int:
    """Entry of ``silverline stream``.

    Args:
        args: Parsed arguments.

    Returns:
        The exit code.
    """
    config = config_from_args(args, stream={"checkpoint_root": args.checkpoint_root, "trigger": args.trigger})
    return run_ingest(config, with_bridge=not args.no_bridge, reset_checkpoint=args.reset_checkpoint)


def _stop_on_signals(stop: threading.Event) -> contextlib.AbstractContextManager[None]:
    def on_stop() -> None:
        log.info("signal: stopping after the current micro-batch")
        stop.set()

    return stop_on_signals(on_stop)


class _Stopwatch:
    """Seconds per named step of the start-up, for one log line."""

    def __init__(self) -> None:
        self._last = time.monotonic()
        self._laps: list[tuple[str, float]] = []

    def lap(self, name: str) -> None:
        now = time.monotonic()
        self._laps.append((name, now - self._last))
        self._last = now

    def summary(self) -> str:
        total = sum(seconds for _, seconds in self._laps)
        return f"{total:.1f} s (" + ", ".join(f"{name} {seconds:.1f} s" for name, seconds in self._laps) + ")"


def _long_backlog(bridge: Any, config: SilverlineConfig) -> bool:
    """Whether the queue holds at least ``stream.overlap_backlog`` messages now (see jobs.stream.overlap)."""
    threshold = config.stream.overlap_backlog
    if threshold is None:
        return False
    try:
        backlog = int(bridge.backlog())
    except Exception as exc:  # SQS unreachable now: drain first, as the bridge retries it
        log.info("queue backlog unknown (%s): draining before processing", exc)
        return False
    if backlog >= threshold:
        log.info("%d messages queued (at least %d): processing while the bridge drains", backlog, threshold)
        return True
    return False


def run_ingest(
    config: SilverlineConfig,
    *,
    with_bridge: bool = True,
    stop: threading.Event | None = None,
    on_batch: Any = None,
    lease: Any = None,
    reset_checkpoint: bool = False,
) -> int:
    """Run the bridge and the ingest query until done or stopped.

    The writer lease (:mod:`jobs.stream.lease`) is taken first (waiting while another
    process holds it) and renewed while the query runs.

    Args:
        config: The job configuration.
        with_bridge: Poll SQS (when a queue URL is configured).
        stop: Set it to stop between micro-batches (signals set it too).
        on_batch: Called with each batch's :class:`jobs.stream.accounting.BatchCounts`.
        lease: A :class:`jobs.stream.lease.WriterLease` the caller already holds (default: take one).
        reset_checkpoint: Move the checkpoint aside (under the lease) and start from bronze's start.

    Returns:
        0 on success, 1 when the query or the bridge failed.
    """
    from jobs.bridge.bridge import SqsBridge
    from jobs.bridge.landing import open_store
    from jobs.bridge.retry import BridgeError
    from jobs.contracts import load_contracts
    from jobs.quality.results import results_uri
    from jobs.quality.suites import check_suites, expectations_dir
    from jobs.session import build_spark_session, use_utc_local_time
    from jobs.silver.evolution import evolve_tables
    from jobs.stream.checkpoint import checkpoint_problem
    from jobs.stream.cloudwatch import CloudWatchPublisher
    from jobs.stream.control import StopWatcher
    from jobs.stream.lease import WriterLease
    from jobs.stream.microbatch import BatchWriter
    from jobs.stream.notify import notifier_for
    from jobs.stream.ops import MetricsSink, ensure_ops_tables, ops_table
    from jobs.stream.overlap import run_overlapped
    from jobs.stream.query import ProgressRecorder, checkpoint_uri, failure_message, start_query

    damaged = None if reset_checkpoint else checkpoint_problem(checkpoint_uri(config))
    if damaged is not None:  # before Spark starts: one line naming the file and the recovery
        log.error("%s", damaged)
        return 1
    stop = stop or threading.Event()
    use_utc_local_time()
    startup = _Stopwatch()
    contracts = load_contracts(config.stream.datasets_file)
    check_suites(contracts, expectations_dir(config.stream.datasets_file))  # bad suites stop startup
    startup.lap("contracts and suites")
    bridge = SqsBridge(config) if with_bridge and config.sqs.queue_url else None
    spark = build_spark_session(config)
    startup.lap("spark")
    ensure_ops_tables(spark, config)
    startup.lap("ops tables")
    evolve_tables(spark, config, contracts)  # contract changes reach existing tables before any batch
    startup.lap("schema check")
    log.info("start-up: %s", startup.summary())
    gate = _tenant_gate(config)
    if gate is None:
        return 1
    cloudwatch = CloudWatchPublisher.for_config(config)

    def batch_done(counts: Any) -> None:
        if cloudwatch is not None:
            cloudwatch.publish(counts)  # queued: sent by its own thread
        if on_batch is not None:
            on_batch(counts)

    writer = BatchWriter(
        spark,
        config,
        contracts,
        metrics_sink=MetricsSink.for_config(config),
        on_batch=batch_done,
        gate=gate,
        notifier=notifier_for(config),
    )
    writer.ops.results_store = open_store(results_uri(config), config)
    available_now = config.stream.trigger == "available-now"
    lease = lease or WriterLease.for_config(config, "stream")
    writer.lease = lease
    with _stop_on_signals(stop):
        if not lease.held and not lease.acquire(stop=stop):
            log.info("stopped while waiting for the writer lease")
            return 0
        try:
            lease.start_heartbeat()
            writer.take_over()
            recorder = ProgressRecorder(spark, ops_table(config, "stream_progress"))
            retries = RetryScheduler(writer, config.stream.retry_interval_seconds, lease)
            if bridge is not None and available_now and _long_backlog(bridge, config):
                query = run_overlapped(
                    bridge,
                    lambda n: start_query(spark, config, writer, reset_checkpoint=reset_checkpoint and not n),
                    lambda q: _wait(q, stop, recorder, bridge, retries, long_running=False),
                    stop,
                )
            else:
                if bridge is not None and available_now:
                    log.info("draining %s into bronze", config.sqs.queue_url)
                    bridge.run_until_empty()
                elif bridge is not None:
                    bridge.start()
                query = start_query(spark, config, writer, reset_checkpoint=reset_checkpoint)
                watcher = StopWatcher(config) if not available_now else None
                _wait(query, stop, recorder, bridge, retries, long_running=not available_now, watcher=watcher)
                if bridge is not None and not available_now:
                    bridge.stop()
            if available_now and query.exception() is None:
                retries.drain(str(query.id), config.stream.max_attempts, stop)
            if writer.notifier is not None:
                writer.notifier.flush()  # what waits for its window is sent before the job ends
        except BridgeError as exc:
            log.error("bridge gave up: %s", exc)
            return 1
        finally:
            lease.release()
            if cloudwatch is not None:
                cloudwatch.close()
    if bridge is not None and bridge.failure is not None:
        return 1
    error = query.exception()
    if error is not None:
        log.error("ingest query failed: %s", failure_message(error, config))
        return 1
    log.info("ingest finished")
    return 0


def _tenant_gate(config: SilverlineConfig) -> Any:
    """The stream's view of the tenant registry, read once at startup (None: unreadable, logged)."""
    from jobs.tenants.gate import TenantGate
    from jobs.tenants.registry import open_registry

    try:
        registry = open_registry(config)
        return TenantGate(registry, config.group.name, config.registry.refresh_seconds)
    except ConfigError:
        raise
    except Exception as exc:
        log.error("cannot read the tenant registry (%s backend): %s", config.registry.backend, exc)
        return None


class RetryScheduler:
    """Runs retry passes for failed tenant commits when the stream has no batch running."""

    def __init__(self, writer: Any, interval: float, lease: Any = None) -> None:
        """Create the scheduler.

        Args:
            writer: The :class:`jobs.stream.microbatch.BatchWriter`.
            interval: ``stream.retry_interval_seconds``.
            lease: The writer lease, renewed between passes (None: no lease).
        """
        self._writer = writer
        self._interval = interval
        self._last = time.monotonic()
        self.lease = lease

    def renew(self) -> bool:
        """Renew the writer lease; False when it was lost (another process took it over)."""
        if self.lease is None:
            return True
        self.lease.renew()
        return bool(self.lease.held)

    def maybe_run(self, query: Any) -> None:
        """Run a pass if the interval has passed and no micro-batch is running."""
        if time.monotonic() - self._last < self._interval or query.status.get("isTriggerActive"):
            return
        self._last = time.monotonic()
        self._writer.retry_pass(str(query.id))

    def tick_notifications(self) -> None:
        """Send the downstream notifications whose window has passed (no-op when not configured)."""
        notifier = getattr(self._writer, "notifier", None)
        if notifier is not None:
            notifier.tick()

    def drain(self, query_id: str, max_attempts: int, stop: threading.Event) -> None:
        """After an available-now run: pass until every waiting event is applied, held or parked.

        Events over their tenant's cap, and held events of tenants now active,
        go through at once, pass after pass. A pass with failed commits adds an
        attempt to their events, so at most ``max_attempts`` such passes run;
        the pause after each doubles from 1 s up to the retry interval.
        """
        failures = 0
        while not stop.is_set() and failures < max_attempts and self.renew():
            counts = self._writer.retry_pass(query_id)
            if counts is None:
                return
            if counts.tables_failed:
                stop.wait(min(self._interval, 2.0**failures))
                failures += 1


def _wait(
    query: Any,
    stop: threading.Event,
    recorder: Any,
    bridge: Any,
    retries: RetryScheduler,
    *,
    long_running: bool,
    watcher: Any = None,
) -> None:
    last_record = time.monotonic()
    while query.isActive:
        marker = watcher.requested() if watcher is not None and not stop.is_set() else None
        if marker is not None:
            log.info(
                "stop marker found (%s, %s): stopping after the current micro-batch; a new deploy "
                "(silverline emr deploy-stream) removes it",
                marker.get("reason"),
                marker.get("requested_at"),
            )
            stop.set()
        if long_running:  # retries and handed-over requests do not wait for new input
            retries.maybe_run(query)
        retries.tick_notifications()
        if not retries.renew() and not stop.is_set():
            stop.set()  # another process writes now: finish the current batch and stop
            log.error("the writer lease was taken over: stopping")
        if long_running and bridge is not None and bridge.failure is not None and not stop.is_set():
            stop.set()  # the bridge gave up: finish the current batch, then report it
            log.error("SQS bridge failed: %s", bridge.failure)
        if time.monotonic() - last_record > 5:
            recorder.record(query)
            last_record = time.monotonic()
        if stop.is_set():
            while query.isActive and query.status.get("isTriggerActive"):
                time.sleep(0.2)
            query.stop()
            break
        try:
            query.awaitTermination(1)
        except Exception:  # the failure is reported by query.exception()
            break
    recorder.record(query)

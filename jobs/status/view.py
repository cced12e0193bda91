"""What ``silverline status`` reports about a tenant group, gathered without starting Spark.

Every part is read where the job keeps it, with the same stores the job writes
through (local directory or S3 prefix):

* the queue and its dead-letter queue: SQS's approximate counts; the age of the
  oldest message is CloudWatch's ``ApproximateAgeOfOldestMessage`` (SQS's API has
  no such attribute), ``None`` when CloudWatch has no data point;
* bronze: the landed files, against the file source's log in the query's checkpoint
  (``sources/0/N[.compact]``): the files the query has not taken yet;
* the last batch and the tenants' lag: the JSON copy of each batch's metrics
  (``<ops_root>metrics/batches/``);
* retry, held, dropped and parked events: the ops tables, read with pyiceberg from
  their newest metadata file;
* the writer lease: who holds it, and whether it is alive.

A part that cannot be read is reported as an error in its place; the rest is still
shown.
"""

from __future__ import annotations

import json
import logging
from collections import Counter
from collections.abc import Callable
from datetime import UTC, datetime, timedelta
from typing import Any
from urllib.parse import unquote, urlparse

from jobs.config import SilverlineConfig
from jobs.tenants.gate import RELEASABLE, TENANT_OFFBOARDED

log = logging.getLogger(__name__)

# How many lagging tenants the human view lists (the JSON has every tenant).
TOP_LAGGING = 5


def group_status(config: SilverlineConfig, now: datetime | None = None) -> dict[str, Any]:
    """The status of a configuration's tenant group as one JSON-ready dict.

    Args:
        config: The job configuration.
        now: The current time (tests pass one).

    Returns:
        ``group``, ``queue``, ``dlq``, ``bronze``, ``last_batch``, ``events``, ``lease``,
        ``tenants`` (keyed by tenant name), ``problems`` (what an operator should look at)
        and ``healthy`` (no problems).
    """
    now = now or datetime.now(UTC)
    status: dict[str, Any] = {
        "group": {"name": config.group.name, "bucket": config.group.bucket, "ops_root": config.ops_root},
        "checked_at": now.isoformat(),
    }
    tenants: dict[str, dict[str, Any]] = {}
    try:
        status["queue"], status["dlq"] = _queues(config)
    except Exception as exc:
        status["queue"] = status["dlq"] = _error(exc)
    status["bronze"] = _part(lambda: _bronze(config))
    status["last_batch"] = _part(lambda: _last_batch(config, tenants, now))
    status["events"] = _part(lambda: _waiting_events(config, tenants))
    status["lease"] = _part(lambda: _lease(config))
    status["tenants"] = dict(sorted(tenants.items()))
    status["problems"] = problems(status)
    status["healthy"] = not status["problems"]
    return status


def _part(read: Callable[[], Any]) -> Any:
    """``read()``, or ``{"error": ...}`` when it fails (the other parts are still read)."""
    try:
        return read()
    except Exception as exc:
        return _error(exc)


def _error(exc: Exception) -> dict[str, str]:
    log.debug("a status part could not be read", exc_info=True)
    lines = str(exc).strip().splitlines()
    return {"error": f"{type(exc).__name__}: {lines[0] if lines else ''}".rstrip(": ")}


def _queues(config: SilverlineConfig) -> tuple[dict[str, Any] | None, dict[str, Any] | None]:
    """The queue's and the DLQ's counts (None: no queue configured / no DLQ)."""
    if not config.sqs.queue_url:
        return None, None
    from jobs.bridge.sqsapi import make_sqs_client
    from jobs.dlq.queues import dead_letter_arn, parse_queue_arn

    sqs = make_sqs_client(config)
    queue = _queue_counts(config, sqs, config.sqs.queue_url)
    try:
        account, name = parse_queue_arn(dead_letter_arn(sqs, config.sqs.queue_url))
        dlq_url = sqs.get_queue_url(QueueName=name, QueueOwnerAWSAccountId=account)["QueueUrl"]
    except Exception:  # no redrive policy, or its queue is gone
        return queue, None
    return queue, _queue_counts(config, sqs, dlq_url)


def _queue_counts(config: SilverlineConfig, sqs: Any, url: str) -> dict[str, Any]:
    names = ["ApproximateNumberOfMessages", "ApproximateNumberOfMessagesNotVisible"]
    attributes = sqs.get_queue_attributes(QueueUrl=url, AttributeNames=names)["Attributes"]
    return {
        "url": url,
        "visible": int(attributes.get(names[0], 0)),
        "in_flight": int(attributes.get(names[1], 0)),
        "oldest_message_age_s": _oldest_age(config, url.rstrip("/").rsplit("/", 1)[-1]),
    }


def _oldest_age(config: SilverlineConfig, queue_name: str) -> float | None:
    """CloudWatch's age of the queue's oldest message over the last 5 minutes (None: no data)."""
    import boto3

    try:
        cloudwatch = boto3.client(
            "cloudwatch", region_name=config.aws.region, endpoint_url=config.aws.endpoint_url
        )
        end = datetime.now(UTC)
        points = cloudwatch.get_metric_statistics(
            Namespace="AWS/SQS",
            MetricName="ApproximateAgeOfOldestMessage",
            Dimensions=[{"Name": "QueueName", "Value": queue_name}],
            StartTime=end - timedelta(minutes=5),
            EndTime=end,
            Period=60,
            Statistics=["Maximum"],
        )["Datapoints"]
    except Exception:
        log.debug("no CloudWatch age for queue %s", queue_name, exc_info=True)
        return None
    if not points:
        return None
    return float(max(points, key=lambda p: p["Timestamp"])["Maximum"])


def _bronze(config: SilverlineConfig) -> dict[str, Any]:
    """Bronze files landed, and those the query has not taken yet."""
    from jobs.bridge.landing import open_file_store
    from jobs.stream.query import bronze_uri, checkpoint_uri

    landed = [n for n in open_file_store(bronze_uri(config), config).names() if n.endswith(".jsonl")]
    taken = _taken_files(open_file_store(f"{checkpoint_uri(config)}sources/0/", config))
    pending = [name for name in landed if name.rsplit("/", 1)[-1] not in taken]
    return {"files_landed": len(landed), "files_pending": len(pending)}


def _taken_files(log_store: Any) -> set[str]:
    """Base names of the files in the file source's log (the newest compact file, then later batches)."""
    from jobs.stream.checkpoint import SOURCE_LOG_RE

    batches = sorted(
        (int(name.split(".")[0]), name) for name in log_store.names() if SOURCE_LOG_RE.match(name)
    )
    compacts = [i for i, (_, name) in enumerate(batches) if name.endswith(".compact")]
    taken: set[str] = set()
    for _, name in batches[compacts[-1] if compacts else 0 :]:
        for line in log_store.read(name).decode("utf-8").splitlines()[1:]:  # line 1: the version
            if line.strip():
                path = json.loads(line)["path"]
                taken.add(unquote(urlparse(path).path).rsplit("/", 1)[-1])
    return taken


def _last_batch(config: SilverlineConfig, tenants: dict[str, dict[str, Any]], now: datetime) -> Any:
    """The newest batch's metrics (None before the first); the tenants' lag goes into ``tenants``."""
    from jobs.bridge.landing import open_file_store
    from jobs.stream.ops import metrics_uri

    store = open_file_store(metrics_uri(config), config)
    newest: dict[str, Any] | None = None
    for name in store.names():
        if not name.endswith(".jsonl"):
            continue
        for line in store.read(name).decode("utf-8").splitlines():
            batch = json.loads(line)
            if newest is None or (batch.get("finished_at") or "") > (newest.get("finished_at") or ""):
                newest = batch
    if newest is None:
        return None
    for tenant, lag in (newest.get("tenant_lag_s") or {}).items():
        tenants.setdefault(tenant, {})["lag_s"] = lag
    finished = newest.get("finished_at")
    keep = (
        "batch_id", "query_id", "started_at", "finished_at", "records_in", "retried_in", "applied",
        "duplicate", "stale", "ignored", "test", "parked", "quarantined", "rejected", "deferred",
        "dropped", "tables_committed", "tables_failed", "balanced", "freshness_p50_s", "freshness_p95_s",
    )  # fmt: skip
    last = {key: newest.get(key) for key in keep}
    if finished:
        last["age_s"] = round((now - datetime.fromisoformat(finished)).total_seconds(), 1)
    return last


def _waiting_events(config: SilverlineConfig, tenants: dict[str, dict[str, Any]]) -> dict[str, int]:
    """Events waiting in the retry table, held (unknown / suspended tenant), dropped and parked."""
    counts: dict[str, int] = {}
    for name, column, wanted in (
        ("retry", "retrying", None),
        ("held", "held", RELEASABLE),
        ("held", "dropped", (TENANT_OFFBOARDED,)),
        ("parked", "parked", None),
    ):
        per_tenant = _tenant_counts(config, name, wanted)
        counts[column] = sum(per_tenant.values())
        for tenant, n in per_tenant.items():
            tenants.setdefault(tenant, {})[column] = n
    return counts


def _tenant_counts(config: SilverlineConfig, table: str, reasons: tuple[str, ...] | None) -> Counter[str]:
    """Rows of an ops table per tenant (only rows with one of ``reasons``, when given)."""
    from jobs.lakeread import ops_location, read_iceberg

    columns = ("tenant", "reason") if reasons else ("tenant",)
    rows = read_iceberg(ops_location(config, table), config, columns)
    if rows is None:
        return Counter()
    return Counter(r["tenant"] for r in rows.to_pylist() if reasons is None or r.get("reason") in reasons)


def _lease(config: SilverlineConfig) -> dict[str, Any] | None:
    """Who holds the writer lease (None: nobody)."""
    from jobs.stream.lease import DEFAULT_TTL_SECONDS, WriterLease

    holder = WriterLease.for_config(config, role="status").holder()
    if holder is None:
        return None
    return {
        "owner": holder.owner,
        "role": holder.role,
        "host": holder.host,
        "pid": holder.pid,
        "renewed_s_ago": round(holder.age(), 1),
        "alive": holder.alive(DEFAULT_TTL_SECONDS),
    }


def problems(status: dict[str, Any]) -> list[str]:
    """What an operator should look at, one line each (empty: healthy)."""
    found = [
        f"{part}: {value['error']}"
        for part, value in status.items()
        if isinstance(value, dict) and "error" in value
    ]
    dlq = status.get("dlq")
    if isinstance(dlq, dict) and dlq.get("visible"):
        found.append(f"the dead-letter queue holds {dlq['visible']} messages (silverline dlq inspect)")
    last = status.get("last_batch")
    if isinstance(last, dict) and last.get("balanced") is False:
        found.append(f"batch {last['batch_id']} did not balance: its outcome counts do not add up (R7)")
    events = status.get("events") or {}
    if events.get("parked"):
        found.append(f"{events['parked']} events are parked (see the parked ops table)")
    lease = status.get("lease")
    if lease is None:
        found.append("no process holds the writer lease: the stream is not running")
    elif isinstance(lease, dict) and lease.get("alive") is False:
        found.append(f"the writer lease of {lease['owner']} expired {lease['renewed_s_ago']} s ago")
    return found


def render(status: dict[str, Any], console: Any) -> None:
    """Print the status for people: one line per part, then the lagging tenants and the problems.

    Args:
        status: Output of :func:`group_status`.
        console: A ``rich`` console.
    """
    from rich.markup import escape
    from rich.table import Table

    group = status["group"]
    lines: list[tuple[str, str]] = []
    lines.append(("queue", _queue_line(status.get("queue"))))
    lines.append(("dead-letter queue", _queue_line(status.get("dlq"))))
    bronze = status.get("bronze") or {}
    lines.append(
        (
            "bronze",
            _or_error(
                bronze,
                lambda b: f"{b['files_pending']:,} of {b['files_landed']:,} files not taken by the query yet",
            ),
        )
    )
    lines.append(("last batch", _batch_line(status.get("last_batch"))))
    events = status.get("events") or {}
    lines.append(
        ("waiting events", _or_error(events, lambda e: ", ".join(f"{k} {v:,}" for k, v in e.items())))
    )
    lines.append(("writer lease", _lease_line(status.get("lease"))))
    table = Table(
        title=f"silverline status: group {group['name']} (bucket {group['bucket']})",
        title_justify="left",
        show_header=False,
    )
    table.add_column("part")
    table.add_column("state")
    for part, text in lines:
        table.add_row(part, escape(text))
    console.print(table)
    lagging = sorted(
        ((t, v["lag_s"]) for t, v in status.get("tenants", {}).items() if v.get("lag_s") is not None),
        key=lambda item: -item[1],
    )[:TOP_LAGGING]
    if lagging:
        console.print(
            "tenants lagging most (last batch): "
            + ", ".join(f"{escape(t)} {lag:,.1f} s" for t, lag in lagging)
        )
    if status["problems"]:
        console.print("[bold red]problems:[/bold red]")
        for problem in status["problems"]:
            console.print(f"  - {escape(problem)}", highlight=False)
    else:
        console.print("[bold green]healthy[/bold green]")


def _or_error(part: Any, describe: Callable[[Any], str]) -> str:
    if isinstance(part, dict) and "error" in part:
        return f"unreadable: {part['error']}"
    return describe(part)


def _queue_line(queue: Any) -> str:
    if queue is None:
        return "not configured"

    def describe(q: dict[str, Any]) -> str:
        age = q.get("oldest_message_age_s")
        oldest = "age of the oldest unknown (no CloudWatch data)" if age is None else f"oldest {age:,.0f} s"
        return f"{q['visible']:,} waiting, {q['in_flight']:,} in flight, {oldest}"

    return _or_error(queue, describe)


def _batch_line(batch: Any) -> str:
    if batch is None:
        return "none yet"

    def describe(b: dict[str, Any]) -> str:
        outcomes = ", ".join(
            f"{b[k]:,} {k}"
            for k in ("applied", "duplicate", "stale", "quarantined", "parked", "rejected", "deferred")
            if b.get(k)
        )
        balance = "balanced" if b.get("balanced") else "NOT balanced"
        fresh = ""
        if b.get("freshness_p50_s") is not None:
            fresh = f"; freshness p50 {b['freshness_p50_s']:,.1f} s, p95 {b['freshness_p95_s']:,.1f} s"
        return (
            f"batch {b['batch_id']} finished {b.get('age_s', 0):,.0f} s ago: {b['records_in']:,} records "
            f"(+{b['retried_in']:,} retried) = {outcomes or 'nothing applied'} [{balance}]{fresh}"
        )

    return _or_error(batch, describe)


def _lease_line(lease: Any) -> str:
    if lease is None:
        return "free (no stream running)"
    return _or_error(
        lease,
        lambda h: (
            f"{h['role']} {h['owner']} on {h['host'] or '?'} (pid {h['pid']}), "
            f"renewed {h['renewed_s_ago']:,.0f} s ago" + ("" if h["alive"] else ", EXPIRED")
        ),
    )

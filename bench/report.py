"""Render bench/results/README.md and its plots from the benchmarks' JSON files.

    python bench/report.py

Only what the JSON files hold is shown, each section with the command that
produced it; a benchmark that has not been run is listed as such.
"""

from __future__ import annotations

import json
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any

Result = dict[str, Any]

TARGET_EVENTS_PER_S = 3500
TARGET_FRESHNESS_P95_S = 30
TARGET_FRESHNESS_RATE = 1000
TARGET_COMMIT_100_TABLES_S = 10
TARGET_REQUESTS_PER_EVENT = 0.25
TARGET_BRIDGE_MSGS_PER_S = 5000
TARGET_COMMIT_1000_TABLES_S = 10
TARGET_OVER_NAIVE = 2.3
TARGET_OVER_NAIVE_TENANTS = 4.0
TARGET_ONE_OVER_TWO_CORES = 1.6
TARGET_JUDGE_10M_OVER_EMPTY = 1.2


def load(results: Path, name: str) -> Result | None:
    """One benchmark's JSON, or None when it has not been run."""
    path = results / f"{name}.json"
    return json.loads(path.read_text()) if path.exists() else None


def table(header: list[str], rows: list[list[Any]]) -> str:
    """A markdown table."""
    lines = ["| " + " | ".join(header) + " |", "|" + "---|" * len(header)]
    lines += ["| " + " | ".join(str(cell) for cell in row) + " |" for row in rows]
    return "\n".join(lines)


def provenance(result: Result) -> str:
    """Which command produced a result, and when."""
    load_avg = (result.get("machine") or {}).get("load_average") or result.get("load_average_at_end")
    where = f", load average at the end {', '.join(f'{x:.1f}' for x in load_avg)}" if load_avg else ""
    return f"`{result['command']}` ({result['when']}{where})"


def verdict(ok: bool | None) -> str:
    """Met / not met / not measured."""
    return "not measured" if ok is None else ("met" if ok else "**not met**")


def targets(results: Path) -> str:
    """The issue's targets against the measured figures."""
    rows: list[list[Any]] = []
    e2e = load(results, "stream_e2e")
    sustained = e2e.get("sustained_events_per_s") if e2e else None
    rows.append([f">= {TARGET_EVENTS_PER_S:,} events/s sustained end to end", f"{sustained} events/s",
                 verdict(None if sustained is None else sustained >= TARGET_EVENTS_PER_S)])  # fmt: skip
    rate = load(results, "stream_e2e_rate")
    if rate:
        p95 = rate["freshness_s"]["p95"]
        at = rate["rate_events_per_s"]
        ok = p95 <= TARGET_FRESHNESS_P95_S if at >= TARGET_FRESHNESS_RATE else None
        rows.append([f"p95 freshness <= {TARGET_FRESHNESS_P95_S} s at {TARGET_FRESHNESS_RATE:,} events/s",
                     f"p95 {p95} s at {at:,} events/s", verdict(ok) if ok is not None
                     else f"measured at {at:,} events/s only"])  # fmt: skip
    many = load(results, "many_tables")
    hundred = next((r for r in many["results"] if r["tables"] == 100), None) if many else None
    commit = hundred["commit_seconds"] if hundred else None
    rows.append([f"a batch touching 100 tables commits in <= {TARGET_COMMIT_100_TABLES_S} s",
                 f"{commit} s" if commit is not None else "-",
                 verdict(None if commit is None else commit <= TARGET_COMMIT_100_TABLES_S)])  # fmt: skip
    thousand = next((r for r in many["results"] if r["tables"] == 1000), None) if many else None
    if thousand:
        rows.append([f"a batch touching 1,000 tables commits in <= {TARGET_COMMIT_1000_TABLES_S} s",
                     f"{thousand['commit_seconds']} s",
                     verdict(thousand["commit_seconds"] <= TARGET_COMMIT_1000_TABLES_S)])  # fmt: skip
    rows += naive_targets(results)
    judge = load(results, "judge_ledger")
    if judge and len(judge["ledgers"]) > 1:
        ratio = judge["ledgers"][-1]["ratio_to_first"]
        rows.append([f"judge against {judge['ledgers'][-1]['objects']:,} objects within "
                     f"{TARGET_JUDGE_10M_OVER_EMPTY}x of an empty ledger", f"{ratio:.2f}x",
                     verdict(ratio <= TARGET_JUDGE_10M_OVER_EMPTY)])  # fmt: skip
    bridge = load(results, "bridge_capacity")
    best = bridge_best(bridge) if bridge else None
    if best:
        rows.append([f"bridge >= {TARGET_BRIDGE_MSGS_PER_S:,} msgs/s on the synthetic endpoint",
                     f"{best['msgs_per_s']:,} msgs/s ({best['label']})",
                     verdict(best["msgs_per_s"] >= TARGET_BRIDGE_MSGS_PER_S)])  # fmt: skip
        rows.append([f"<= {TARGET_REQUESTS_PER_EVENT} SQS requests per event",
                     f"{best['requests_per_message']} per message",
                     verdict(best["requests_per_message"] <= TARGET_REQUESTS_PER_EVENT)])  # fmt: skip
    return table(["target", "measured", ""], rows)


def naive_targets(results: Path) -> list[list[Any]]:
    """Target rows of benchmark (k): silverline against the naive job, and one core against two."""
    rows: list[list[Any]] = []
    first = load(results, "vs_naive")
    if first and "local[2]" in first["by_master"]:
        ratio = first["by_master"]["local[2]"]["naive_over_silverline"]
        rows.append([f"{first['files']:,} objects / {first['tenants']} tenants in one run: "
                     f">= {TARGET_OVER_NAIVE}x faster than the naive job", f"{ratio}x",
                     verdict(ratio >= TARGET_OVER_NAIVE)])  # fmt: skip
    if first and "silverline_local1_over_local2" in first:
        ratio = first["silverline_local1_over_local2"]
        rows.append([f"the same run, local[1] time / local[2] time >= {TARGET_ONE_OVER_TWO_CORES}x",
                     f"{ratio}x", verdict(ratio >= TARGET_ONE_OVER_TWO_CORES)])  # fmt: skip
    tenants = load(results, "vs_naive_tenants")
    if tenants:
        ratio = tenants["by_master"]["local[2]"]["naive_over_silverline"]
        per_tenant = tenants["files"] // tenants["tenants"]
        rows.append([f"{tenants['tenants']} tenants x {per_tenant} objects in one run: "
                     f">= {TARGET_OVER_NAIVE_TENANTS}x faster than the naive job", f"{ratio}x",
                     verdict(ratio >= TARGET_OVER_NAIVE_TENANTS)])  # fmt: skip
    return rows


def section_naive(results: Path, plots: list[str]) -> str:
    """(k) silverline against a naive Spark job over the same objects, whole processes."""
    out = ["## (k) Against a naive Spark job, whole runs"]
    found = [r for r in (load(results, "vs_naive"), load(results, "vs_naive_tenants")) if r]
    if not found:
        return out[0] + "\n\nNot run yet."
    out.append(
        "The same objects (50-row orders CSV files, every notification already in bronze), two whole "
        "processes timed with their JVM start-up, one after the other on a fresh lake each run: "
        "`silverline stream --no-bridge --trigger available-now` (dedupe, judge, reads and checks in "
        "tasks, great-expectations, one commit per table, the ledger) and a naive job (Spark's CSV "
        "reader over each tenant's files, one Iceberg table written per tenant; no dedupe, no checks, "
        "no ledger). Both write every row."
    )
    for result in found:
        rows = []
        for master, run in result["by_master"].items():
            phases = run["runs"][0]["phase_seconds"]
            top = ", ".join(f"{k} {v}" for k, v in sorted(phases.items(), key=lambda kv: -kv[1])[:4])
            ratio = f"{run['naive_over_silverline']}x"
            rows.append([master, run["silverline_wall_s"], run["naive_wall_s"], ratio,
                         run["events_per_s_in_batches"], top])  # fmt: skip
        out.append(provenance(result))
        out.append(f"{result['files']:,} objects over {result['tenants']} tenants:")
        header = ["master", "silverline s", "naive s", "naive / silverline", "events/s in batches",
                  "largest batch phases (s)"]  # fmt: skip
        out.append(table(header, rows))
        if "silverline_local1_over_local2" in result:
            out.append(f"`local[1]` time / `local[2]` time: silverline "
                       f"{result['silverline_local1_over_local2']}x, "
                       f"the naive job {result['naive_local1_over_local2']}x.")  # fmt: skip
    return "\n\n".join(out)


def bridge_best(result: Result) -> dict[str, Any] | None:
    """The synthetic endpoint's best run: label, msgs/s, requests per message."""
    runs = [r for r in result.get("runs", []) if r.get("endpoint") == "synthetic"]
    if not runs:
        return None
    best = max(runs, key=lambda r: r["msgs_per_s"])
    return {"label": f"{best.get('transport')} client, {best.get('receivers')} receivers", **best}


def section_e2e(results: Path, plots: list[str]) -> str:
    """(a) end to end."""
    out = ["## (a) End to end: bronze -> committed silver"]
    e2e = load(results, "stream_e2e")
    if not e2e:
        return out[0] + "\n\nNot run yet."
    out.append(provenance(e2e))
    keys = ["files", "tenants", "events_per_batch", "batches", "applied_events", "rows_written",
            "wall_seconds_incl_jvm_start", "events_per_s_wall", "events_per_s_in_batches",
            "sustained_events_per_s", "sustained_files_per_s", "all_batches_balanced"]  # fmt: skip
    out.append(table(["figure", "value"], [[k, e2e.get(k)] for k in keys]))
    phases = e2e.get("phase_seconds_after_first_batch") or e2e["phase_seconds"]
    total = sum(phases.values()) or 1.0
    out.append("Where the batch time goes (batches after the first, seconds summed over batches):")
    out.append(table(["phase", "seconds", "share"],
                     [[k, v, f"{v / total:.0%}"] for k, v in phases.items()]))  # fmt: skip
    plots.append(plot_bars("stream_e2e_phases.png", "batch time by phase (s)", phases, results))
    out.append("![phases](stream_e2e_phases.png)")
    big = load(results, "stream_e2e_big_batches")
    if big:
        out.append("### The same backlog in bigger micro-batches")
        out.append(provenance(big))
        out.append(table(["events per batch", "batches", "events/s in batches", "events/s wall"],
                         [[big["events_per_batch"], big["batches"], big["events_per_s_in_batches"],
                           big["events_per_s_wall"]]]))  # fmt: skip
        out.append(table(["phase", "seconds"], [[k, v] for k, v in big["phase_seconds"].items()]))
    rate = load(results, "stream_e2e_rate")
    if rate:
        out.append("### Freshness at a steady rate")
        out.append(provenance(rate))
        fresh = rate["freshness_s"]
        out.append(table(["rate (events/s)", "fed", "applied", "batches", "p50 s", "p95 s", "max s"],
                         [[rate["rate_events_per_s"], rate["events_fed"], rate["events_applied"],
                           rate["batches"], fresh["p50"], fresh["p95"], fresh["max"]]]))  # fmt: skip
    soak = load(results, "stream_e2e_soak")
    if soak:
        out.append("### Soak: memory over 10 minutes at a steady rate")
        out.append(provenance(soak))
        p95 = soak["freshness_s"]["p95"]
        out.append(f"{soak['events_applied']} of {soak['events_fed']} events applied at "
                   f"{soak['rate_events_per_s']} events/s; freshness p95 {p95} s.")  # fmt: skip
    for name, result in (("steady rate", rate), ("soak", soak)):
        memory = (result or {}).get("rss") or {}
        kinds = [k for k in memory if isinstance(memory[k], dict)]
        if kinds:
            out.append(f"Resident memory during the {name} run (MB):")
            fields = ("first_minute_mb", "second_minute_mb", "last_minute_mb", "peak_mb")
            rows = [[k, *(memory[k].get(f, "-") for f in fields)] for k in kinds]
            out.append(table(["process", "first minute", "second minute", "last minute", "peak"], rows))
    return "\n\n".join(out)


def section_many(results: Path, plots: list[str]) -> str:
    """(c) many tenant tables."""
    out = ["## (c) Many tenants: batch time against tables touched"]
    many = load(results, "many_tables")
    if not many:
        return out[0] + "\n\nNot run yet."
    out.append(provenance(many))
    rows = [[r["tables"], r["files_per_table"], r["batch_seconds"], r["commit_seconds"],
             r["commit_seconds_per_table"], r["first_batch_seconds_creating_tables"]]
            for r in many["results"]]  # fmt: skip
    out.append(table(["tables", "files/table", "batch s", "commit s", "commit s/table",
                      "first batch s (creates tables)"], rows))  # fmt: skip
    series = {"batch s": [(r["tables"], r["batch_seconds"]) for r in many["results"]],
              "commit s": [(r["tables"], r["commit_seconds"]) for r in many["results"]]}  # fmt: skip
    threads = load(results, "many_tables_8_threads")
    if threads:
        out.append("With 8 commit threads instead of 4 (" + provenance(threads) + "):")
        fields = ("tables", "batch_seconds", "commit_seconds", "commit_seconds_per_table")
        rows = [[r[f] for f in fields] for r in threads["results"]]
        out.append(table(["tables", "batch s", "commit s", "commit s/table"], rows))
    plots.append(plot_lines("many_tables.png", "tables touched", "seconds", series, results, log_x=True))
    out.append("![many tables](many_tables.png)")
    return "\n\n".join(out)


def section_bridge(results: Path, plots: list[str]) -> str:
    """(b) the SQS bridge."""
    out = ["## (b) SQS bridge capacity"]
    bridge = load(results, "bridge_capacity")
    if not bridge:
        return out[0] + "\n\nNot run yet."
    out.append(provenance(bridge))
    rows = [
        [r["endpoint"], r.get("transport", ""), r.get("receivers"), r.get("messages"), r.get("msgs_per_s"),
         r.get("requests_per_message", r.get("bridge_requests_per_message")),
         all(v for v in (r.get("conservation") or {}).values() if isinstance(v, bool))]
        for r in bridge.get("runs", [])
    ]  # fmt: skip
    out.append(table(["endpoint", "SQS client", "receivers", "messages", "msgs/s", "SQS requests/msg",
                      "conserved"], rows))  # fmt: skip
    latency = load(results, "bridge_latency")
    if latency:
        out.append("### With 10 ms added to every request (closer to a real SQS round trip)")
        out.append(provenance(latency))
        rows = [[r.get("receivers"), r.get("messages"), r.get("msgs_per_s"), r.get("requests_per_message")]
                for r in latency.get("runs", []) if r["endpoint"] == "synthetic"]  # fmt: skip
        out.append(table(["receivers", "messages", "msgs/s", "SQS requests/msg"], rows))
    return "\n\n".join(out)


def section_sizes(results: Path, plots: list[str]) -> str:
    """(d) file sizes."""
    out = ["## (d) File sizes from 5 KB to 500 MB"]
    sizes = load(results, "file_sizes")
    if not sizes:
        return out[0] + "\n\nNot run yet."
    out.append(provenance(sizes))
    rows = []
    reader_series, spark_series = [], []
    for label, r in sizes["results"].items():
        reader, spark = r.get("objectreader") or {}, r.get("spark") or {}
        mb = r["bytes"] / 1e6
        rss_mb = round(reader.get("peak_rss_growth_bytes", 0) / 1e6, 1)
        rows.append([label, r["rows"], reader.get("best_s"), reader.get("first_read_s"),
                     reader.get("mb_per_s"), rss_mb, spark.get("best_s"), spark.get("mb_per_s"),
                     reader.get("error") or spark.get("error") or ""])  # fmt: skip
        if reader.get("mb_per_s"):
            reader_series.append((mb, reader["mb_per_s"]))
        if spark.get("mb_per_s"):
            spark_series.append((mb, spark["mb_per_s"]))
    out.append(table(["size", "rows", "ObjectReader s (best)", "first read s", "MB/s", "peak RSS growth MB",
                      "Spark CSV s", "Spark MB/s", "error"], rows))  # fmt: skip
    series = {"ObjectReader": reader_series, "Spark CSV reader": spark_series}
    plots.append(plot_lines("file_sizes.png", "file size (MB)", "MB/s", series, results, log_x=True))
    out.append("![file sizes](file_sizes.png)")
    blocks = load(results, "file_sizes_blocks")
    if blocks:
        out.append("### A block at a time, as the stream's tasks read (`read_pieces`)")
        out.append(provenance(blocks))
        rows = []
        for label, r in blocks["results"].items():
            reader = r.get("objectreader") or {}
            rss_mb = round(reader.get("peak_rss_growth_bytes", 0) / 1e6, 1)
            rows.append([label, r["rows"], reader.get("blocks"), reader.get("best_s"), reader.get("mb_per_s"),
                         rss_mb, reader.get("error") or ""])  # fmt: skip
        out.append(table(["size", "rows", "blocks", "s", "MB/s", "peak RSS growth MB", "error"], rows))
    return "\n\n".join(out)


def section_baseline(results: Path, plots: list[str]) -> str:
    """(e) Spark's reader against silverline's, same run."""
    out = ["## (e) Spark's file reader against silverline's, side by side"]
    base = load(results, "reader_baseline")
    if not base:
        return out[0] + "\n\nNot run yet."
    out.append(provenance(base))
    rows = [[name, r.get("files_per_s_best"), r.get("files_per_s_median"), r.get("files_per_cpu_s_best")]
            for name, r in base["results"].items()]  # fmt: skip
    out.append(table(["reader", "files/s best", "files/s median", "files per CPU-second"], rows))
    ratios = [[name, r["best"], r["median"]] for name, r in base["ratios"].items()]
    out.append("Ratios measured in the same run:")
    out.append(table(["ratio", "best", "median"], ratios))
    return "\n\n".join(out)


def section_parse(results: Path, plots: list[str]) -> str:
    """(f) Parsing a micro-batch of bronze: Spark expressions against the parser in tasks."""
    out = ["## (f) Parsing bronze: the former Spark-expression parser against the parser in tasks"]
    parse = load(results, "parse_bronze")
    if not parse:
        return out[0] + "\n\nNot run yet."
    out.append(provenance(parse))
    out.append(
        f"{parse['messages']:,} messages ({parse['records_before_dedupe']:,} S3 records, one in ten "
        "delivered twice): read bronze, parse, dedupe key, drop duplicates, every column computed. "
        "Seconds per run after one warm-up run, both parsers alternating in one session."
    )
    rows = []
    for master, r in parse["by_master"].items():
        for name in ("spark_expressions", "python_in_tasks"):
            rows.append([master, name, r[name]["first_s"], r[name]["median_s"], r[name]["best_s"]])
        rows.append([master, "**speed-up (median)**", "", f"**{r['speedup_median']}x**", ""])
    out.append(table(["master", "parser", "first run s", "median s", "best s"], rows))
    masters = parse["by_master"]
    if "local[1]" in masters and "local[2]" in masters:
        scale = (
            masters["local[1]"]["python_in_tasks"]["median_s"]
            / masters["local[2]"]["python_in_tasks"]["median_s"]
        )
        out.append(
            f"The parser in tasks, `local[1]` time / `local[2]` time: {scale:.2f}x (R12: work in tasks)."
        )
    return "\n\n".join(out)


def section_judge(results: Path, plots: list[str]) -> str:
    """(g) The judge against a growing ledger."""
    out = ["## (g) The judge against a growing ledger"]
    judge = load(results, "judge_ledger")
    if not judge:
        return out[0] + "\n\nNot run yet."
    out.append(provenance(judge))
    out.append(
        f"One batch of {judge['events']:,} events (half of them for objects the ledger knows), judged "
        f"against ledgers of several sizes on `{judge['master']}`, alternating, after one warm-up run "
        "each. Target (issue #22): within 1.2x of the empty ledger at 10 million objects. Then the "
        "ledger update of the batch's known objects, three ways side by side, alternating: by "
        "position (the job's), the MERGE that only matches (its fallback) and the upsert MERGE "
        "(its intent recovery's)."
    )
    rows = [
        [f"{x['objects']:,}", x["files_and_bytes"][0], f"{x['files_and_bytes'][1] / 1e6:.1f}",
         x["judge_median_seconds"], f"{x['ratio_to_first']}x", x.get("update_known_objects", "-"),
         x.get("update_position_median_seconds", "-"), x.get("update_matching_median_seconds", "-"),
         x.get("update_upsert_median_seconds", "-")]
        for x in judge["ledgers"]
    ]  # fmt: skip
    headers = ["ledger objects", "data files (at the end)", "MB", "judge median s", "vs first",
               "objects updated", "by position s", "matching MERGE s", "upsert MERGE s"]  # fmt: skip
    out.append(table(headers, rows))
    return "\n\n".join(out)


def section_replace(results: Path, plots: list[str]) -> str:
    """(j) Replacing one object against the table's size."""
    out = ["## (j) Replacing one object's rows, against the table's size"]
    cost = load(results, "replace_cost")
    if not cost:
        return out[0] + "\n\nNot run yet."
    out.append(provenance(cost))
    out.append(
        "One table per size, one object per data file; one object replaced again and again, the "
        "stream's MERGE (`pruned`: the replaced keys in its ON clause, exact `_source_key` bounds) "
        f"alternating with the same MERGE without the keys (`plain`), on `{cost['master']}`."
    )
    rows = [
        [x["files"], x["data_files"], f"{x['rows']:,}", x["pruned_median"], x["plain_median"],
         f"{x['plain_over_pruned']}x", x.get("metadata_median")]
        for x in cost["results"]
    ]  # fmt: skip
    out.append(table(["objects", "data files at the end", "rows", "pruned median s", "plain median s",
                      "plain / pruned", "metadata-only median s"], rows))  # fmt: skip
    return "\n\n".join(out)


def section_appends(results: Path, plots: list[str]) -> str:
    """(h) Plain appends: Spark's writer against the metadata-only FastAppend."""
    out = ["## (h) Plain appends: Spark's writer against a metadata-only FastAppend"]
    paths = load(results, "append_paths")
    if not paths:
        return out[0] + "\n\nNot run yet."
    out.append(provenance(paths))
    out.append(
        f"One object's {paths['rows_per_table']} rows appended to each of {paths['tables']} existing tenant "
        f"tables per round, {paths['threads']} commit threads, `{paths['master']}`, the two paths "
        "alternating in one session after one warm-up round each. `spark`: staged Parquet, Spark's "
        "Iceberg writer. `fast`: data files written from Arrow, one FastAppend per table (issue #22, item 2)."
    )
    rows = [
        [name, x["round_median_seconds"], x["per_table_seconds"], x["warmup_seconds"]]
        for name, x in paths["paths"].items()
    ]
    out.append(table(["path", "round median s", "per table s", "warm-up round s"], rows))
    out.append(f"Spark's writer / FastAppend: {paths['spark_over_fast']}x.")
    return "\n\n".join(out)


def plot_bars(name: str, title: str, values: dict[str, float], results: Path) -> str:
    """A bar chart; returns the file name."""

    def draw(ax: Any) -> None:
        ax.bar(list(values), list(values.values()))
        ax.set_title(title)

    return _plot(name, results, draw, size=(6, 3))


def plot_lines(
    name: str,
    x_label: str,
    y_label: str,
    series: dict[str, list[tuple[float, float]]],
    results: Path,
    *,
    log_x: bool = False,
) -> str:
    """A line chart of (x, y) series; returns the file name."""

    def draw(ax: Any) -> None:
        for label, points in series.items():
            if points:
                ax.plot([p[0] for p in points], [p[1] for p in points], marker="o", label=label)
        if log_x:
            ax.set_xscale("log")
        ax.set_xlabel(x_label)
        ax.set_ylabel(y_label)
        ax.legend()

    return _plot(name, results, draw, size=(6, 3.5))


def _plot(name: str, results: Path, draw: Callable[[Any], None], *, size: tuple[float, float]) -> str:
    """One figure drawn by ``draw(axes)``, saved as ``results/name``; returns the file name."""
    import matplotlib

    matplotlib.use("Agg")
    import matplotlib.pyplot as plt

    fig, ax = plt.subplots(figsize=size)
    draw(ax)
    fig.tight_layout()
    fig.savefig(results / name, dpi=90)
    plt.close(fig)
    return name


def section_cores(results: Path, plots: list[str]) -> str:
    """(i) The same backlog on one core and on two: the per-object work runs in Spark tasks."""
    out = ["## (i) One core against two: the per-object work in Spark tasks"]
    cores = load(results, "stream_e2e_cores")
    if not cores:
        return out[0] + "\n\nNot run yet."
    out.append(provenance(cores))
    out.append(
        "The same backlog drained by `silverline stream --no-bridge --trigger available-now`, once per "
        "Spark master, one after the other. `read + validate` is the batches' time in the stage whose "
        "tasks read, check and write the objects."
    )
    rows = []
    for master, run in cores["runs"].items():
        phases = run["phase_seconds"]
        read = round(phases.get("read", 0) + phases.get("validate", 0), 2)
        rows.append([master, run["applied_events"], run["batches"], run["batch_seconds"],
                     run["events_per_s_in_batches"], read, run["wall_seconds_incl_jvm_start"]])  # fmt: skip
    header = ["master", "events", "batches", "batch s", "events/s in batches", "read + validate s", "wall s"]
    out.append(table(header, rows))
    ratio = next(v for k, v in cores.items() if k.startswith("ratio_"))
    out.append(
        f"Two cores against one: {ratio['events_per_s_in_batches']}x the events/s in batches, "
        f"{ratio['read_and_validate_seconds']}x faster read + validate."
    )
    return "\n\n".join(out)


SECTIONS: tuple[Callable[[Path, list[str]], str], ...] = (
    section_e2e,
    section_bridge,
    section_many,
    section_sizes,
    section_baseline,
    section_parse,
    section_judge,
    section_replace,
    section_appends,
    section_cores,
    section_naive,
)


def render(results: Path) -> Path:
    """Write ``results/README.md`` (and the plots); returns its path."""
    plots: list[str] = []
    parts = [
        "# Benchmark results",
        "Rendered by `python bench/report.py` from the JSON files next to this one; "
        "`python bench/run_all.py` runs every benchmark and renders it. Local mode, "
        "`local[2]`; each section names the command that produced it.",
        "## Targets",
        targets(results),
        *(section(results, plots) for section in SECTIONS),
    ]
    path = results / "README.md"
    path.write_text("\n\n".join(parts) + "\n")
    return path


if __name__ == "__main__":
    print(render(Path(__file__).resolve().parent / "results"))
    sys.exit(0)

"""``report.md`` and ``report.html``: what ran, where, on which system, the key numbers, the plots.

Both files are rendered from one document model (``document.py``), so they never disagree; the HTML is
self-contained (inline CSS) and refers to the plots and exports by paths relative to the run directory, so
the directory can be copied or archived whole and still read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Mapping, Sequence
from datetime import datetime
from pathlib import Path
from typing import Any

from g5kdeploy.collect.data import BenchResult, Spread, group, json_object, load_results, spread
from g5kdeploy.collect.document import (
    Bullets,
    Document,
    Facts,
    Images,
    Links,
    Paragraph,
    Section,
    Table,
    to_html,
    to_markdown,
)
from g5kdeploy.collect.files import deployment_ids, job_ids, read_json, read_run
from g5kdeploy.results import atomic_write_text

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
_TIME = "%Y-%m-%dT%H:%M:%SZ"
# Typographic signs written as escapes, so the source stays ASCII (ruff RUF001).
DASH, NONE, TIMES = "\u2013", "\u2013", "\u00d7"


def write_report(
    run_dir: Path,
    *,
    plots: Sequence[Path],
    exports: Mapping[str, Path],
    node_facts: Mapping[str, dict],
    extra: Mapping[str, Any] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``run_dir`` (atomically); returns their paths.

    ``node_facts`` (node → ``kernel``, ``system``, ``config_sha256``, ...) take precedence over the facts the
    deploy phase recorded in ``run.json``, which fill in what they lack.
    """
    document = build_report(run_dir, plots=plots, exports=exports, node_facts=node_facts, extra=extra)
    markdown, page = run_dir / REPORT_MD, run_dir / REPORT_HTML
    atomic_write_text(markdown, to_markdown(document))
    atomic_write_text(page, to_html(document))
    return markdown, page


def build_report(
    run_dir: Path,
    *,
    plots: Sequence[Path],
    exports: Mapping[str, Path],
    node_facts: Mapping[str, dict],
    extra: Mapping[str, Any] | None = None,
) -> Document:
    run = read_run(run_dir)
    problems: list[str] = []
    results = load_results(run_dir, problems)
    sections = [
        *_warnings(run),
        _what(run, run_dir),
        _where(run),
        _systems(run, node_facts, results),
        _numbers(results),
        _plots(plots, run_dir),
        _exports(exports, run_dir, run),
        _phases(run),
        _skipped(run, run_dir, results, problems),
    ]
    if extra:
        sections.append(Section("Extra", [Facts([(str(key), _value(value)) for key, value in extra.items()])]))
    return Document(f"Run {run.get('run_id') or run_dir.name}", sections)


def fmt_ns(value: float) -> str:
    """Latency in whole nanoseconds: the histogram's resolution is a few percent, decimals would be noise."""
    return f"{value:.0f}"


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def _spread_text(point: Spread | None, fmt: Any) -> str:
    if point is None:
        return NONE
    if point.samples == 1 or point.low == point.high:
        return fmt(point.mean)
    return f"{fmt(point.mean)} ({fmt(point.low)}{DASH}{fmt(point.high)})"


def _what(run: dict[str, Any], run_dir: Path) -> Section:
    playbook = run.get("playbook") or {}
    bench = playbook.get("bench") or {}
    items = [
        ("run", str(run.get("run_id") or run_dir.name)),
        ("playbook", f"{playbook.get('name', '?')} ({run.get('playbook_path', '?')})"),
        ("created", str(run.get("created_at", "?"))),
        ("released", str(run.get("released_at") or "not yet")),
    ]
    if bench:
        items += [
            ("benchmark", f"statx-bench on {', '.join(map(str, bench.get('paths') or []))}"),
            ("sweep", f"threads {_list(bench.get('threads'))} {TIMES} eBPF {_list(bench.get('ebpf'))} {TIMES} "
                      f"{bench.get('repetitions')} repetitions, {bench.get('iterations')} timed calls per thread "
                      f"after {bench.get('warmup')} warm-up calls"),
            ("bench roles", ", ".join(bench.get("roles") or []) or "every role"),
        ]  # fmt: skip
    return Section("What ran", [Facts(items)])


def _where(run: dict[str, Any]) -> Section:
    jobs = job_ids(run)
    sites = sorted({str(job["site"]) for job in jobs if job["site"]})
    blocks: list[Any] = [Facts([
        ("testbed", str(run.get("testbed", "?"))),
        ("API", str(run.get("api_url", "?"))),
        ("sites", ", ".join(sites) or "none"),
        ("OAR jobs", ", ".join(f"{job['site']}/{job['uid'] if job['uid'] is not None else '?'}" for job in jobs)
         or "none"),
    ])]  # fmt: skip
    raw_jobs = [job for job in run.get("jobs") or [] if isinstance(job, dict)]
    if raw_jobs:
        blocks.append(Table(
            ["site", "job id", "state", "nodes", "resources"],
            [[str(job.get("site")), str(job.get("uid")), str(job.get("state")), str(len(job.get("nodes") or [])),
              str(job.get("resources", ""))] for job in raw_jobs],
            numeric=frozenset({1, 3}),
        ))  # fmt: skip
    roles = run.get("roles") or {}
    if roles:
        blocks.append(Table(["role", "nodes"], [[role, ", ".join(nodes)] for role, nodes in sorted(roles.items())]))
    return Section("Where", blocks)


def _systems(run: dict[str, Any], node_facts: Mapping[str, dict], results: list[BenchResult]) -> Section:
    deploy = run.get("deploy") or {}
    recorded = deploy.get("nodes") or {}
    roles_of: dict[str, list[str]] = {}
    for role, nodes in (run.get("roles") or {}).items():
        for node in nodes:
            roles_of.setdefault(node, []).append(role)
    nodes = sorted(set(roles_of) | set(node_facts) | set(recorded) | {result.node for result in results})
    blocks: list[Any] = []
    if deploy:
        blocks.append(Facts([
            ("deploy method", str(deploy.get("method", "?"))),
            ("boot marker", str(deploy.get("marker", "?"))),
            ("deployments", ", ".join(deployment_ids(run)) or "none recorded"),
        ]))  # fmt: skip
    else:
        blocks.append(Paragraph("No deploy phase recorded: the nodes ran the testbed's own system."))
    rows = []
    for node in nodes:
        entry = json_object(recorded.get(node))
        facts = {**(entry.get("facts") or {}), **(node_facts.get(node) or {})}
        rows.append([node, ", ".join(roles_of.get(node, [])), str(facts.get("kernel") or "?"),
                     str(facts.get("system") or "?"), str(facts.get("config_sha256") or "?"),
                     str(entry.get("state") or NONE)])  # fmt: skip
    if rows:
        blocks.append(Table(["node", "roles", "kernel", "system (closure)", "config sha256", "deploy"], rows))
    return Section("Systems", blocks)


def _numbers(results: list[BenchResult]) -> Section:
    if not results:
        return Section("Key numbers", [Paragraph("No finished bench results.")])
    rows = []
    for (threads, ebpf), members in group(results, "threads", "ebpf").items():
        errors = [result.errors_total for result in members if result.errors_total is not None]
        rows.append([
            str(threads), ebpf, str(len({result.repetition for result in members})),
            str(len({result.node for result in members})),
            _spread_text(spread(result.percentile("p50") for result in members), fmt_ns),
            _spread_text(spread(result.percentile("p99") for result in members), fmt_ns),
            _spread_text(spread(result.calls_per_s for result in members), fmt_rate),
            str(sum(errors)) if errors else NONE,
        ])  # fmt: skip
    table = Table(["threads", "eBPF", "repetitions", "nodes", "p50 ns", "p99 ns", "calls/s per node", "errors"],
                  rows, numeric=frozenset({0, 2, 3, 4, 5, 6, 7}))  # fmt: skip
    note = Paragraph("Per (threads, eBPF state): the mean over every node and repetition, (min-max) when they differ. "
                     "Errors are failed statx calls, summed.")  # fmt: skip
    return Section("Key numbers", [note, table])


def _plots(plots: Sequence[Path], run_dir: Path) -> Section:
    if not plots:
        return Section("Plots", [Paragraph("No plots.")])
    return Section("Plots", [Images([(path.stem, _relative(path, run_dir)) for path in plots])])


def _warnings(run: dict[str, Any]) -> list[Section]:
    """What the collect phase found wrong with the data, first, where nobody can miss it."""
    collected = json_object(run.get("collected"))
    warnings = [str(item) for item in collected.get("warnings") or []]
    return [Section("Warnings", [Bullets(warnings)])] if warnings else []


def _exports(exports: Mapping[str, Path], run_dir: Path, run: dict[str, Any]) -> Section:
    if not exports:
        return Section("Exports", [Paragraph("None.")])
    described = json_object(json_object(run.get("collected")).get("exports"))
    items = []
    for name, path in exports.items():
        entry = json_object(described.get(name))
        if not path.is_file():
            note = "(missing)"
        elif entry.get("empty"):
            note = f"(EMPTY, {entry['empty']})"
        elif "rows" in entry:
            note = f"({entry['rows']} rows, {entry.get('series', '?')} series, {_size(path.stat().st_size)})"
        else:
            note = f"({_size(path.stat().st_size)})"
        items.append((name, _relative(path, run_dir), note))
    return Section("Exports", [Links(items)])


def _phases(run: dict[str, Any]) -> Section:
    phases = run.get("phases") or {}
    if not phases:
        return Section("Phases", [Paragraph("No phase recorded.")])
    rows = []
    for name, phase in phases.items():
        phase = phase if isinstance(phase, dict) else {}
        started, finished = phase.get("started_at"), phase.get("finished_at")
        seconds = _seconds(started, finished)
        rows.append([name, str(phase.get("state", "?")), str(started or "?"), str(finished or NONE),
                     NONE if seconds is None else f"{seconds:.0f}", str(phase.get("error") or "")])  # fmt: skip
    return Section("Phases", [Table(["phase", "state", "started", "finished", "seconds", "error"], rows,
                                    numeric=frozenset({4}))])  # fmt: skip


def _skipped(run: dict[str, Any], run_dir: Path, results: list[BenchResult], problems: list[str]) -> Section:
    """What the sweep did not measure and why: ``bench/sweep.json`` notes, then pairs missing without a note."""
    sweep = read_json(run_dir / "bench" / "sweep.json") or {}
    by_reason: dict[tuple[str, str], list[str]] = {}
    noted: set[tuple[str, str]] = set()
    for key, nodes in sorted((sweep.get("pairs") or {}).items()):
        for node, note in sorted((nodes or {}).items()):
            note = note if isinstance(note, dict) else {}
            noted.add((key, node))
            by_reason.setdefault((str(note.get("state", "?")), str(note.get("reason", "?"))), []).append(
                f"{key} on {node}"
            )
    items = [f"{state}: {reason} — {len(pairs)} pair{'s' if len(pairs) != 1 else ''}: {_few(pairs)}"
             for (state, reason), pairs in sorted(by_reason.items())]  # fmt: skip
    done = {(result.key, result.node) for result in results}
    unexplained = [f"{key} on {node}" for key, node in _planned(run) if (key, node) not in done | noted]
    if unexplained:
        items.append(f"no result and no note (sweep not finished?) — {len(unexplained)} pairs: {_few(unexplained)}")
    items += problems
    return Section("Skipped or missing", [Bullets(items)] if items else [Paragraph("Nothing: every pair ran.")])


def _planned(run: dict[str, Any]) -> list[tuple[str, str]]:
    playbook = run.get("playbook") or {}
    bench = playbook.get("bench") or {}
    if not bench:
        return []
    roles = run.get("roles") or {}
    nodes = sorted({node for role in bench.get("roles") or list(roles) for node in roles.get(role, [])})
    return [
        (f"threads-{threads}_ebpf-{ebpf}_rep-{repetition}", node)
        for repetition in range(1, int(bench.get("repetitions") or 1) + 1)
        for ebpf in bench.get("ebpf") or []
        for threads in bench.get("threads") or []
        for node in nodes
    ]


def _list(values: Any) -> str:
    return ", ".join(map(str, values)) if isinstance(values, list) else str(values)


def _few(items: list[str], limit: int = 6) -> str:
    shown = ", ".join(items[:limit])
    return shown + (f", … and {len(items) - limit} more" if len(items) > limit else "")


def _seconds(started: Any, finished: Any) -> float | None:
    try:
        return (datetime.strptime(finished, _TIME) - datetime.strptime(started, _TIME)).total_seconds()
    except (TypeError, ValueError):
        return None


def _relative(path: Path, run_dir: Path) -> str:
    return Path(os.path.relpath(path.absolute(), run_dir.absolute())).as_posix()


def _size(size: int) -> str:
    for unit in ("B", "KiB", "MiB"):
        if size < 1024:
            return f"{size:.0f} {unit}"
        size /= 1024  # type: ignore[assignment]
    return f"{size:.1f} GiB"


def _value(value: Any) -> str:
    return value if isinstance(value, str) else json.dumps(value, sort_keys=True, default=str)

"""``report.md`` and ``report.html``: what ran, where, on which system, the workload's results per combination,
the plots; for statx-bench results, its view too: the key numbers, eBPF on against off, the probe's overhead
and the proof that the override happened.

Both files are rendered from one document model (``document.py``), so they never disagree; the HTML is
self-contained (inline CSS) and refers to the plots and exports by paths relative to the run directory, so
the directory can be copied or archived whole and still read.
"""

from __future__ import annotations

import json
import os
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import datetime
from pathlib import Path
from typing import Any

from g5kdeploy.collect.data import (
    FAKE_STATX,
    BenchResult,
    CounterTotals,
    Spread,
    StatxAnswer,
    counter_totals,
    group,
    json_object,
    load_results,
    metric_names,
    parameter_names,
    spread,
)
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
from g5kdeploy.collect.files import read_json
from g5kdeploy.collect.sbom import read_sboms
from g5kdeploy.files import atomic_write_text
from g5kdeploy.payload import STATX_TARGET
from g5kdeploy.playbook import EBPF_PARAMETER
from g5kdeploy.results import RunRecord, read_record

REPORT_MD = "report.md"
REPORT_HTML = "report.html"
_TIME = "%Y-%m-%dT%H:%M:%SZ"
# Typographic signs written as escapes, so the source stays ASCII (ruff RUF001).
DASH, NONE, TIMES, NOT_EQUAL = "\u2013", "\u2013", "\u00d7", "\u2260"
#: The collect phase's exports (``exports/<name>.csv``) of the eBPF program's counter and histogram.
OVERRIDE_EXPORT, LATENCY_EXPORT = "statx_override", "statx_latency"
#: Outcomes of the override counter that mean the program saw the target but could not answer for it.
FAILED_OUTCOMES = ("write_user_failed", "path_read_failed")
PASS, FAIL, UNMEASURED = "PASS", "FAIL", "not measured"
ALL_PATHS = "all paths"


def write_report(
    run_dir: Path,
    *,
    plots: Sequence[Path],
    exports: Mapping[str, Path],
    node_facts: Mapping[str, dict],
    extra: Mapping[str, Any] | None = None,
    results: list[BenchResult] | None = None,
    problems: list[str] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.md`` and ``report.html`` into ``run_dir`` (atomically); returns their paths.

    ``node_facts`` (node → ``kernel``, ``system``, ``config_sha256``, ...) take precedence over the facts the
    deploy phase recorded in ``run.json``, which fill in what they lack.
    """
    document = build_report(
        run_dir, plots=plots, exports=exports, node_facts=node_facts, extra=extra, results=results, problems=problems
    )
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
    results: list[BenchResult] | None = None,
    problems: list[str] | None = None,
) -> Document:
    """The report's document; ``results`` (and the ``problems`` met loading them) are read here unless given."""
    run = read_record(run_dir)
    if results is None:
        problems = []
        results = load_results(run_dir, problems)
    problems = list(problems or [])
    statx = [result for result in results if result.statx]
    statx_view = [_numbers(statx), _on_off(statx), _overhead(statx), _proof(run, run_dir, statx, exports)]
    sections = [
        *_warnings(run),
        _what(run, run_dir),
        *_where(run),
        _systems(run, node_facts, results),
        _sboms(run_dir),
        # statx-bench's own view first, where it applies: the workload-independent table follows it.
        *(statx_view if statx else []),
        _results(run, results),
        _plots(plots, run_dir),
        _exports(exports, run_dir, run),
        _phases(run),
        _skipped(run, run_dir, results, problems),
    ]
    if extra:
        sections.append(Section("Extra", [Facts([(str(key), _value(value)) for key, value in extra.items()])]))
    return Document(f"Run {run.run_id if run else run_dir.name}", sections)


def fmt_ns(value: float) -> str:
    """Latency in whole nanoseconds: the histogram's resolution is a few percent, decimals would be noise."""
    return f"{value:.0f}"


def fmt_rate(value: float) -> str:
    return f"{value:,.0f}"


def fmt_value(value: float) -> str:
    """A metric of any workload: whole above a thousand (with separators), else four significant digits."""
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _spread_text(point: Spread | None, fmt: Any) -> str:
    if point is None:
        return NONE
    if point.samples == 1 or point.low == point.high:
        return fmt(point.mean)
    return f"{fmt(point.mean)} ({fmt(point.low)}{DASH}{fmt(point.high)})"


def _what(run: RunRecord | None, run_dir: Path) -> Section:
    if run is None:
        return Section("What ran", [Paragraph(f"{run_dir.name}: run.json is missing or unreadable.")])
    bench = run.playbook.bench
    items = [
        ("run", run.run_id),
        ("playbook", f"{run.playbook.name} ({run.playbook_path})"),
        ("created", run.created_at),
        ("released", run.released_at or "not yet"),
    ]
    if bench:
        sweep = [f"{name} {_list(values)}" for name, values in bench.parameters.items()]
        count = len(bench.exclude)
        excluded = f", {count} exclusion{'s' if count != 1 else ''}" if count else ""
        items += [
            ("workload", bench.workload.command),
            ("sweep", f" {TIMES} ".join([*sweep, f"{bench.repetitions} repetitions"])
                      + f" ({len(bench.combinations())} runs per node{excluded})"),
            ("bench roles", ", ".join(bench.roles or []) or "every role"),
        ]  # fmt: skip
    return Section("What ran", [Facts(items)])


def _vm_facts(run: RunRecord) -> list[tuple[str, str]]:
    """On the VM testbed: how the guests ran, on which kernel, and that the eBPF exporter is our stand-in."""
    if run.testbed != "vm" or run.local is None:
        return []
    local = run.local
    kernel = local.kernel_dir or "?"
    return [
        ("VM accelerator", local.accelerator or "?"),
        ("VM kernel", f"{Path(kernel).name} ({kernel})"),
        ("eBPF exporter", "our stand-in for ebpf_exporter (g5kdeploy/payload/ebpf_exporter_standin.py), which reads "
                          "ebpf_exporter's config and maps and serves its metrics; Grid'5000 runs the real one"),
    ]  # fmt: skip


def _where(run: RunRecord | None) -> list[Section]:
    if run is None:
        return []
    jobs = run.jobs
    sites = sorted({job.site for job in jobs})
    blocks: list[Any] = [Facts([
        ("testbed", run.testbed),
        ("API", run.api_url),
        ("sites", ", ".join(sites) or "none"),
        ("OAR jobs", ", ".join(f"{job.site}/{job.uid if job.uid is not None else '?'}" for job in jobs) or "none"),
        *_vm_facts(run),
    ])]  # fmt: skip
    if jobs:
        blocks.append(Table(
            ["site", "job id", "state", "nodes", "resources"],
            [[job.site, str(job.uid), job.state, str(len(job.nodes)), job.resources] for job in jobs],
            numeric=frozenset({1, 3}),
        ))  # fmt: skip
    if run.roles:
        blocks.append(Table(["role", "nodes"], [[role, ", ".join(nodes)] for role, nodes in sorted(run.roles.items())]))
    return [Section("Where", blocks)]


def _systems(run: RunRecord | None, node_facts: Mapping[str, dict], results: list[BenchResult]) -> Section:
    deploy = run.deploy if run else None
    recorded = deploy.nodes if deploy else {}
    roles_of: dict[str, list[str]] = {}
    for role, members in (run.roles if run else {}).items():
        for node in members:
            roles_of.setdefault(node, []).append(role)
    nodes = sorted(set(roles_of) | set(node_facts) | set(recorded) | {result.node for result in results})
    blocks: list[Any] = []
    if deploy:
        blocks.append(Facts([
            ("deploy method", deploy.method),
            ("boot marker", deploy.marker),
            ("deployments", ", ".join(deploy.deployments) or "none recorded"),
        ]))  # fmt: skip
    else:
        blocks.append(Paragraph("No deploy phase recorded: the nodes ran the testbed's own system."))
    rows = []
    for node in nodes:
        entry = recorded.get(node)
        deployed = entry.facts if entry else None
        facts = node_facts.get(node) or {}
        kernel = facts.get("kernel") or (deployed.kernel if deployed else None)
        system = facts.get("system") or (deployed.system if deployed else None)
        rows.append([node, ", ".join(roles_of.get(node, [])), str(kernel or "?"), str(system or "?"),
                     str(facts.get("config_sha256") or "?"), entry.state if entry else NONE])  # fmt: skip
    if rows:
        blocks.append(Table(["node", "roles", "kernel", "system (closure)", "config sha256", "deploy"], rows))
    return Section("Systems", blocks)


def _sboms(run_dir: Path) -> Section:
    """What each node booted, in short: the SBOMs' component counts and the tool that listed them."""
    entries = read_sboms(run_dir)
    if not entries:
        return Section("SBOM", [Paragraph("No SBOM: the run was not collected, or its nodes could not be listed.")])
    rows = [[entry.subject, str(entry.components), entry.tool, _relative(entry.path, run_dir)] for entry in entries]
    return Section("SBOM", [Table(["role or node", "components", "tool", "file (CycloneDX)"], rows,
                                  numeric=frozenset({1}))])  # fmt: skip


#: Past this many metrics, the results table has a row per (combination, metric) rather than a column per metric.
WIDE_METRICS = 6


def _results(run: RunRecord | None, results: list[BenchResult]) -> Section:
    """Any workload's metrics per combination: the mean over its nodes and repetitions, (min-max) when they differ."""
    title = "Results"
    measured = [result for result in results if result.metrics]
    if not measured:
        return Section(title, [Paragraph("No finished bench results.")])
    metrics = metric_names(measured)
    parameters = parameter_names(measured)
    order = _combination_order(run)
    groups = group(measured, "label")
    labels = sorted(groups, key=lambda key: order.get(key[0], len(order)))
    wide = len(metrics) <= WIDE_METRICS
    headers = [*parameters, "repetitions", "nodes", *(metrics if wide else ["metric", "mean (min-max)"])]
    rows: list[list[str]] = []
    for key in labels:
        members = groups[key]
        repetitions, nodes = len({result.repetition for result in members}), len({result.node for result in members})
        head = [*(_parameter(members[0], name) for name in parameters), str(repetitions), str(nodes)]
        cells = [_metric_text(members, metric) for metric in metrics]
        if wide:
            rows.append([*head, *cells])
        else:
            rows += [[*head, metric, cell] for metric, cell in zip(metrics, cells, strict=True)]
    first = len(parameters)
    numeric = frozenset(range(first, len(headers)) if wide else (first, first + 1, first + 3))
    note = Paragraph(
        "Per combination of the parameters: each metric's mean over every node and repetition, (min-max) when they "
        "differ, and 'n of m' when only n of the m results have it."
    )
    return Section(title, [note, Table(headers, rows, numeric=numeric)])


def _combination_order(run: RunRecord | None) -> dict[str, int]:
    """Each combination's place in the playbook's sweep, by label (results of a run without playbook: last)."""
    bench = run.playbook.bench if run else None
    labels = dict.fromkeys(combination.label for combination in (bench.combinations() if bench else []))
    return {label: index for index, label in enumerate(labels)}


def _parameter(result: BenchResult, name: str) -> str:
    value = result.parameters.get(name)
    return NONE if value is None else str(value)


def _metric_text(members: Sequence[BenchResult], metric: str) -> str:
    point = spread(result.metrics.get(metric) for result in members)
    text = _spread_text(point, fmt_value)
    return text if point is None or point.samples == len(members) else f"{text}, {point.samples} of {len(members)}"


def _numbers(results: list[BenchResult]) -> Section:
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


#: A figure of one result (or None when it lacks it).
Figure = Callable[[BenchResult], float | None]


def _on_off(results: list[BenchResult]) -> Section:
    title = "eBPF on vs off"
    if not {"on", "off"} <= {result.ebpf for result in results}:
        return Section(title, [Paragraph("Not compared: the run has no results with both eBPF off and eBPF on "
                                         "(see Override proof and Skipped or missing).")])  # fmt: skip
    rows = []
    for (threads,), members in group(results, "threads").items():
        off = [result for result in members if result.ebpf == "off"]
        on = [result for result in members if result.ebpf == "on"]
        figures: list[tuple[str, Figure, Figure, Figure]] = [
            (ALL_PATHS, _aggregate("p50"), _aggregate("p99"), lambda result: result.calls_per_s)
        ]
        figures += [(path, _of_path(path, "p50"), _of_path(path, "p99"), _path_rate(path))
                    for path in _timed_paths(members)]  # fmt: skip
        for label, p50, p99, rate in figures:
            rows.append([str(threads), label, f"{len(off)} / {len(on)}",
                         *(_spread_text(spread(map(figure, state)), fmt)
                           for figure, fmt in ((p50, fmt_ns), (p99, fmt_ns), (rate, fmt_rate))
                           for state in (off, on))])  # fmt: skip
    table = Table(["threads", "path", "results off / on", "p50 ns off", "p50 ns on", "p99 ns off", "p99 ns on",
                   "calls/s off", "calls/s on"], rows, numeric=frozenset({0, 3, 4, 5, 6, 7, 8}))  # fmt: skip
    note = Paragraph(
        "Per thread count and path, eBPF off and on side by side: the mean over every node and repetition, "
        "(min-max) when they differ. The calls cycle through the paths, so all paths is the whole loop and its "
        "calls/s the measured rate per node; for one path, calls/s is threads / its mean latency, the rate a node "
        "would sustain on that path alone."
    )
    return Section(title, [note, table])


def _overhead(results: list[BenchResult]) -> Section:
    title = "Probe overhead"
    if not {"on", "off"} <= {result.ebpf for result in results}:
        return Section(title, [Paragraph("Not measured: it needs results with both eBPF off and eBPF on.")])
    overridden = _overridden_paths(results)
    rows: list[list[str]] = []
    findings: list[str] = []
    for (threads,), members in group(results, "threads").items():
        off = [result for result in members if result.ebpf == "off"]
        on = [result for result in members if result.ebpf == "on"]
        for path in sorted(_timed_paths(members), key=lambda path: (path in overridden, path)):
            kind = "overridden call (the program answers)" if path in overridden else "probe overhead"
            p50 = [spread(map(_of_path(path, "p50"), state)) for state in (off, on)]
            mean = [spread(map(_of_path(path, "mean"), state)) for state in (off, on)]
            delta_p50, delta_mean = _delta(*p50), _delta(*mean)
            n_off, n_on = (point.samples if point else 0 for point in p50)
            rows.append([str(threads), path, kind, *(_spread_text(point, fmt_ns) for point in p50),
                         _signed(delta_p50), *(_spread_text(point, fmt_ns) for point in mean), _signed(delta_mean),
                         f"{n_off} / {n_on}"])  # fmt: skip
            if path not in overridden and delta_p50 is not None:
                findings.append(f"{path}, {threads} thread{'s' if threads != 1 else ''}: {_signed(delta_p50)} ns per "
                                f"call at p50 ({_signed(delta_mean)} ns mean) with the program attached, from "
                                f"{n_off} results off and {n_on} on")  # fmt: skip
    if not rows:
        return Section(title, [Paragraph("Not measured: the results have no per-path latency (statx-bench before "
                                         "per-path figures).")])  # fmt: skip
    note = Paragraph(
        "On an ordinary path (its eBPF-on answers are its real ones) the program's probe runs on every call and "
        "answers none: p50(on) - p50(off) and mean(on) - mean(off) are what the probe costs a call, each side the "
        "mean over nodes and repetitions. On the target path, the eBPF-on figures are the cost of the overridden "
        "call itself (the program answers and the syscall is skipped), not an overhead."
    )
    headers = ["threads", "path", "what eBPF on measures", "p50 ns off", "p50 ns on", "p50 on - off", "mean ns off",
               "mean ns on", "mean on - off", "results off / on"]  # fmt: skip
    blocks: list[Any] = [note]
    if findings:
        blocks.append(Bullets(findings))
    blocks.append(Table(headers, rows, numeric=frozenset({0, 3, 4, 5, 6, 7, 8})))
    return Section(title, blocks)


def _aggregate(name: str) -> Figure:
    return lambda result: result.percentile(name)


def _of_path(path: str, name: str) -> Figure:
    def figure(result: BenchResult) -> float | None:
        entry = result.path_result(path)
        return entry.percentile(name) if entry else None

    return figure


def _path_rate(path: str) -> Figure:
    def figure(result: BenchResult) -> float | None:
        mean = _of_path(path, "mean")(result)
        return (result.threads or 1) * 1e9 / mean if mean else None

    return figure


def _timed_paths(results: Sequence[BenchResult]) -> list[str]:
    """The paths that have latency figures in some result, in the bench's order."""
    return list(dict.fromkeys(entry.path for result in results for entry in result.paths if entry.latency_ns))


def _overridden_paths(results: Sequence[BenchResult]) -> set[str]:
    """The paths that got the program's struct in some eBPF-on result: their on figures are overridden calls."""
    return {entry.path for result in results if result.ebpf == "on" for entry in result.paths
            if entry.answer is not None and entry.answer.is_fake}  # fmt: skip


def _delta(off: Spread | None, on: Spread | None) -> float | None:
    return None if off is None or on is None else on.mean - off.mean


def _signed(value: float | None) -> str:
    return NONE if value is None else f"{value:+.0f}"


# --- the override proof -----------------------------------------------------------------------------------------


@dataclass(frozen=True)
class Check:
    status: str  # PASS, FAIL or UNMEASURED
    detail: str

    def text(self) -> str:
        return f"{self.status}: {self.detail}"


@dataclass(frozen=True)
class NodeProof:
    node: str
    #: (i) fake struct with eBPF on, (ii) real values after detach, (iii) counter, (iv) histogram.
    checks: tuple[Check, Check, Check, Check]

    @property
    def proven(self) -> bool:
        return all(check.status == PASS for check in self.checks)


CHECK_NAMES = ("program's struct with eBPF on", "real values after detach", "override counter", "latency histogram")


def _proof(run: RunRecord | None, run_dir: Path, results: list[BenchResult], exports: Mapping[str, Path]) -> Section:
    title = "Override proof"
    if not any(result.ebpf == "on" for result in results):
        return Section(title, [Paragraph(f"The override proof was not run: {_not_run(run, run_dir)}.")])
    if not any(result.path_result(STATX_TARGET) for result in results if result.ebpf == "on"):
        paths = ", ".join(dict.fromkeys(entry.path for result in results for entry in result.paths)) or "none"
        return Section(title, [Paragraph(f"The override proof was not run: the benchmarked paths ({paths}) do not "
                                         f"include the program's target path {STATX_TARGET}.")])  # fmt: skip
    order = _sweep_order(run)
    overrides = counter_totals(exports.get(OVERRIDE_EXPORT) or run_dir / "exports" / f"{OVERRIDE_EXPORT}.csv")
    latencies = counter_totals(exports.get(LATENCY_EXPORT) or run_dir / "exports" / f"{LATENCY_EXPORT}.csv")
    proofs = []
    for (node,), members in group(results, "node").items():
        members = sorted(members, key=order)
        on = [result for result in members if result.ebpf == "on"]
        off = [result for result in members if result.ebpf == "off"]
        checks = (_check_fake(on, off), _check_detach(on, off, order), _check_counter(node, on, overrides),
                  _check_histogram(node, latencies))  # fmt: skip
        proofs.append(NodeProof(node, checks))
    proven = sum(proof.proven for proof in proofs)
    verdict = f"Verdict: the override is proven on {proven} of {len(proofs)} node{'s' if len(proofs) != 1 else ''}"
    failed = [f"{proof.node} ({_unproven(proof)})" for proof in proofs if not proof.proven]
    verdict += f"; not on {'; '.join(failed)}." if failed else "."
    note = Paragraph(
        f"Per node: (i) with eBPF on, statx on {STATX_TARGET} returned the program's struct "
        f"({_fake_text()}) and every other path its real values (those it returned with eBPF off); (ii) with eBPF "
        "off after an eBPF-on combination (the program detached), the target path returned its real values again; "
        f"(iii) the override counter (exports/{OVERRIDE_EXPORT}.csv, outcome overridden, its total over the run) "
        "equals the statx calls on the target path in the node's eBPF-on results, warm-up and sample calls "
        f"included, and no call failed to be overridden ({', '.join(FAILED_OUTCOMES)}); (iv) the program's latency "
        f"histogram (exports/{LATENCY_EXPORT}.csv) has samples."
    )
    rows = [[proof.node, *(check.text() for check in proof.checks)] for proof in proofs]
    headers = ["node", "(i) eBPF on: program's struct", "(ii) after detach: real values", "(iii) override counter",
               "(iv) latency histogram"]  # fmt: skip
    return Section(title, [Paragraph(verdict), note, Table(headers, rows)])


def _unproven(proof: NodeProof) -> str:
    return ", ".join(f"{name} {check.status}" for name, check in zip(CHECK_NAMES, proof.checks, strict=True)
                     if check.status != PASS)  # fmt: skip


def _not_run(run: RunRecord | None, run_dir: Path) -> str:
    bench = run.playbook.bench if run else None
    if bench and "on" not in bench.ebpf_states:
        return "the sweep has no eBPF-on combination (bench.parameters.ebpf does not list on)"
    planned = {combination.key: combination for combination in bench.combinations()} if bench else {}
    reasons: dict[str, set[str]] = {}
    for key, nodes in _sweep_notes(run_dir).items():
        combination = planned.get(key)
        if combination is None or combination.value(EBPF_PARAMETER) != "on":
            continue
        for note in nodes.values():
            reasons.setdefault(str(note.get("state", "?")), set()).add(str(note.get("reason", "?")))
    if "skipped" in reasons:
        return f"the eBPF-on combinations were skipped ({'; '.join(sorted(reasons['skipped']))})"
    if "failed" in reasons:
        return f"no eBPF-on combination finished (failed: {_few(sorted(reasons['failed']), 3)})"
    return "no eBPF-on combination finished"


def _sweep_order(run: RunRecord | None) -> Callable[[BenchResult], tuple[Any, ...]]:
    """The order the sweep ran the combinations in, as the playbook's sweep lists them (the time each finished
    breaks ties, e.g. when the playbook is not recorded)."""
    bench = run.playbook.bench if run else None
    order = {combination.key: index for index, combination in enumerate(bench.combinations() if bench else [])}

    def position(result: BenchResult) -> tuple[Any, ...]:
        return order.get(result.key, len(order)), result.finished_at or ""

    return position


def _answer(result: BenchResult, path: str) -> StatxAnswer | None:
    entry = result.path_result(path)
    return entry.answer if entry else None


def _fake_text() -> str:
    return (f"size {FAKE_STATX['size']}, ino {FAKE_STATX['ino']}, mode 0{FAKE_STATX['mode']:o}, "
            f"times {FAKE_STATX['mtime.sec']}")  # fmt: skip


def _check_fake(on: list[BenchResult], off: list[BenchResult]) -> Check:
    if not on:
        return Check(UNMEASURED, "no eBPF-on result on this node")
    problems: list[str] = []
    gaps: list[str] = []
    answers = [(result.key, _answer(result, STATX_TARGET)) for result in on]
    if absent := [key for key, answer in answers if answer is None]:
        problems.append(f"no answer for {STATX_TARGET} in {_few(absent, 3)}")
    wrong = [(key, answer) for key, answer in answers if answer is not None and not answer.is_fake]
    problems += [f"{STATX_TARGET} returned its own answer ({answer.describe()}) in {key}, not the program's "
                 "struct" for key, answer in wrong[:3]]  # fmt: skip
    passed = [f"{STATX_TARGET} returned the program's struct in {len(on)} of {len(on)} results"]
    others = dict.fromkeys(entry.path for result in on for entry in result.paths if entry.path != STATX_TARGET)
    for path in others:
        reference = {answer.identity(): answer for result in off if (answer := _answer(result, path))}
        seen = [(result.key, answer) for result in on if (answer := _answer(result, path))]
        if faked := [key for key, answer in seen if answer.is_fake]:
            problems.append(f"{path} returned the program's struct too, in {_few(faked, 3)}")
        elif not reference:
            gaps.append(f"{path}: no eBPF-off result to compare its answers with")
        elif changed := [(key, answer) for key, answer in seen if answer.identity() not in reference]:
            key, answer = changed[0]
            real = next(iter(reference.values()))
            problems.append(f"{path} returned {answer.describe()} in {key}, with eBPF off {real.describe()}")
        else:
            passed.append(f"{path} its real values ({seen[0][1].describe()}) in {len(seen)} of {len(on)}")
    if problems:
        return Check(FAIL, "; ".join(problems))
    if gaps:
        return Check(UNMEASURED, "; ".join([*gaps, *passed]))
    return Check(PASS, "; ".join(passed))


def _check_detach(on: list[BenchResult], off: list[BenchResult], order: Callable[[BenchResult], Any]) -> Check:
    if not on:
        return Check(UNMEASURED, "no eBPF-on result on this node")
    first_on = min(map(order, on))
    after = [result for result in off if order(result) > first_on]
    if not after:
        return Check(UNMEASURED, "no eBPF-off combination ran after an eBPF-on one on this node")
    before = {answer.identity(): answer for result in off if order(result) < first_on
              and (answer := _answer(result, STATX_TARGET))}  # fmt: skip
    answers = [(result.key, answer) for result in after if (answer := _answer(result, STATX_TARGET))]
    if not answers:
        return Check(UNMEASURED, f"no answer for {STATX_TARGET} in the eBPF-off results after an eBPF-on one")
    if faked := [key for key, answer in answers if answer.is_fake]:
        return Check(FAIL, f"{STATX_TARGET} still returned the program's struct in {_few(faked, 3)}, after the "
                           "program was detached")  # fmt: skip
    if before and (changed := [(key, answer) for key, answer in answers if answer.identity() not in before]):
        key, answer = changed[0]
        return Check(FAIL, f"{STATX_TARGET} returned {answer.describe()} in {key}, before the first attach "
                           f"{next(iter(before.values())).describe()}")  # fmt: skip
    same = ", the same as before the first attach" if before else ""
    return Check(
        PASS,
        f"{STATX_TARGET} returned its real values again ({answers[0][1].describe()}) in "
        f"{len(answers)} eBPF-off result{'s' if len(answers) != 1 else ''} after an eBPF-on one{same}",
    )


def _check_counter(node: str, on: list[BenchResult], totals: CounterTotals | None) -> Check:
    if not on:
        return Check(UNMEASURED, "no eBPF-on result on this node")
    calls = [entry.calls if (entry := result.path_result(STATX_TARGET)) else None for result in on]
    if any(count is None for count in calls):
        return Check(UNMEASURED, "statx-bench gave no per-path call counts (a version before them)")
    expected = sum(count for count in calls if count is not None)
    series = _node_series(totals, node, OVERRIDE_EXPORT)
    if isinstance(series, Check):
        return series
    by_outcome: dict[str, float] = {}
    for labels, total in series:
        by_outcome[labels.get("outcome", "")] = by_outcome.get(labels.get("outcome", ""), 0.0) + total
    failures = {outcome: round(by_outcome.get(outcome, 0.0)) for outcome in FAILED_OUTCOMES}
    failed_text = ", ".join(f"{outcome} {count:,}" for outcome, count in failures.items())
    calls_text = (f"{expected:,} statx calls on {STATX_TARGET} in {len(on)} eBPF-on results (warm-up and sample "
                  "calls included)")  # fmt: skip
    if "overridden" not in by_outcome:
        return Check(FAIL, f"no overridden counter for this node, for {calls_text}")
    overridden = round(by_outcome["overridden"])
    text = f"overridden {overridden:,} {'=' if overridden == expected else NOT_EQUAL} {calls_text}; {failed_text}"
    return Check(PASS if overridden == expected and not any(failures.values()) else FAIL, text)


def _check_histogram(node: str, totals: CounterTotals | None) -> Check:
    series = _node_series(totals, node, LATENCY_EXPORT)
    if isinstance(series, Check):
        return series
    # Buckets are cumulative: the +Inf one counts every sample (without it, the fullest bucket is a lower bound).
    counted = [(labels, total) for labels, total in series if labels.get("le") == "+Inf"]
    counted = counted or sorted(series, key=lambda item: item[1])[-1:]
    by_call: dict[str, float] = {}
    for labels, total in counted:
        by_call[labels.get("call") or "?"] = by_call.get(labels.get("call") or "?", 0.0) + total
    samples = round(sum(by_call.values()))
    if not samples:
        return Check(FAIL, "no samples for this node")
    split = ", ".join(f"{call} {round(count):,}" for call, count in sorted(by_call.items()))
    return Check(PASS, f"{samples:,} samples ({split})")


def _node_series(totals: CounterTotals | None, node: str, export: str) -> CounterTotals | Check:
    if totals is None:
        return Check(UNMEASURED, f"no exports/{export}.csv")
    if totals and not any(_scraped_node(labels) for labels, _ in totals):
        return Check(UNMEASURED, f"exports/{export}.csv has neither a node nor an instance label")
    return [(labels, total) for labels, total in totals if _scraped_node(labels) in (node, node.split(".", 1)[0])]


def _scraped_node(labels: dict[str, str]) -> str | None:
    """The node a series was scraped from: its ``node`` label (the agent's Prometheus configurations), else the
    host of its ``instance`` (NixOS' collector on Grid'5000 labels targets ``<host>:<port>`` only)."""
    if labels.get("node"):
        return labels["node"]
    instance = labels.get("instance") or ""
    return instance.rsplit(":", 1)[0] or None


def _plots(plots: Sequence[Path], run_dir: Path) -> Section:
    if not plots:
        return Section("Plots", [Paragraph("No plots.")])
    return Section("Plots", [Images([(path.stem, _relative(path, run_dir)) for path in plots])])


def _warnings(run: RunRecord | None) -> list[Section]:
    """What the collect phase found wrong with the data, first, where nobody can miss it."""
    warnings = run.collected.warnings if run else []
    return [Section("Warnings", [Bullets(warnings)])] if warnings else []


def _exports(exports: Mapping[str, Path], run_dir: Path, run: RunRecord | None) -> Section:
    if not exports:
        return Section("Exports", [Paragraph("None.")])
    described = run.collected.exports if run else {}
    items = []
    for name, path in exports.items():
        entry = described.get(name)
        if not path.is_file():
            note = "(missing)"
        elif entry and entry.empty:
            note = f"(EMPTY, {entry.empty})"
        elif entry:
            note = f"({entry.rows} rows, {entry.series} series, {_size(path.stat().st_size)})"
        else:
            note = f"({_size(path.stat().st_size)})"
        items.append((name, _relative(path, run_dir), note))
    return Section("Exports", [Links(items)])


def _phases(run: RunRecord | None) -> Section:
    if not run or not run.phases:
        return Section("Phases", [Paragraph("No phase recorded.")])
    rows = []
    for name, phase in run.phases.items():
        seconds = _seconds(phase.started_at, phase.finished_at)
        rows.append([name, phase.state, phase.started_at, phase.finished_at or NONE,
                     NONE if seconds is None else f"{seconds:.0f}", phase.error or ""])  # fmt: skip
    return Section("Phases", [Table(["phase", "state", "started", "finished", "seconds", "error"], rows,
                                    numeric=frozenset({4}))])  # fmt: skip


def _skipped(run: RunRecord | None, run_dir: Path, results: list[BenchResult], problems: list[str]) -> Section:
    """What the sweep did not measure and why: ``bench/sweep.json`` notes, then pairs missing without a note."""
    by_reason: dict[tuple[str, str], list[str]] = {}
    noted: set[tuple[str, str]] = set()
    for key, nodes in sorted(_sweep_notes(run_dir).items()):
        for node, note in sorted(nodes.items()):
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


def _sweep_notes(run_dir: Path) -> dict[str, dict[str, dict[str, Any]]]:
    """``bench/sweep.json``'s notes: combination key -> node -> {state, reason, at}."""
    pairs = json_object((read_json(run_dir / "bench" / "sweep.json") or {}).get("pairs"))
    return {str(key): {str(node): json_object(note) for node, note in json_object(nodes).items()}
            for key, nodes in pairs.items()}  # fmt: skip


def _planned(run: RunRecord | None) -> list[tuple[str, str]]:
    bench = run.playbook.bench if run else None
    if run is None or bench is None:
        return []
    nodes = sorted({node for role in bench.roles or list(run.roles) for node in run.roles.get(role, [])})
    return [(combination.key, node) for combination in bench.combinations() for node in nodes]


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

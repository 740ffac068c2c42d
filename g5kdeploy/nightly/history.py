"""The history of one playbook: every finished run, reduced to the few numbers a regression check follows.

A run is summarised per combination of the sweep's parameters (its label, ``threads=1 ebpf=on``) as
per-repetition values of every metric the workload produced, each the mean over the bench nodes of that
repetition; ``override_total`` (the eBPF override counter's total, from the collect phase's export) is one
value for the whole run. The per-repetition values are kept (not only their mean) because the detector
estimates the noise from them and confirms a change with a test on them.

Runs on different hardware (cluster) or kernel configuration measure different things: their numbers are
never put in one series. A series is keyed by (metric, combination, hardware, kernel_config), and each place
in the history where the hardware or the kernel configuration changes is reported as a series split, so a
reader sees why a series restarts instead of guessing at a missing change point.
"""

from __future__ import annotations

import itertools
import statistics
from collections.abc import Iterable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from g5kdeploy.collect.data import BenchResult, counter_totals, group, load_results, metric_names
from g5kdeploy.collect.files import read_json
from g5kdeploy.log import get_logger
from g5kdeploy.results import RUN_FILE, RunRecord, read_record

log = get_logger(__name__)

#: A counter of the whole run (the exporter counts across every combination), one value per run.
RUN_METRICS = ("override_total",)
#: The combination label of run-level metrics.
RUN_COMBINATION = "run"
OVERRIDE_CSV = "exports/statx_override.csv"
OVERRIDDEN = "overridden"
UNKNOWN_HARDWARE = "unknown"


@dataclass(frozen=True)
class SkippedRun:
    run_id: str
    reason: str


@dataclass(frozen=True)
class RunSummary:
    """One finished run of the playbook."""

    run_id: str
    created_at: str
    #: The cluster(s) of the bench nodes, sorted and joined with "+" ("gros", "gros+grisou").
    hardware: str
    #: sha256 of the kernel's config (``/proc/config.gz``); several distinct ones joined with "+"; None if unknown.
    kernel_config: str | None
    #: combination label -> metric -> one value per repetition (repetition order), each the mean over the nodes.
    values: dict[str, dict[str, list[float]]] = field(default_factory=dict)
    #: Last value of ``statx_override_total{outcome="overridden"}``, summed over the exporters; None if absent.
    override_total: float | None = None
    nodes: tuple[str, ...] = ()

    def samples(self, metric: str, combination: str) -> list[float]:
        """The repetition-level values of one metric (run-level metrics: a single value, or none)."""
        if metric in RUN_METRICS:
            value = self.override_total if metric == "override_total" else None
            return [] if value is None or combination != RUN_COMBINATION else [value]
        return list(self.values.get(combination, {}).get(metric, []))

    def combinations(self, metric: str) -> list[str]:
        if metric in RUN_METRICS:
            return [RUN_COMBINATION] if self.samples(metric, RUN_COMBINATION) else []
        return [combination for combination, metrics in self.values.items() if metrics.get(metric)]


class History(list[RunSummary]):
    """The finished runs, oldest first, plus the runs of the same playbook left out and why.

    A list subclass so that callers that only want the runs use it as one.
    """

    def __init__(
        self, runs: Iterable[RunSummary] = (), *, playbook: str = "", skipped: Sequence[SkippedRun] = ()
    ) -> None:
        super().__init__(runs)
        self.playbook = playbook
        self.skipped: list[SkippedRun] = list(skipped)


@dataclass(frozen=True)
class SeriesKey:
    metric: str
    combination: str
    hardware: str
    kernel_config: str | None

    def label(self) -> str:
        config = (self.kernel_config or "unknown")[:12]
        return f"{self.metric} · {self.combination} · {self.hardware} · config {config}"

    def to_dict(self) -> dict[str, Any]:
        return {"metric": self.metric, "combination": self.combination, "hardware": self.hardware,
                "kernel_config": self.kernel_config}  # fmt: skip


@dataclass(frozen=True)
class Series:
    """One comparable sequence: the runs of one key, in history order."""

    key: SeriesKey
    run_ids: tuple[str, ...]
    #: Position of each run in the whole history (so split series share one time axis in plots).
    positions: tuple[int, ...]
    #: Repetition-level values per run.
    samples: tuple[tuple[float, ...], ...]

    @property
    def means(self) -> list[float]:
        return [statistics.fmean(values) for values in self.samples]


@dataclass(frozen=True)
class SeriesSplit:
    """Where consecutive runs stop being comparable."""

    run_id: str
    position: int
    what: str  # "cluster" or "kernel configuration"
    before: str | None
    after: str | None

    @property
    def message(self) -> str:
        before, after = self.before or "unknown", self.after or "unknown"
        if self.what == "kernel configuration":
            before, after = before[:12], after[:12]
        return f"{self.what} changed from {before} to {after} at run {self.run_id}: series split"

    def to_dict(self) -> dict[str, Any]:
        return {"run_id": self.run_id, "what": self.what, "before": self.before, "after": self.after,
                "message": self.message}  # fmt: skip


def load_history(results_dir: Path, playbook_name: str, skipped: list[SkippedRun] | None = None) -> History:
    """Every finished run of ``playbook_name`` under ``results_dir``, oldest first (by ``created_at``).

    Finished means the bench phase is done and at least one bench result is readable; later phases do not
    matter (a failed collect leaves the bench numbers valid, only ``override_total`` is then missing). Runs of
    this playbook left out are appended to ``skipped`` (and to the returned history's ``skipped``), and logged.
    """
    notes = skipped if skipped is not None else []
    found: list[RunSummary] = []
    if results_dir.is_dir():
        for run_dir in sorted(results_dir.iterdir()):
            if not (run_dir / RUN_FILE).is_file():
                continue
            run = read_record(run_dir)
            if run is None:
                # An unreadable run.json cannot tell its playbook: said only when its name suggests ours.
                if run_dir.name.startswith(f"{playbook_name}-"):
                    _skip(notes, run_dir.name, "run.json unreadable")
                continue
            if run.playbook.name != playbook_name:
                continue
            summary = _summarise(run_dir, run, notes)
            if summary is not None:
                found.append(summary)
    found.sort(key=lambda summary: (summary.created_at, summary.run_id))
    return History(found, playbook=playbook_name, skipped=notes)


def _skip(notes: list[SkippedRun], run_id: str, reason: str) -> None:
    log.info("run left out of the history", run=run_id, reason=reason)
    notes.append(SkippedRun(run_id, reason))


def _summarise(run_dir: Path, run: RunRecord, notes: list[SkippedRun]) -> RunSummary | None:
    run_id = run.run_id
    bench = run.phases.get("bench")
    if bench is None:
        _skip(notes, run_id, "bench phase never ran")
        return None
    if bench.state != "done":
        error = f": {bench.error}" if bench.error else ""
        _skip(notes, run_id, f"bench phase {bench.state}{error}")
        return None
    problems: list[str] = []
    results = load_results(run_dir, problems)
    if not results:
        _skip(notes, run_id, "no readable bench results" + (f" ({problems[-1]})" if problems else ""))
        return None
    nodes = tuple(sorted({result.node for result in results}))
    node_facts = {node: read_json(run_dir / "nodes" / f"{node}.json") or {} for node in nodes}
    return RunSummary(
        run_id=run_id,
        created_at=run.created_at,
        hardware=_hardware(nodes, node_facts),
        kernel_config=_kernel_config(nodes, node_facts),
        values=_values(results),
        override_total=read_override_total(run_dir / OVERRIDE_CSV),
        nodes=nodes,
    )


def cluster_of(node: str) -> str:
    """``gros-12.nancy.grid5000.fr`` -> ``gros`` (Grid'5000 names nodes ``<cluster>-<n>``)."""
    short = node.split(".", 1)[0]
    head, _, number = short.rpartition("-")
    return head if head and number.isdigit() else short


def _hardware(nodes: Sequence[str], facts: dict[str, dict[str, Any]]) -> str:
    clusters: set[str] = set()
    for node in nodes:
        # The reference API's uid is authoritative when collect fetched it; the name is the fallback and agrees
        # on Grid'5000, where a node's name is its uid plus the site's domain.
        reference = facts.get(node, {}).get("reference")
        uid = reference.get("uid") if isinstance(reference, dict) else None
        clusters.add(cluster_of(str(uid or node)))
    return "+".join(sorted(clusters)) or UNKNOWN_HARDWARE


def _kernel_config(nodes: Sequence[str], facts: dict[str, dict[str, Any]]) -> str | None:
    hashes: set[str] = set()
    for node in nodes:
        if value := facts.get(node, {}).get("config_sha256"):
            hashes.add(str(value))
    return "+".join(sorted(hashes)) or None


def _values(results: Sequence[BenchResult]) -> dict[str, dict[str, list[float]]]:
    values: dict[str, dict[str, list[float]]] = {}
    for (label,), members in group(results, "label").items():
        metrics: dict[str, list[float]] = {}
        for _, repetition in group(members, "repetition").items():
            # Mean over nodes: the nodes of a run are draws of one configuration; a repetition where a node
            # lacks a metric is averaged over the nodes that have it.
            for metric in metric_names(repetition):
                present = [result.metrics[metric] for result in repetition if metric in result.metrics]
                metrics.setdefault(metric, []).append(statistics.fmean(present))
        values[label] = metrics
    return values


def read_override_total(path: Path) -> float | None:
    """The run's total of every ``outcome="overridden"`` series of the export (one per exporter node, exporter
    restarts counted), summed; None when the file or such a series is missing (collect failed, eBPF never ran)."""
    totals = counter_totals(path)
    overridden = [total for labels, total in totals or [] if labels.get("outcome") == OVERRIDDEN]
    return sum(overridden) if overridden else None


def build_series(history: Sequence[RunSummary], metrics: Sequence[str]) -> list[Series]:
    """The comparable series of ``metrics``: runs grouped by (metric, combination, hardware, kernel_config)."""
    collected: dict[SeriesKey, tuple[list[str], list[int], list[tuple[float, ...]]]] = {}
    for position, summary in enumerate(history):
        for metric in metrics:
            for combination in summary.combinations(metric):
                samples = summary.samples(metric, combination)
                if not samples:
                    continue
                key = SeriesKey(metric, combination, summary.hardware, summary.kernel_config)
                run_ids, positions, values = collected.setdefault(key, ([], [], []))
                run_ids.append(summary.run_id)
                positions.append(position)
                values.append(tuple(samples))
    return [
        Series(key, tuple(run_ids), tuple(positions), tuple(values))
        for key, (run_ids, positions, values) in collected.items()
    ]


def series_splits(history: Sequence[RunSummary]) -> list[SeriesSplit]:
    """Every place where a run's hardware or kernel configuration differs from the run before it."""
    splits: list[SeriesSplit] = []
    for position, (previous, current) in enumerate(itertools.pairwise(history), start=1):
        if previous.hardware != current.hardware:
            splits.append(SeriesSplit(current.run_id, position, "cluster", previous.hardware, current.hardware))
        if previous.kernel_config != current.kernel_config:
            splits.append(
                SeriesSplit(current.run_id, position, "kernel configuration", previous.kernel_config,
                            current.kernel_config)
            )  # fmt: skip
    return splits

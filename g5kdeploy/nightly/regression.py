"""Change detection over a playbook's history: which metric of which combination moved, at which run, how much.

Several independent rules must agree before a change is reported, as in dotnet's perf auto-filer, because any
one of them alone fires on noise now and then and a nightly alarm that cries wolf is soon ignored:

1. **Change point.** ``ruptures.Pelt`` (``model="l2"``, a shift in the mean) on the per-run means of one series.
   The penalty is ``penalty_scale * sigma**2 * log(n)``, a BIC-like penalty in units of the noise, so a noisy
   series needs a bigger step to be split, as Otava's e-divisive adapts to noise. ``sigma`` is the noise of a
   per-run mean, the larger of two estimates: the within-run spread of the repetitions divided by
   ``sqrt(repetitions)``, and a robust between-run spread (MAD of successive differences, which a few steps
   hardly move). The second matters on real machines, where one run differs from the next by more than its
   repetitions differ from each other (boot, placement, frequency), and the repetitions alone would flood
   the report. ``min_size=2``: one odd night is not a change; a step shows once two runs after it exist.
   A series is checked from ``MIN_RUNS`` runs on; before that the report says there is not enough history.
2. **Magnitude.** ``|after - before| / before >= threshold`` (5 % by default), means of the segments on either
   side of the change point (up to the neighbouring change points, so an older step does not dilute a newer).
3. **Significance.** Welch's t-test and the Mann-Whitney U test on the repetition-level values of the two
   segments (run-level metrics such as ``override_total`` have one value per run, which are then the
   samples); ``confidence = 1 - max(p_welch, p_mannwhitney)`` must reach ``confidence`` (0.99): both tests,
   one assuming normal noise and one not, have to agree.

Candidates that pass rule 1 but not 2 or 3 are kept in ``Report.unconfirmed`` (a watch list), not reported.

Direction: each metric's, from the playbook's ``nightly.better`` or its name (:meth:`Nightly.direction_by_name`):
for latencies (``p50_ns``, ``p99_ns``) up is a regression; for rates (``calls_per_s``) down is. For
``override_total`` (how many ``statx`` calls the eBPF program overrode) a *decrease* is a regression: the
experiment is the override, and fewer overrides means it stopped working (a detached program, a kernel without
``bpf_override_return``); an increase is reported as an improvement so that it is still seen.

Series never mix hardware or kernel configurations (see ``history``), so no change point is ever found across a
cluster change; the split is listed in the report instead.
"""

from __future__ import annotations

import json
import math
import statistics
from collections import Counter
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from typing import Any, Literal

import numpy as np
import ruptures
from scipy import stats

from g5kdeploy.log import get_logger
from g5kdeploy.nightly.history import (
    History,
    RunSummary,
    Series,
    SeriesKey,
    SeriesSplit,
    SkippedRun,
    build_series,
    series_splits,
)
from g5kdeploy.playbook import Nightly

log = get_logger(__name__)

EXIT_OK = 0
EXIT_REGRESSION = 3
#: No series has ``MIN_RUNS`` runs yet: nothing was checked, which is not a pass.
EXIT_NOT_ENOUGH_HISTORY = 4
#: Runs in a segment at least: one odd night is not a change.
MIN_SEGMENT = 2
#: Runs a series needs before it is checked. Two segments of ``MIN_SEGMENT`` (4) are the least Pelt can split,
#: but with two repetitions a run (the statx playbooks) Mann-Whitney on 2 + 2 runs cannot go below p = 0.029:
#: reaching the 0.99 confidence takes a third run before the step (6 samples against 4), so 5 runs; the sixth
#: keeps the between-run noise (the median of 5 successive differences) clear of the step's one difference.
MIN_RUNS = 6
#: Below this fraction of the series' level, the noise estimate is floored (a constant series has none, and a
#: zero sigma would make every difference infinitely significant).
NOISE_FLOOR = 1e-6
ROW_HEADERS = ("metric", "combination", "hardware", "run", "before", "after", "relative", "kind", "confidence")

Kind = Literal["regression", "improvement"]


@dataclass(frozen=True)
class Change:
    metric: str
    combination: str
    series_key: SeriesKey
    #: The first run after the change.
    run_id: str
    before: float
    after: float
    relative: float
    kind: Kind
    confidence: float
    #: The last run before the change, and how many runs each side of it was compared.
    previous_run_id: str = ""
    runs_before: int = 0
    runs_after: int = 0
    p_welch: float = 1.0
    p_mannwhitney: float = 1.0
    #: Position of ``run_id`` in the whole history (plots).
    position: int = 0

    def to_dict(self) -> dict[str, Any]:
        return {
            "metric": self.metric,
            "combination": self.combination,
            "series_key": self.series_key.to_dict(),
            "run_id": self.run_id,
            "previous_run_id": self.previous_run_id,
            "before": _finite(self.before),
            "after": _finite(self.after),
            "relative": _finite(self.relative),
            "kind": self.kind,
            "confidence": self.confidence,
            "p_welch": self.p_welch,
            "p_mannwhitney": self.p_mannwhitney,
            "runs_before": self.runs_before,
            "runs_after": self.runs_after,
        }

    def row(self) -> dict[str, str]:
        return {
            "metric": self.metric,
            "combination": self.combination,
            "hardware": self.series_key.hardware,
            "run": self.run_id,
            "before": _number(self.before),
            "after": _number(self.after),
            "relative": _percent(self.relative),
            "kind": self.kind,
            "confidence": f"{self.confidence:.4f}",
        }


@dataclass(frozen=True)
class Unconfirmed:
    """A change point that failed the magnitude or significance rule: not reported, only listed."""

    change: Change
    reason: str

    def to_dict(self) -> dict[str, Any]:
        return {**self.change.to_dict(), "reason": self.reason}


@dataclass(frozen=True)
class SeriesCheck:
    """What was done with one series: checked (with its noise estimate) or why not."""

    key: SeriesKey
    runs: int
    checked: bool
    noise: float | None = None
    change_points: int = 0
    note: str = ""

    def to_dict(self) -> dict[str, Any]:
        return {"key": self.key.to_dict(), "runs": self.runs, "checked": self.checked,
                "noise": _finite(self.noise), "change_points": self.change_points, "note": self.note}  # fmt: skip


@dataclass
class Report:
    playbook: str
    parameters: dict[str, Any]
    changes: list[Change] = field(default_factory=list)
    unconfirmed: list[Unconfirmed] = field(default_factory=list)
    series: list[SeriesCheck] = field(default_factory=list)
    splits: list[SeriesSplit] = field(default_factory=list)
    skipped: list[SkippedRun] = field(default_factory=list)
    runs: int = 0
    #: Runs a series needs before it is checked (``MIN_RUNS`` unless the caller chose otherwise).
    min_runs: int = MIN_RUNS

    @property
    def regressions(self) -> list[Change]:
        return [change for change in self.changes if change.kind == "regression"]

    @property
    def improvements(self) -> list[Change]:
        return [change for change in self.changes if change.kind == "improvement"]

    @property
    def enough_history(self) -> bool:
        """Whether at least one series had the runs to be checked."""
        return any(check.checked for check in self.series)

    @property
    def history_runs(self) -> int:
        """Runs of the longest comparable series: what counts towards ``min_runs``, splits considered."""
        return max((check.runs for check in self.series), default=0)

    @property
    def history_message(self) -> str | None:
        """``not enough history (N of M needed)`` when no series could be checked, else None."""
        return None if self.enough_history else _not_enough(self.history_runs, self.min_runs)

    def short_series(self) -> list[str]:
        """When some series were checked: one line per (hardware, kernel configuration, runs) left unchecked."""
        if not self.enough_history:
            return []
        groups = Counter((check.key.hardware, check.key.kernel_config, check.runs)
                         for check in self.series if not check.checked)  # fmt: skip
        return [
            _not_enough(runs, self.min_runs, f" on {hardware} · config {(config or 'unknown')[:12]} for {count} series")
            for (hardware, config, runs), count in groups.items()
        ]

    @property
    def exit_code(self) -> int:
        """3 when a regression is reported, else 4 when no series could be checked, else 0 (improvements too)."""
        if self.regressions:
            return EXIT_REGRESSION
        return EXIT_OK if self.enough_history else EXIT_NOT_ENOUGH_HISTORY

    def rows(self) -> list[dict[str, str]]:
        """One row per reported change, every cell a string, keys ``ROW_HEADERS``; regressions first."""
        ordered = sorted(self.changes, key=lambda change: (change.kind != "regression", change.metric,
                                                           change.combination, change.position))  # fmt: skip
        return [change.row() for change in ordered]

    def to_dict(self) -> dict[str, Any]:
        return {
            "playbook": self.playbook,
            "runs": self.runs,
            "exit_code": self.exit_code,
            "history": {
                "enough": self.enough_history,
                "runs": self.history_runs,
                "needed": self.min_runs,
                "message": self.history_message,
            },
            "parameters": self.parameters,
            "changes": [change.to_dict() for change in self.changes],
            "unconfirmed": [candidate.to_dict() for candidate in self.unconfirmed],
            "splits": [split.to_dict() for split in self.splits],
            "skipped": [{"run_id": skip.run_id, "reason": skip.reason} for skip in self.skipped],
            "series": [check.to_dict() for check in self.series],
        }

    def to_json(self) -> str:
        return json.dumps(self.to_dict(), indent=2) + "\n"


def detect(
    history: Sequence[RunSummary],
    *,
    metrics: Sequence[str],
    higher_is_better: Mapping[str, bool] | None = None,
    threshold: float = 0.05,
    min_runs: int = MIN_RUNS,
    confidence: float = 0.99,
    penalty_scale: float = 3.0,
    left_out: Mapping[str, str] | None = None,
) -> Report:
    """Changes in ``metrics`` over ``history`` (oldest first), per comparable series; see the module doc.

    Whether a higher value is better: ``higher_is_better``, else the metric's name; a metric neither tells is
    refused (``ValueError``), as a regression could otherwise pass for an improvement. ``left_out``: metrics the
    caller chose not to follow, with why, for the report.
    """
    given = {metric: (higher_is_better or {}).get(metric, Nightly.direction_by_name(metric)) for metric in metrics}
    unknown = [metric for metric, higher in given.items() if higher is None]
    if unknown:
        raise ValueError(f"unknown direction for {', '.join(unknown)}: say whether higher is better (nightly.better)")
    directions = {metric: bool(higher) for metric, higher in given.items()}
    report = Report(
        playbook=history.playbook if isinstance(history, History) else "",
        parameters={
            "metrics": list(metrics),
            "higher_is_better": directions,
            "left_out": dict(left_out or {}),
            "threshold": threshold,
            "min_runs": min_runs,
            "confidence": confidence,
            "penalty_scale": penalty_scale,
            "algorithm": "ruptures.Pelt l2",
            "tests": ["welch", "mannwhitneyu"],
        },
        splits=series_splits(history),
        skipped=list(history.skipped) if isinstance(history, History) else [],
        runs=len(history),
        min_runs=min_runs,
    )
    for split in report.splits:
        log.info("series split", message=split.message)
    for series in build_series(history, metrics):
        if len(series.run_ids) < min_runs:
            report.series.append(SeriesCheck(series.key, len(series.run_ids), checked=False,
                                             note=_not_enough(len(series.run_ids), min_runs)))  # fmt: skip
            continue
        _check(series, report, directions[series.key.metric], threshold=threshold, confidence=confidence,
               penalty_scale=penalty_scale)  # fmt: skip
    report.changes.sort(key=lambda change: (change.position, change.metric, change.combination))
    return report


def noise(series: Series) -> float:
    """The noise of one per-run mean, the larger of the within-run and the robust between-run estimate."""
    means = series.means
    repeated = [values for values in series.samples if len(values) >= 2]
    within = 0.0
    if repeated:
        pooled = statistics.fmean(statistics.variance(values) for values in repeated)
        within = math.sqrt(pooled / statistics.fmean(len(values) for values in repeated))
    between = 0.0
    if len(means) >= 3:
        # MAD of successive differences: a step adds one large difference, which the median ignores. The
        # difference of two independent means has sqrt(2) times their spread; 1.4826 makes a MAD a sigma.
        differences = np.abs(np.diff(means))
        between = 1.4826 * float(np.median(differences)) / math.sqrt(2)
    level = abs(statistics.fmean(means)) if means else 0.0
    return max(within, between, NOISE_FLOOR * level, 1e-12)


def _check(
    series: Series, report: Report, higher_is_better: bool, *, threshold: float, confidence: float, penalty_scale: float
) -> None:
    means = np.asarray(series.means, dtype=float)
    sigma = noise(series)
    penalty = penalty_scale * sigma**2 * math.log(len(means))
    # jump=1: every run is a possible change point (the default, 5, would report the change up to 4 runs late).
    ends = ruptures.Pelt(model="l2", min_size=MIN_SEGMENT, jump=1).fit(means.reshape(-1, 1)).predict(pen=penalty)
    points = [index for index in ends if index < len(means)]
    report.series.append(SeriesCheck(series.key, len(means), checked=True, noise=sigma, change_points=len(points)))
    bounds = [0, *points, len(means)]
    for number, index in enumerate(points, start=1):
        start, end = bounds[number - 1], bounds[number + 1]
        change = _measure(series, start, index, end, higher_is_better)
        if abs(change.relative) < threshold:
            report.unconfirmed.append(Unconfirmed(change, f"|relative| {abs(change.relative):.1%} < {threshold:.0%}"))
        elif change.confidence < confidence:
            report.unconfirmed.append(
                Unconfirmed(change, f"confidence {change.confidence:.4f} < {confidence} (more runs will tell)")
            )
        else:
            log.info("change found", series=series.key.label(), run=change.run_id, kind=change.kind,
                     relative=round(change.relative, 4), confidence=round(change.confidence, 6))  # fmt: skip
            report.changes.append(change)


def _measure(series: Series, start: int, index: int, end: int, higher_is_better: bool) -> Change:
    """The change between runs ``[start, index)`` and ``[index, end)`` of ``series``."""
    means = series.means
    before = statistics.fmean(means[start:index])
    after = statistics.fmean(means[index:end])
    # A counter that was 0 before (override never fired) has no relative change: call it infinite.
    relative = (after - before) / abs(before) if before else (math.copysign(math.inf, after) if after else 0.0)
    left = [value for values in series.samples[start:index] for value in values]
    right = [value for values in series.samples[index:end] for value in values]
    p_welch, p_mann = _p_values(left, right)
    worse = relative < 0 if higher_is_better else relative > 0
    return Change(
        metric=series.key.metric,
        combination=series.key.combination,
        series_key=series.key,
        run_id=series.run_ids[index],
        before=before,
        after=after,
        relative=relative,
        kind="regression" if worse else "improvement",
        confidence=1.0 - max(p_welch, p_mann),
        previous_run_id=series.run_ids[index - 1],
        runs_before=index - start,
        runs_after=end - index,
        p_welch=p_welch,
        p_mannwhitney=p_mann,
        position=series.positions[index],
    )


def _p_values(left: Sequence[float], right: Sequence[float]) -> tuple[float, float]:
    """Two-sided p-values of Welch's t-test and of Mann-Whitney U; 1.0 when a test cannot say anything."""
    if len(left) < 2 or len(right) < 2:
        return 1.0, 1.0
    if np.var(left) == 0 and np.var(right) == 0:
        # Two constant samples (a counter that stayed put on each side): different constants are as certain
        # as it gets, equal ones are no change. scipy would return NaN here.
        same = statistics.fmean(left) == statistics.fmean(right)
        return (1.0, 1.0) if same else (0.0, 0.0)
    welch = float(stats.ttest_ind(left, right, equal_var=False).pvalue)
    mann = float(stats.mannwhitneyu(left, right, alternative="two-sided").pvalue)
    return (1.0 if math.isnan(welch) else welch), (1.0 if math.isnan(mann) else mann)


def _not_enough(runs: int, needed: int, where: str = "") -> str:
    return f"not enough history{where} ({runs} of {needed} needed)"


def _finite(value: float | None) -> float | None:
    return value if value is not None and math.isfinite(value) else None


def _number(value: float) -> str:
    if not math.isfinite(value):
        return str(value)
    if abs(value) >= 1000:
        return f"{value:,.0f}"
    return f"{value:.4g}"


def _percent(value: float) -> str:
    return f"{value:+.1%}" if math.isfinite(value) else ("+inf" if value > 0 else "-inf")

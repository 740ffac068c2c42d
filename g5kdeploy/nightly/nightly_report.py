"""The nightly report: one PNG per metric, ``nightly.md`` and ``nightly.json``, from a regression ``Report``.

Figures are drawn on ``matplotlib.figure.Figure`` with the Agg canvas (no pyplot: no global state, safe in a
scheduler's process), and every file is replaced atomically so a reader never sees half a report.
"""

from __future__ import annotations

import io
import math
from collections.abc import Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure

from g5kdeploy.files import atomic_write_bytes, atomic_write_text
from g5kdeploy.log import get_logger
from g5kdeploy.nightly.history import RunSummary, Series, build_series
from g5kdeploy.nightly.regression import ROW_HEADERS, Change, Report
from g5kdeploy.playbook import slug

log = get_logger(__name__)
DPI = 100
MARKDOWN = "nightly.md"
JSON = "nightly.json"
KIND_COLOUR = {"regression": "tab:red", "improvement": "tab:green"}
UNITS = {"p50_ns": "ns", "p99_ns": "ns", "calls_per_s": "calls/s", "override_total": "overridden calls"}
#: Half the least y span of a panel whose values sit at 0 (a counter that never moved), in the metric's unit.
ZERO_HALF_SPAN = 1.0


def write_nightly(report: Report, history: Sequence[RunSummary], out_dir: Path) -> dict[str, Path]:
    """Write the report under ``out_dir``; returns ``{"markdown": ..., "json": ..., <metric>: <png>, ...}``.

    A metric without any series (no run has it, e.g. ``override_total`` before collect ever succeeded) gets no
    figure; the markdown says so.
    """
    out_dir.mkdir(parents=True, exist_ok=True)
    written: dict[str, Path] = {}
    metrics = list(report.parameters.get("metrics", []))
    all_series = build_series(history, metrics)
    names: set[str] = set()
    for metric in metrics:
        series = [one for one in all_series if one.key.metric == metric]
        if not series:
            continue
        # A metric's name can be a CSV column or a JSON path: the file name keeps its letters and digits.
        name = f"nightly-{slug(metric)}"
        while name in names:
            name = f"{name}-{len(names)}"
        names.add(name)
        path = out_dir / f"{name}.png"
        buffer = io.BytesIO()
        metric_figure(metric, series, report, history).savefig(buffer, format="png", dpi=DPI)
        atomic_write_bytes(path, buffer.getvalue())
        written[metric] = path
    json_path = out_dir / JSON
    atomic_write_text(json_path, report.to_json())
    written["json"] = json_path
    markdown_path = out_dir / MARKDOWN
    atomic_write_text(markdown_path, render_markdown(report, history, written))
    written["markdown"] = markdown_path
    log.info("nightly report written", path=str(markdown_path), changes=len(report.changes),
             exit_code=report.exit_code)  # fmt: skip
    return written


# --- markdown ---------------------------------------------------------------------------------------------------


def render_markdown(report: Report, history: Sequence[RunSummary], figures: dict[str, Path] | None = None) -> str:
    parameters = report.parameters
    threshold = float(parameters.get("threshold", 0.05))
    confidence = float(parameters.get("confidence", 0.99))
    lines = [f"# Nightly regression check{': ' + report.playbook if report.playbook else ''}", ""]
    if history:
        lines.append(f"{len(history)} finished runs, from `{history[0].run_id}` to `{history[-1].run_id}`.")
    else:
        lines.append("No finished run yet.")
    directions = parameters.get("higher_is_better", {})
    followed = [f"{metric} ({'higher' if directions.get(metric) else 'lower'} is better)"
                for metric in parameters.get("metrics", [])]  # fmt: skip
    lines += ["", f"Metrics followed: {', '.join(followed) or 'none'}."]
    left_out = parameters.get("left_out", {})
    if left_out:
        lines.append(f"Not followed: {'; '.join(f'{metric}: {why}' for metric, why in left_out.items())}.")
    lines += [
        "",
        f"A change is reported when a change point (ruptures Pelt, l2, penalty {parameters.get('penalty_scale')}"
        f" x noise² x log n) moves the mean by at least {threshold:.0%} and Welch's t-test and Mann-Whitney U"
        f" both give a confidence of at least {confidence}; series with fewer than {parameters.get('min_runs')}"
        " runs are not checked.",
        "",
        f"**{len(report.regressions)} regression(s), {len(report.improvements)} improvement(s): exit code "
        f"{report.exit_code}.**",
        "",
    ]
    if report.history_message:
        lines += [f"{_sentence(report.history_message)}: no series was checked yet.", ""]
    short = report.short_series()
    if short:
        lines += [f"- {_sentence(message)}: not checked yet." for message in short] + [""]
    lines += ["## Changes", ""]
    rows = report.rows()
    if rows:
        headers = [header if header != "run" else "run where it changed" for header in ROW_HEADERS]
        lines += [_row(headers), _row(["---"] * len(headers))]
        lines += [_row([_cell(row[name]) for name in ROW_HEADERS]) for row in rows]
    elif report.enough_history:
        lines.append(f"No change of {threshold:.0%} or more with confidence {confidence} or more.")
    else:
        lines.append("None found: no series has the runs to be checked yet.")
    # Change points big enough but not yet significant: usually a step in the last few runs, which the next
    # nights confirm or dismiss. Smaller ones are noise the penalty let through and only clutter the page.
    watch = [entry for entry in report.unconfirmed if abs(entry.change.relative) >= threshold]
    if watch:
        lines += ["", "## Watch list (not yet significant)", ""]
        for entry in watch:
            change = entry.change
            lines.append(f"- {change.metric} · {change.combination} · {change.series_key.hardware}: "
                         f"{_signed(change.relative)} at `{change.run_id}` ({entry.reason})")  # fmt: skip
    lines += ["", "## Series splits", ""]
    lines += [f"- {split.message}" for split in report.splits] or ["None: every run on the same hardware and kernel."]
    lines += ["", "## Runs skipped", ""]
    lines += [f"- `{skip.run_id}`: {skip.reason}" for skip in report.skipped] or ["None."]
    lines += ["", "## Series", "", _row(["series", "runs", "noise (per-run mean)", "change points", "note"])]
    lines.append(_row(["---"] * 5))
    for check in report.series:
        noise = "" if check.noise is None else f"{check.noise:.4g}"
        lines.append(_row([_cell(check.key.label()), str(check.runs), noise, str(check.change_points), check.note]))
    if figures:
        plotted = [(metric, path) for metric, path in figures.items() if metric in parameters.get("metrics", [])]
        missing = [metric for metric in parameters.get("metrics", []) if metric not in figures]
        lines += ["", "## Plots", ""]
        lines += [f"![{metric}]({path.name})" for metric, path in plotted]
        if missing:
            lines.append(f"No data for {', '.join(missing)} in any run: no figure.")
    return "\n".join(lines) + "\n"


def _row(cells: Sequence[str]) -> str:
    return "| " + " | ".join(cells) + " |"


def _cell(text: str) -> str:
    return text.replace("|", "\\|")


def _sentence(text: str) -> str:
    return text[:1].upper() + text[1:]


def _signed(value: float) -> str:
    return f"{value:+.1%}" if math.isfinite(value) else str(value)


# --- figures ----------------------------------------------------------------------------------------------------


def metric_figure(metric: str, series: Sequence[Series], report: Report, history: Sequence[RunSummary]) -> Figure:
    """History of one metric: a panel per combination, a colour per (hardware, kernel configuration) series,
    repetitions as dots, the per-run mean as a line, changes and series splits as vertical lines."""
    combinations = sorted({one.key.combination for one in series})
    groups = sorted({(one.key.hardware, one.key.kernel_config or "") for one in series})
    colours = {group: f"C{index % 10}" for index, group in enumerate(groups)}
    figure = Figure(figsize=(11, 2.6 * len(combinations) + 0.8))
    FigureCanvasAgg(figure)
    figure.subplots_adjust(left=0.09, right=0.98, top=1 - 0.45 / (2.6 * len(combinations) + 0.8),
                           bottom=0.55 / (2.6 * len(combinations) + 0.8) + 0.02, hspace=0.35)  # fmt: skip
    axes_list = figure.subplots(len(combinations), 1, sharex=True, squeeze=False)[:, 0]
    unit = f" ({UNITS[metric]})" if metric in UNITS else ""
    figure.suptitle(f"{metric}{unit} per run{': ' + report.playbook if report.playbook else ''}")
    for axes, combination in zip(axes_list, combinations, strict=True):
        for one in (one for one in series if one.key.combination == combination):
            colour = colours[(one.key.hardware, one.key.kernel_config or "")]
            label = f"{one.key.hardware} · config {(one.key.kernel_config or 'unknown')[:8]}"
            xs, ys = [], []
            for position, values in zip(one.positions, one.samples, strict=True):
                count = len(values)
                # A small spread in x keeps repetitions of one run apart without leaving the run's column.
                xs += [position + 0.25 * (index - (count - 1) / 2) / max(count, 1) for index in range(count)]
                ys += list(values)
            axes.scatter(xs, ys, s=9, color=colour, alpha=0.45, linewidths=0)
            axes.plot(one.positions, one.means, color=colour, linewidth=1.3, marker="o", markersize=3, label=label)
            for change in report.changes:
                if change.series_key == one.key:
                    _mark_change(axes, change)
        for split in report.splits:
            axes.axvline(split.position - 0.5, color="grey", linestyle=":", linewidth=1)
            if axes is axes_list[0]:
                # Named once, on the top panel: the same split cuts every panel.
                axes.annotate(f"{split.what}: {_short(split.before)} → {_short(split.after)}",
                              xy=(split.position - 0.5, 1.0), xycoords=("data", "axes fraction"), xytext=(3, 2),
                              textcoords="offset points", fontsize=7, color="grey")  # fmt: skip
        _least_span(axes, float(report.parameters.get("threshold", 0.05)))
        axes.set_title(combination, fontsize=9, loc="left")
        axes.set_ylabel(UNITS.get(metric, metric), fontsize=8)
        axes.tick_params(labelsize=7)
        axes.grid(alpha=0.3)
        axes.legend(fontsize=7, loc="best")
    _time_axis(axes_list[-1], history)
    return figure


def _least_span(axes: Axes, threshold: float) -> None:
    """Widen a y axis narrower than +-``threshold`` of its level to exactly that, around the same centre.

    Autoscaling fits the data, so a metric equal in every run up to float rounding (p50 at 1e-5 ns) would fill
    the panel with a zigzag of noise. The threshold is the smallest change the report cares about: a change
    that size still shows, and a flat series looks flat."""
    low, high = axes.get_ylim()
    centre = (low + high) / 2
    half = max(threshold * abs(centre), ZERO_HALF_SPAN)
    if high - low < 2 * half:
        axes.set_ylim(centre - half, centre + half)


def _short(value: str | None) -> str:
    # Kernel configurations are sha256 sums: 8 characters tell them apart on a figure.
    return "unknown" if not value else (value[:8] if len(value) == 64 else value)


def _mark_change(axes: Axes, change: Change) -> None:
    colour = KIND_COLOUR[change.kind]
    axes.axvline(change.position - 0.5, color=colour, linewidth=1.5, linestyle="--")
    axes.annotate(
        f"{_signed(change.relative)} {change.kind}\n{change.before:.4g} → {change.after:.4g}",
        xy=(change.position - 0.5, 0.97), xycoords=("data", "axes fraction"), xytext=(4, 0),
        textcoords="offset points", ha="left", va="top", fontsize=7, color=colour,
    )  # fmt: skip


def _time_axis(axes: Axes, history: Sequence[RunSummary]) -> None:
    """Run positions labelled with their dates, at most about 12 ticks so labels stay readable."""
    if not history:
        return
    step = max(1, math.ceil(len(history) / 12))
    ticks = list(range(0, len(history), step))
    axes.set_xticks(ticks)
    axes.set_xticklabels([history[index].created_at[:10] for index in ticks], rotation=30, ha="right", fontsize=7)
    axes.set_xlabel("run (created at)", fontsize=8)

"""Figures of a run's bench results, as PNG files (matplotlib's Agg renderer, no display needed): one per metric
of any workload, and for statx-bench results its own view (latency distributions, throughput, eBPF on vs off).

Figures are built on ``matplotlib.figure.Figure`` directly, not through ``pyplot``: no global figure registry,
no backend to select, nothing left open after an exception, and safe to call from any thread.
Every function skips results that lack what it draws (logged, and listed by ``load_results``) and still
writes a figure with what remains.
"""

from __future__ import annotations

import io
from collections.abc import Mapping, Sequence
from pathlib import Path

from matplotlib.axes import Axes
from matplotlib.backends.backend_agg import FigureCanvasAgg
from matplotlib.figure import Figure
from matplotlib.ticker import EngFormatter, NullFormatter

from g5kdeploy.collect.data import BenchResult, Spread, group, merge_buckets, metric_names, parameter_names, spread
from g5kdeploy.files import atomic_write_bytes
from g5kdeploy.log import get_logger
from g5kdeploy.playbook import Combination, Value, slug

log = get_logger(__name__)
DPI = 110
EBPF_STYLE = {"off": "-", "on": "--"}
EBPF_COLOUR = {"off": "tab:blue", "on": "tab:red"}
#: Figures of a workload's metrics at most: a JSON output without named metrics can give hundreds.
MAX_METRIC_PLOTS = 8
ERROR_BARS = "mean over repetitions and nodes, min-max"

__all__ = ["metric_figure", "plot_ebpf", "plot_latency", "plot_metrics", "plot_run", "plot_throughput"]


def plot_run(results: Sequence[BenchResult], out_dir: Path) -> list[Path]:
    """Every figure of a run: statx-bench's own where its results are, then one per metric of the workload."""
    written: list[Path] = []
    if statx := [result for result in results if result.statx]:
        written += [*plot_latency(statx, out_dir), plot_throughput(statx, out_dir)]
        if (ebpf := plot_ebpf(statx, out_dir)) is not None:
            written.append(ebpf)
    return [*written, *plot_metrics(results, out_dir)]


def plot_metrics(loaded: Sequence[BenchResult], out_dir: Path) -> list[Path]:
    """A figure per metric of the workload (the first :data:`MAX_METRIC_PLOTS`, in the parser's order).

    Against the first numeric parameter when the sweep has one (its values on the x axis, a line per
    combination of the other parameters: how the metric scales), else a bar per combination. Each point is the
    mean over repetitions and nodes, the error bar their min-max.
    """
    results = [result for result in loaded if result.metrics]
    metrics = metric_names(results)
    if len(metrics) > MAX_METRIC_PLOTS:
        log.info("metric figures capped", drawn=metrics[:MAX_METRIC_PLOTS], left_out=metrics[MAX_METRIC_PLOTS:])
    names: set[str] = set()
    written: list[Path] = []
    for metric in metrics[:MAX_METRIC_PLOTS]:
        figure = metric_figure(metric, results)
        # Metric names can be JSON paths or CSV columns: file names keep their letters and digits, and stay distinct.
        name = f"metric-{slug(metric)}"
        while name in names:
            name = f"{name}-{len(names)}"
        names.add(name)
        written.append(_save(figure, out_dir / f"{name}.png"))
    return written


def metric_figure(metric: str, results: Sequence[BenchResult]) -> Figure:
    """One metric: lines along the first numeric parameter, else a bar per combination (see :func:`plot_metrics`)."""
    members = [result for result in results if metric in result.metrics]
    axis = _numeric_parameter(members)
    return _metric_lines(metric, members, axis) if axis else _metric_bars(metric, members)


def _numeric_parameter(results: Sequence[BenchResult]) -> str | None:
    """The first parameter (in the playbook's order) that every result has, each time a number."""
    for name in parameter_names(results):
        values = [result.parameters.get(name) for result in results]
        if all(isinstance(value, int | float) and not isinstance(value, bool) for value in values):
            return name
    return None


def _metric_lines(metric: str, results: Sequence[BenchResult], axis: str) -> Figure:
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.subplots()
    xs = sorted({result.parameters[axis] for result in results}, key=float)
    lines: dict[str, dict[Value, list[BenchResult]]] = {}
    for result in results:
        line = lines.setdefault(_without(result, axis) or metric, {})
        line.setdefault(result.parameters[axis], []).append(result)
    for index, (label, by_x) in enumerate(lines.items()):
        points = {value: spread(result.metrics[metric] for result in rows) for value, rows in by_x.items()}
        _errorbar(axes, xs, points, index, len(lines), label=label, colour=f"C{index % 10}")
    axes.set_xticks(range(len(xs)), [str(value) for value in xs])
    axes.set_xlabel(axis)
    axes.set_ylabel(f"{metric}\n({ERROR_BARS})")
    axes.grid(True, axis="y", alpha=0.3)
    if len(lines) > 1:
        axes.legend(fontsize=8)
    axes.set_title(f"{metric} by {axis}")
    return figure


def _metric_bars(metric: str, results: Sequence[BenchResult]) -> Figure:
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.subplots()
    bars = [(label, spread(result.metrics[metric] for result in members))
            for (label,), members in group(results, "label").items()]  # fmt: skip
    points = [(label, point) for label, point in bars if point is not None]
    axes.bar(
        range(len(points)),
        [point.mean for _, point in points],
        yerr=[[point.mean - point.low for _, point in points], [point.high - point.mean for _, point in points]],
        capsize=4,
        color="C0",
    )
    axes.set_xticks(range(len(points)), [label for label, _ in points], rotation=30 if len(points) > 3 else 0,
                    ha="right" if len(points) > 3 else "center", fontsize=8)  # fmt: skip
    axes.set_ylabel(f"{metric}\n({ERROR_BARS})")
    axes.grid(True, axis="y", alpha=0.3)
    axes.set_title(f"{metric} per combination")
    return figure


def _without(result: BenchResult, name: str) -> str:
    """The result's combination label without one parameter: the line it belongs to in a figure along ``name``."""
    others = tuple((key, value) for key, value in result.parameters.items() if key != name)
    return Combination(others, result.repetition).label if others else ""


def plot_latency(loaded: Sequence[BenchResult], out_dir: Path) -> list[Path]:
    """One figure per thread count: the latency distribution of every (node, eBPF state), from the histograms.

    Why this cut: the question of the experiment is what the eBPF override costs a ``statx(2)`` call, and a
    fair comparison holds the contention (thread count) and the machine fixed. So each figure is one thread
    count; in it a colour is a node and the line style the eBPF state (solid off, dashed on), and the
    repetitions of a pair are summed, since they are draws of the same distribution (their spread is what
    the eBPF and throughput figures show). Two panels, both with a log latency axis because syscall latency
    spans from about a microsecond to milliseconds of preemption: the CDF shows the body (median shift), the
    complementary CDF on a log scale shows the tail (p99, p99.9), where interference from a probe shows first
    and which a CDF squeezes against 1. A node whose curve stands apart from its siblings is a noisy node,
    which per-combination averages would hide.
    """
    results = [result for result in loaded if result.buckets]
    written: list[Path] = []
    for (threads,), members in group(results, "threads").items():
        figure = Figure(figsize=(11, 4.8))
        # Fixed margins rather than the constrained layout, which measures every tick label of two log axes
        # and doubles the rendering time.
        figure.subplots_adjust(left=0.07, right=0.98, bottom=0.11, top=0.87, wspace=0.22)
        body, tail = figure.subplots(1, 2)
        nodes = sorted({result.node for result in members})
        colours = {node: f"C{index % 10}" for index, node in enumerate(nodes)}
        body_end = 0.0
        for (node, ebpf), series in group(members, "node", "ebpf").items():
            xs, cdf = _cdf(merge_buckets(series))
            label = f"{_short(node)} · eBPF {ebpf} · {len(series)} rep."
            style = EBPF_STYLE.get(ebpf, ":")
            # The body panel stops past the slowest p99.9, else rare ms-long preemptions squeeze it to a wall.
            body_end = max(body_end, next(x for x, share in zip(xs, cdf, strict=True) if share >= 0.999))
            body.step(xs, cdf, where="post", color=colours[node], linestyle=style, label=label)
            # The last point of a CCDF is 0, which a log axis cannot show; it ends at the slowest bucket.
            tail.step(xs[:-1], [1 - value for value in cdf[:-1]], where="post", color=colours[node], linestyle=style)
        for axes in (body, tail):
            axes.set_xscale("log")
            axes.set_xlabel("statx latency (ns, log)")
            axes.grid(True, which="major", alpha=0.3)
            # Unlabelled minor ticks: labels on every minor tick of a log axis are unreadable, and measuring
            # them dominates the rendering time.
            axes.xaxis.set_minor_formatter(NullFormatter())
        body.set_ylabel("fraction of calls ≤ x (CDF)")
        body.set_ylim(0, 1.01)
        body.set_xlim(right=body_end * 2)
        body.set_title("body (up to past p99.9)", fontsize=9)
        tail.set_title("tail", fontsize=9)
        tail.set_yscale("log")
        tail.yaxis.set_minor_formatter(NullFormatter())
        tail.set_ylabel("fraction of calls > x (CCDF, log)")
        for level, name in ((1e-2, "p99"), (1e-3, "p99.9")):
            tail.axhline(level, color="grey", linewidth=0.8, linestyle=":")
            tail.annotate(name, (1, level), xycoords=("axes fraction", "data"), ha="right", va="bottom", fontsize=8)
        body.legend(fontsize=8, loc="lower right")
        figure.suptitle(f"statx latency distribution, {threads} thread{'s' if threads != 1 else ''}")
        written.append(_save(figure, out_dir / f"latency-threads-{threads}.png"))
    if not written:
        log.warning("no histograms to plot: no latency figure", out=str(out_dir))
    return written


def plot_ebpf(loaded: Sequence[BenchResult], out_dir: Path) -> Path | None:
    """eBPF on against off: p50 and p99 per thread count, per path; None unless both states have results.

    A colour is a path (each benchmarked path has its own figures; results without them are drawn as one
    series for all paths), the line style the eBPF state (solid off, dashed on): on the ordinary path the gap
    between the two is the probe's cost, on the override's target the dashed line is the overridden call. Each
    point is the mean over repetitions and nodes (all draws of the same condition), the error bar their
    min-max, so an overlap between on and off says the difference is within run-to-run noise.
    """
    results = [result for result in loaded if result.latency_ns and result.threads]
    states = sorted({result.ebpf for result in results})
    if len(states) < 2:
        log.info("eBPF comparison left out: results for one eBPF state only", states=states)
        return None
    paths = list(dict.fromkeys(entry.path for result in results for entry in result.paths if entry.latency_ns))
    figure = Figure(figsize=(11 if paths else 10, 4.6), layout="constrained")
    panels = figure.subplots(1, 2)
    threads = sorted({result.threads or 0 for result in results})
    drawn: list[str | None] = [*paths] or [None]
    series = [(path, state) for path in drawn for state in states]
    for axes, name in zip(panels, ("p50", "p99"), strict=True):
        for index, (path, state) in enumerate(series):
            points = {
                key[0]: spread(_latency(result, path, name) for result in members)
                for key, members in group([r for r in results if r.ebpf == state], "threads").items()
            }
            colour = f"C{paths.index(path) % 10}" if path is not None else EBPF_COLOUR.get(state, f"C{index + 2}")
            _errorbar(axes, threads, points, index, len(series), label=f"{path or 'all paths'} · eBPF {state}",
                      colour=colour, linestyle=EBPF_STYLE.get(state, ":"))  # fmt: skip
        axes.set_title(f"{name} latency")
        axes.set_ylabel("ns (mean over repetitions and nodes, min-max)")
        axes.set_ylim(bottom=0)
        _thread_axis(axes, threads)
        axes.legend(fontsize=8)
    figure.suptitle("statx latency per path, eBPF override on vs off")
    return _save(figure, out_dir / "ebpf.png")


def _latency(result: BenchResult, path: str | None, name: str) -> float | None:
    """One latency figure of a result: of one path, or of all its calls when ``path`` is None."""
    if path is None:
        return result.percentile(name)
    entry = result.path_result(path)
    return entry.percentile(name) if entry else None


def plot_throughput(loaded: Sequence[BenchResult], out_dir: Path) -> Path:
    """Calls/s per thread count, one series per (node, eBPF state): mean over repetitions, min-max bars.

    Per node rather than summed, so a node that scales differently from its siblings stands out. With no
    result at all the figure says so instead of being absent, so a report always has its throughput slot.
    """
    results = [result for result in loaded if result.calls_per_s is not None and result.threads]
    figure = Figure(figsize=(8, 4.5), layout="constrained")
    axes = figure.subplots()
    threads = sorted({result.threads or 0 for result in results})
    series = group(results, "node", "ebpf")
    for index, ((node, ebpf), members) in enumerate(series.items()):
        points = {key[0]: spread(r.calls_per_s for r in rows) for key, rows in group(members, "threads").items()}
        _errorbar(axes, threads, points, index, len(series), label=f"{_short(node)} · eBPF {ebpf}",
                  colour=f"C{index % 10}", linestyle=EBPF_STYLE.get(ebpf, ":"))  # fmt: skip
    if results:
        _thread_axis(axes, threads)
        axes.legend(fontsize=8)
    else:
        axes.text(0.5, 0.5, "no finished bench results", ha="center", va="center", transform=axes.transAxes)
    axes.yaxis.set_major_formatter(EngFormatter())
    axes.set_ylabel("statx calls/s per node (mean over repetitions, min-max)")
    axes.set_ylim(bottom=0)
    axes.set_title("statx throughput")
    return _save(figure, out_dir / "throughput.png")


def _cdf(buckets: Sequence[tuple[int, int, int]]) -> tuple[list[float], list[float]]:
    """Step points of the CDF: 0 at the lowest bucket's start, then the cumulative share at each upper bound."""
    total = sum(count for _, _, count in buckets)
    xs, ys, seen = [float(buckets[0][0])], [0.0], 0
    for _, hi, count in buckets:
        seen += count
        xs.append(float(hi))
        ys.append(seen / total)
    return xs, ys


def _errorbar(
    axes: Axes,
    positions: Sequence[Value],
    points: Mapping[Value, Spread | None],
    index: int,
    count: int,
    *,
    label: str,
    colour: str,
    linestyle: str = "-",
) -> None:
    """One series at categorical positions (thread counts, a parameter's values), nudged sideways so the error
    bars of series do not overlap."""
    xs, means, below, above = [], [], [], []
    for position, value in enumerate(positions):
        point = points.get(value)
        if point is None:
            continue
        xs.append(position + (index - (count - 1) / 2) * 0.08)
        means.append(point.mean)
        below.append(point.mean - point.low)
        above.append(point.high - point.mean)
    if xs:
        axes.errorbar(xs, means, yerr=[below, above], marker="o", capsize=4, color=colour, linestyle=linestyle,
                      label=label)  # fmt: skip


def _thread_axis(axes: Axes, threads: list[int]) -> None:
    # Categorical: thread counts are usually 1, 2, 4, ... and equal spacing reads better than a linear axis.
    axes.set_xticks(range(len(threads)), [str(value) for value in threads])
    axes.set_xlabel("threads per node")
    axes.grid(True, axis="y", alpha=0.3)


def _short(node: str) -> str:
    """``gros-12`` for ``gros-12.nancy.grid5000.fr``: the site is in the report, the legend stays readable."""
    return node.split(".", 1)[0]


def _save(figure: Figure, path: Path) -> Path:
    FigureCanvasAgg(figure)
    buffer = io.BytesIO()
    figure.savefig(buffer, format="png", dpi=DPI)
    atomic_write_bytes(path, buffer.getvalue())
    return path

"""The report and plots of a workload other than statx-bench (a regex and a csv workload, results as the bench
phase writes them): a results table per combination and a figure per metric, without the statx view."""

from __future__ import annotations

import json
import re
from pathlib import Path

from structlog.testing import capture_logs

from g5kdeploy.collect import load_results, write_report
from g5kdeploy.collect.plots import MAX_METRIC_PLOTS, metric_figure, plot_run
from g5kdeploy.collect.report import DASH, TIMES
from g5kdeploy.playbook import STATX_METRICS
from tests.collect.conftest import assert_png
from tests.collect.runs import NODES, make_run, make_workload_run

STATX_SECTIONS = ("Key numbers", "eBPF on vs off", "Probe overhead", "Override proof")


def _sections(text: str) -> dict[str, str]:
    return {match[1]: match[2] for match in re.finditer(r"^## ([^\n]+)\n(.*?)(?=^## |\Z)", text, re.M | re.S)}


def _rows(section: str) -> list[list[str]]:
    lines = [line for line in section.splitlines() if line.startswith("|")]
    return [[cell.strip() for cell in line.strip("|").split(" | ")] for line in lines[2:]]


def test_a_regex_workload_gets_a_results_table_and_no_statx_sections(tmp_path):
    run_dir = make_workload_run(tmp_path)
    markdown, _ = write_report(run_dir, plots=[], exports={}, node_facts={})
    sections = _sections(markdown.read_text())
    assert not set(STATX_SECTIONS) & set(sections), list(sections)
    results = sections["Results"]
    assert "No finished bench results" not in results
    header = next(line for line in results.splitlines() if line.startswith("| threads"))
    assert header == "| threads | block | repetitions | nodes | ops_per_s | latency_ms |"
    rows = _rows(results)
    # The playbook's sweep order; threads 4 with 64k blocks is excluded, so it has no row.
    assert [row[:4] for row in rows] == [["1", "4k", "2", "2"], ["1", "64k", "2", "2"], ["2", "4k", "2", "2"],
                                         ["2", "64k", "2", "2"], ["4", "4k", "2", "2"]]  # fmt: skip
    # 1,000,000 ops/s per thread with 4k blocks, + 1000 on the second node, + 100 a repetition.
    assert rows[0][4:] == [f"1,000,650 (1,000,100{DASH}1,001,200)", f"0.505 (0.5{DASH}0.51)"]
    assert rows[4][4:] == [f"4,000,650 (4,000,100{DASH}4,001,200)", f"2.005 (2{DASH}2.01)"]
    what = sections["What ran"]
    assert (
        "sysbench memory --threads={threads}" in what
        and f"threads 1, 2, 4 {TIMES} block 4k, 64k {TIMES} 2 repetitions" in what
    )
    assert sections["Skipped or missing"].strip() == "Nothing: every pair ran."


def test_a_metric_some_results_lack_is_marked_with_its_count(tmp_path):
    run_dir = make_workload_run(tmp_path)
    path = run_dir / "bench" / "threads-2_block-4k_rep-1" / f"{NODES[1]}.json"
    document = json.loads(path.read_text())
    del document["metrics"]["latency_ms"]
    path.write_text(json.dumps(document))
    markdown, _ = write_report(run_dir, plots=[], exports={}, node_facts={})
    row = next(row for row in _rows(_sections(markdown.read_text())["Results"]) if row[:2] == ["2", "4k"])
    assert row[5] == f"1.003 (1{DASH}1.01), 3 of 4"


def test_many_metrics_give_a_row_per_metric(tmp_path):
    names = [f"m{index}_per_s" for index in range(8)]
    run_dir = make_workload_run(
        tmp_path,
        {"command": "bench --json", "output": "json"},
        {},
        metrics=lambda _values, node, repetition: {name: 10.0 * index + node for index, name in enumerate(names)},
        exclude=[],
    )
    markdown, _ = write_report(run_dir, plots=[], exports={}, node_facts={})
    results = _sections(markdown.read_text())["Results"]
    assert "| repetitions | nodes | metric | mean (min-max) |" in results
    rows = _rows(results)
    assert [row[2] for row in rows] == names
    assert rows[1] == ["2", "2", "m1_per_s", f"10.5 (10{DASH}11)"]


def test_a_metric_is_drawn_along_the_first_numeric_parameter_a_line_per_other_combination(tmp_path):
    results = load_results(make_workload_run(tmp_path))
    [axes] = metric_figure("ops_per_s", results).axes
    assert axes.get_xlabel() == "threads"
    assert [label.get_text() for label in axes.get_xticklabels()] == ["1", "2", "4"]
    assert [text.get_text() for text in axes.get_legend().get_texts()] == ["block=4k", "block=64k"]
    lines = {container.get_label(): container for container in axes.containers}
    small, large = lines["block=4k"], lines["block=64k"]
    assert list(small.lines[0].get_ydata()) == [1_000_650, 2_000_650, 4_000_650]
    # 64k blocks at 4 threads are excluded: that line stops at 2 threads.
    assert list(large.lines[0].get_ydata()) == [250_650, 500_650]
    # Error bars span the results' min-max (two nodes, two repetitions).
    [bars] = small.lines[2]
    spans = [(segment[0][1], segment[1][1]) for segment in bars.get_segments()]
    assert spans == [(1_000_100, 1_001_200), (2_000_100, 2_001_200), (4_000_100, 4_001_200)]


def test_without_a_numeric_parameter_a_metric_is_a_bar_per_combination(tmp_path):
    run_dir = make_workload_run(
        tmp_path,
        {"command": "fio --rw={mode} --output-format=terse", "output": "csv", "metrics": {"bw_kib_per_s": "bw"}},
        {"mode": ["read", "write"]},
        metrics=lambda values, node, repetition: {
            "bw_kib_per_s": (900.0 if values["mode"] == "read" else 300.0) + node + repetition
        },
        exclude=[],
    )
    [axes] = metric_figure("bw_kib_per_s", load_results(run_dir)).axes
    assert [label.get_text() for label in axes.get_xticklabels()] == ["mode=read", "mode=write"]
    assert [patch.get_height() for patch in axes.patches] == [902.0, 302.0]
    assert axes.get_title() == "bw_kib_per_s per combination"


def test_plots_of_a_workload_are_its_metrics_only(tmp_path):
    run_dir = make_workload_run(tmp_path)
    written = plot_run(load_results(run_dir), tmp_path / "plots")
    assert [path.name for path in written] == ["metric-ops-per-s.png", "metric-latency-ms.png"]
    for path in written:
        assert_png(path)


def test_a_statx_run_keeps_its_figures_and_metric_figures_are_capped(tmp_path):
    results = load_results(make_run(tmp_path))
    with capture_logs() as logs:
        written = plot_run(results, tmp_path / "plots")
    names = [path.name for path in written]
    assert names[:4] == ["latency-threads-1.png", "latency-threads-2.png", "throughput.png", "ebpf.png"]
    drawn = list(STATX_METRICS)[:MAX_METRIC_PLOTS]
    assert names[4:] == [f"metric-{name.replace('_', '-')}.png" for name in drawn]
    [capped] = [entry for entry in logs if entry["event"] == "metric figures capped"]
    assert capped["left_out"] == list(STATX_METRICS)[MAX_METRIC_PLOTS:] == ["p999_ns", "max_ns"]


def test_results_of_the_statx_only_bench_still_read_with_their_metrics(tmp_path):
    # Before workloads, a result named threads and ebpf in its combination and had no metrics: the statx
    # playbooks' metrics are read from its statx-bench JSON, so a history spans the change.
    run_dir = make_run(tmp_path)
    for path in (run_dir / "bench").glob("*/*.json"):
        document = json.loads(path.read_text())
        combination = document["combination"]
        document["combination"] = {**combination.pop("parameters"), **combination}
        del document["metrics"], document["command"], document["output_tail"]
        path.write_text(json.dumps(document))
    first = load_results(run_dir)[0]
    assert first.label == "threads=1 ebpf=off" and first.statx
    assert first.metrics["p50_ns"] == first.latency_ns["p50"] == 1504.0
    assert set(first.metrics) == set(STATX_METRICS)
    assert _sections(write_report(run_dir, plots=[], exports={}, node_facts={})[0].read_text())["Results"]


def test_report_plots_section_lists_the_metric_figures(tmp_path):
    run_dir = make_workload_run(tmp_path)
    plots = plot_run(load_results(run_dir), run_dir / "plots")
    markdown, page = write_report(run_dir, plots=plots, exports={}, node_facts={})
    assert "](plots/metric-ops-per-s.png)" in markdown.read_text()
    assert 'src="plots/metric-latency-ms.png"' in page.read_text()
    assert Path(run_dir / "plots" / "metric-ops-per-s.png").is_file()

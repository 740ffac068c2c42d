from __future__ import annotations

import json
import shutil

from g5kdeploy.collect import load_results
from g5kdeploy.collect.plots import plot_ebpf, plot_latency, plot_throughput
from tests.collect.conftest import assert_png
from tests.collect.runs import NODES, make_run


def test_load_results_reads_every_pair_in_order(run_dir):
    problems: list[str] = []
    results = load_results(run_dir, problems)
    assert problems == []
    assert len(results) == 16
    assert [(r.threads, r.ebpf, r.repetition) for r in results[:3]] == [(1, "off", 1), (1, "off", 1), (1, "off", 2)]
    first = results[0]
    assert first.node == NODES[0] and first.key == "threads-1_ebpf-off_rep-1"
    assert first.latency_ns["p50"] == 1504.0
    assert abs(sum(count for _, _, count in first.buckets) - 20_000) < 200


def test_every_plot_writes_a_png(run_dir, tmp_path):
    out = tmp_path / "plots"
    latency = plot_latency(load_results(run_dir), out)
    assert [path.name for path in latency] == ["latency-threads-1.png", "latency-threads-2.png"]
    ebpf = plot_ebpf(load_results(run_dir), out)
    assert ebpf is not None
    throughput = plot_throughput(load_results(run_dir), out)
    for path in [*latency, ebpf, throughput]:
        assert_png(path)
    # Atomic writes leave no temporaries behind.
    assert sorted(p.name for p in out.iterdir()) == sorted(p.name for p in [*latency, ebpf, throughput])


def test_ebpf_plot_is_none_with_one_state(tmp_path):
    run_dir = make_run(tmp_path, ebpf=("off",), skipped=("on",))
    assert plot_ebpf(load_results(run_dir), tmp_path / "plots") is None
    assert_png(plot_throughput(load_results(run_dir), tmp_path / "plots"))


def test_partial_results_are_skipped_not_fatal(run_dir, tmp_path):
    bench = run_dir / "bench"
    (bench / "threads-1_ebpf-off_rep-1" / f"{NODES[0]}.json").write_text('{"run_id": "cut short')
    lacking = bench / "threads-2_ebpf-on_rep-2" / f"{NODES[1]}.json"
    document = json.loads(lacking.read_text())
    del document["result"]["histogram"], document["result"]["latency_ns"], document["result"]["calls_per_s"]
    lacking.write_text(json.dumps(document))
    (bench / "threads-2_ebpf-on_rep-1" / f"{NODES[0]}.json").write_text('{"combination": {}, "result": {}}')
    (bench / "threads-2_ebpf-on_rep-1" / f"{NODES[1]}.json").write_text("[1, 2]")
    problems: list[str] = []
    assert len(load_results(run_dir, problems)) == 13
    assert any("threads-1_ebpf-off_rep-1" in problem and "unreadable" in problem for problem in problems)
    assert any("threads-2_ebpf-on_rep-2" in problem and "histogram" in problem for problem in problems)
    out = tmp_path / "plots"
    for path in [
        *plot_latency(load_results(run_dir), out),
        plot_ebpf(load_results(run_dir), out),
        plot_throughput(load_results(run_dir), out),
    ]:
        assert path is not None
        assert_png(path)


def test_no_results_at_all(tmp_path):
    empty = tmp_path / "run"
    empty.mkdir()
    problems: list[str] = []
    assert load_results(empty, problems) == []
    assert problems and "bench" in problems[0]
    assert plot_latency(load_results(empty), tmp_path / "plots") == []
    assert plot_ebpf(load_results(empty), tmp_path / "plots") is None
    # The throughput slot of a report is always filled: a figure saying there is nothing.
    assert_png(plot_throughput(load_results(empty), tmp_path / "plots"), min_bytes=1_000)


def test_only_the_current_sweep_is_read(run_dir):
    shutil.copytree(run_dir / "bench", run_dir / "bench-before-redo-20261127T160000Z")
    assert len(load_results(run_dir)) == 16

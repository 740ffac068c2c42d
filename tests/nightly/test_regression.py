"""Regression detection on synthetic histories written as real run directories (see ``synthetic``): 2 %
gaussian noise on every value, two nodes, three repetitions, fixed seeds."""

from __future__ import annotations

import json

import numpy as np
import pytest

from g5kdeploy.nightly.history import build_series, load_history, read_override_total
from g5kdeploy.nightly.nightly_report import write_nightly
from g5kdeploy.nightly.regression import EXIT_OK, EXIT_REGRESSION, ROW_HEADERS, detect
from g5kdeploy.results import RunStore
from tests.nightly.synthetic import CONFIG_B, PLAYBOOK, write_history, write_run

ALL = ("p50_ns", "p99_ns", "calls_per_s", "override_total")


def test_a_ten_percent_step_in_p50_is_found_at_its_first_run(tmp_path):
    # 20 runs at the base level, then 10 runs with p50 10 % slower in one combination only.
    ids = write_history(tmp_path, 30, seed=11, scale_from={21: {("p50_ns", 2, "on"): 1.10}})
    history = load_history(tmp_path, PLAYBOOK)
    assert [summary.run_id for summary in history] == ids
    report = detect(history, metrics=ALL)
    assert len(report.changes) == 1, report.to_json()
    change = report.changes[0]
    assert change.run_id == ids[20] and change.previous_run_id == ids[19]
    assert (change.metric, change.combination, change.kind) == ("p50_ns", "threads=2 ebpf=on", "regression")
    assert change.relative == pytest.approx(0.10, abs=0.015)
    assert change.confidence >= 0.99
    assert (change.runs_before, change.runs_after) == (20, 10)
    assert report.exit_code == EXIT_REGRESSION == 3
    rows = report.rows()
    assert len(rows) == 1 and set(rows[0]) == set(ROW_HEADERS) and rows[0]["relative"].startswith("+")
    assert json.loads(report.to_json())["changes"][0]["run_id"] == ids[20]


@pytest.mark.parametrize("seed", [1, 2, 3, 4, 5])
def test_pure_noise_reports_nothing(tmp_path, seed):
    write_history(tmp_path, 40, seed=seed)
    report = detect(load_history(tmp_path, PLAYBOOK), metrics=ALL)
    assert report.changes == [], report.to_json()
    assert report.exit_code == EXIT_OK
    assert all(check.checked for check in report.series) and len(report.series) == 13


def test_improvements_are_reported_but_do_not_fail(tmp_path):
    ids = write_history(
        tmp_path, 26, seed=21, scale_from={17: {("calls_per_s", 1, "off"): 1.10, ("p99_ns", 2, "off"): 0.90}}
    )
    report = detect(load_history(tmp_path, PLAYBOOK), metrics=ALL)
    found = {(change.metric, change.combination): change for change in report.changes}
    assert set(found) == {("calls_per_s", "threads=1 ebpf=off"), ("p99_ns", "threads=2 ebpf=off")}, report.to_json()
    assert {change.kind for change in found.values()} == {"improvement"}
    assert {change.run_id for change in found.values()} == {ids[16]}
    assert found["calls_per_s", "threads=1 ebpf=off"].relative == pytest.approx(0.10, abs=0.02)
    assert found["p99_ns", "threads=2 ebpf=off"].relative == pytest.approx(-0.10, abs=0.02)
    assert report.exit_code == EXIT_OK


def test_throughput_drop_and_fewer_overrides_are_regressions(tmp_path):
    ids = write_history(tmp_path, 24, seed=5, scale_from={13: {("calls_per_s", 2, "on"): 0.85, "override_total": 0.5}})
    report = detect(load_history(tmp_path, PLAYBOOK), metrics=ALL)
    found = {(change.metric, change.combination): change for change in report.changes}
    assert set(found) == {("calls_per_s", "threads=2 ebpf=on"), ("override_total", "run")}, report.to_json()
    assert all(change.kind == "regression" and change.run_id == ids[12] for change in found.values())
    assert found["override_total", "run"].relative == pytest.approx(-0.5, abs=0.03)
    assert report.exit_code == EXIT_REGRESSION


def test_a_cluster_change_splits_the_series_instead_of_raising_a_change(tmp_path):
    # grisou is 30 % slower and 20 % less productive: within one series this would be a huge "regression".
    slower = {"p50_ns": 1.3, "p99_ns": 1.3, "calls_per_s": 0.8, "override_total": 0.7}
    ids = write_history(tmp_path, 30, seed=3, scale_from={16: slower}, cluster_from={16: "grisou"})
    history = load_history(tmp_path, PLAYBOOK)
    assert [summary.hardware for summary in history] == ["gros"] * 15 + ["grisou"] * 15
    report = detect(history, metrics=ALL)
    assert report.changes == [], report.to_json()
    assert report.exit_code == EXIT_OK
    series = build_series(history, ["p50_ns"])
    assert len(series) == 8  # 4 combinations x 2 clusters
    assert {tuple(one.run_ids) for one in series} == {tuple(ids[:15]), tuple(ids[15:])}
    assert len(report.splits) == 1
    assert report.splits[0].message == f"cluster changed from gros to grisou at run {ids[15]}: series split"
    # Each side is checked on its own, and none of them holds a run of the other.
    assert all(check.checked and check.runs == 15 for check in report.series)


def test_a_kernel_configuration_change_splits_too(tmp_path):
    ids = write_history(tmp_path, 14, seed=4, scale_from={8: {"p50_ns": 1.2}}, config_from={8: CONFIG_B})
    report = detect(load_history(tmp_path, PLAYBOOK), metrics=["p50_ns"])
    assert report.changes == []
    assert [(split.what, split.run_id) for split in report.splits] == [("kernel configuration", ids[7])]
    assert "kernel configuration changed from aaaaaaaaaaaa to bbbbbbbbbbbb" in report.splits[0].message


def test_unfinished_runs_are_skipped_with_a_reason(tmp_path):
    store = RunStore(tmp_path)
    rng = np.random.default_rng(0)
    finished = [write_run(store, number, rng=rng) for number in range(1, 4)]
    failed = write_run(store, 4, rng=rng, bench_state="failed")
    running = write_run(store, 5, rng=rng, bench_state="running")
    reserved = write_run(store, 6, rng=rng, bench_state=None)
    empty = write_run(store, 7, rng=rng, results=False)
    write_run(store, 8, rng=rng, playbook="other")  # another playbook: not ours, not listed
    (tmp_path / "statx-broken").mkdir()
    (tmp_path / "statx-broken" / "run.json").write_text("{not json")
    history = load_history(tmp_path, PLAYBOOK)
    assert [summary.run_id for summary in history] == finished
    reasons = {skip.run_id: skip.reason for skip in history.skipped}
    assert set(reasons) == {failed, running, reserved, empty, "statx-broken"}
    assert reasons[failed] == "bench phase failed: node gros-2 unreachable"
    assert reasons[running] == "bench phase running"
    assert reasons[reserved] == "bench phase never ran"
    assert reasons[empty].startswith("no readable bench results")
    report = detect(history, metrics=ALL)
    assert {skip.run_id for skip in report.skipped} == set(reasons)
    # Three runs are fewer than min_runs: nothing is checked, and the report says why.
    assert report.series and not any(check.checked for check in report.series)


def test_run_summary_reads_nodes_clusters_config_and_overrides(tmp_path):
    store = RunStore(tmp_path)
    run_id = write_run(store, 1, rng=np.random.default_rng(0), noise=0.0, cluster="grisou")
    (summary,) = load_history(tmp_path, PLAYBOOK)
    assert summary.run_id == run_id and summary.hardware == "grisou" and summary.kernel_config == "a" * 64
    assert summary.nodes == ("grisou-2.nancy.grid5000.fr", "grisou-3.nancy.grid5000.fr")
    assert sorted(summary.values) == ["threads=1 ebpf=off", "threads=1 ebpf=on", "threads=2 ebpf=off",
                                      "threads=2 ebpf=on"]  # fmt: skip
    assert summary.values["threads=1 ebpf=off"]["p50_ns"] == [1500.0] * 3
    assert summary.values["threads=2 ebpf=on"]["calls_per_s"] == pytest.approx([600_000 * 2 * 0.8] * 3)
    # Two exporters, each at half of the 400 000 total: the last value of each overridden series, summed.
    assert summary.override_total == pytest.approx(400_000)
    assert read_override_total(tmp_path / "nowhere.csv") is None


def test_a_metric_without_a_known_direction_is_refused():
    # Whether "sum" going up is a regression cannot be guessed: a wrong guess would pass a regression as an
    # improvement, so the caller must say.
    with pytest.raises(ValueError, match="unknown direction for sum: say whether higher is better"):
        detect([], metrics=["p50_ns", "sum"])
    assert detect([], metrics=["sum"], higher_is_better={"sum": True}).parameters["higher_is_better"] == {"sum": True}


def test_nightly_report_files(tmp_path):
    ids = write_history(tmp_path / "results", 24, seed=8, scale_from={13: {("p50_ns", 1, "on"): 1.12}},
                        cluster_from={20: "grisou"})  # fmt: skip
    history = load_history(tmp_path / "results", PLAYBOOK)
    report = detect(history, metrics=ALL)
    written = write_nightly(report, history, tmp_path / "nightly")
    assert set(written) == {*ALL, "json", "markdown"}
    for metric in ALL:
        assert written[metric].read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"
    assert json.loads(written["json"].read_text())["exit_code"] == EXIT_REGRESSION
    markdown = written["markdown"].read_text()
    assert f"| p50_ns | threads=1 ebpf=on | gros | {ids[12]} |" in markdown
    assert "| regression |" in markdown and "exit code 3" in markdown
    assert f"cluster changed from gros to grisou at run {ids[19]}: series split" in markdown
    assert not list((tmp_path / "nightly").glob(".*.tmp"))

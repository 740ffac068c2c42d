"""The nightly history of a workload other than statx-bench: sysbench's memory test as a regex workload, swept
over threads and block size (synthetic runs written as real run directories, see ``synthetic``), and what
``nightly.metrics`` may name."""

from __future__ import annotations

import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from g5kdeploy.cli import app
from g5kdeploy.nightly.history import load_history
from g5kdeploy.playbook import parse_playbook
from tests.nightly.synthetic import SYSBENCH, write_history

PLAYBOOK = r"""version: 2
name: sysbench
testbed: grid5000
reservation:
  site: nancy
  roles:
    collector: {nodes: 1, cluster: gros}
    exporter: {nodes: 2, cluster: gros}
bench:
  roles: [exporter]
  workload:
    command: "sysbench memory --threads={threads} --memory-block-size={block} run"
    output: regex
    pattern: '\((?P<ops_per_s>[0-9.]+) per second\)[\s\S]*?avg:\s+(?P<latency_ms>[0-9.]+)'
  parameters:
    threads: [1, 2]
    block: [4k, 64k]
  repetitions: 3
nightly:
  start: "19:05"
"""


def g5k(*args: str):
    return CliRunner().invoke(app, list(args))


def _book(tmp_path: Path, nightly: str = "") -> Path:
    path = tmp_path / "sysbench.yaml"
    path.write_text(PLAYBOOK + nightly)
    return path


def test_a_workloads_history_is_per_combination_of_its_parameters(tmp_path):
    write_history(tmp_path, 2, seed=0, workload=SYSBENCH, playbook=SYSBENCH, noise=0.0)
    first, _ = load_history(tmp_path, SYSBENCH)
    assert sorted(first.values) == ["threads=1 block=4k", "threads=1 block=64k", "threads=2 block=4k",
                                    "threads=2 block=64k"]  # fmt: skip
    assert first.values["threads=2 block=4k"] == {
        "ops_per_s": [4_000_000.0] * 3,
        "latency_ms": pytest.approx([0.44] * 3),
    }
    assert first.override_total is not None  # the synthetic runs export a counter, as a run with eBPF would


def test_a_regression_in_a_workloads_metrics_fails_the_check(tmp_path):
    # Night 21 on: 15 % fewer operations per second at 1 thread with 4k blocks (higher is better: a regression),
    # and 10 % lower latency at 2 threads with 64k blocks (lower is better: an improvement).
    ids = write_history(tmp_path, 30, seed=12, workload=SYSBENCH, playbook=SYSBENCH,
                        scale_from={21: {("ops_per_s", 1, "4k"): 0.85, ("latency_ms", 2, "64k"): 0.90}})  # fmt: skip
    result = g5k("--results-dir", str(tmp_path), "nightly", "check", str(_book(tmp_path)), "--json")
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    found = {(change["metric"], change["combination"]): change for change in report["changes"]}
    assert set(found) == {("ops_per_s", "threads=1 block=4k"), ("latency_ms", "threads=2 block=64k")}, found
    assert found["ops_per_s", "threads=1 block=4k"]["kind"] == "regression"
    assert found["latency_ms", "threads=2 block=64k"]["kind"] == "improvement"
    assert {change["run_id"] for change in found.values()} == {ids[20]}
    assert found["ops_per_s", "threads=1 block=4k"]["relative"] == pytest.approx(-0.15, abs=0.02)
    # Left out of nightly.metrics: every metric the workload names whose direction its name tells.
    assert report["parameters"]["metrics"] == ["ops_per_s", "latency_ms"]
    assert report["parameters"]["higher_is_better"] == {"ops_per_s": True, "latency_ms": False}
    markdown = Path(report["files"]["markdown"]).read_text()
    assert "Metrics followed: ops_per_s (higher is better), latency_ms (lower is better)." in markdown
    assert f"| ops_per_s | threads=1 block=4k | gros | {ids[20]} |" in markdown
    assert Path(report["files"]["ops_per_s"]).name == "nightly-ops-per-s.png"
    assert Path(report["files"]["ops_per_s"]).read_bytes()[:8] == b"\x89PNG\r\n\x1a\n"


def test_a_metric_the_workload_does_not_produce_is_bad_input(tmp_path):
    book = _book(tmp_path, "  metrics: [ops_per_s, events_per_s]\n")
    for command in ("check", "plan"):
        result = g5k("--results-dir", str(tmp_path / "results"), "nightly", command, str(book))
        assert result.exit_code == 2, result.output
        assert (
            "nightly.metrics: events_per_s not among the workload's metrics (the named groups of "
            "bench.workload.pattern: ops_per_s, latency_ms); also allowed: override_total"
        ) in result.stderr
        assert "Traceback" not in result.output
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())


def test_a_metric_without_a_direction_must_be_given_one(tmp_path):
    book = _book(tmp_path, "  metrics: [ops_per_s]\n").read_text().replace("ops_per_s", "ops")
    path = tmp_path / "ops.yaml"
    path.write_text(book)
    result = g5k("--results-dir", str(tmp_path), "nightly", "check", str(path))
    assert result.exit_code == 2
    assert "nightly.metrics: whether a higher ops is better cannot be told from its name: say it in nightly.better, " \
           "e.g. better: {ops: higher} (or lower)" in result.stderr  # fmt: skip
    path.write_text(book + "  better: {ops: higher}\n")
    # Once said, the playbook is fine: there is just no history yet.
    assert g5k("--results-dir", str(tmp_path), "nightly", "check", str(path)).exit_code == 4
    path.write_text(book + "  better: {ops: higher, latency_ms: lower}\n")
    result = g5k("--results-dir", str(tmp_path), "nightly", "check", str(path))
    assert result.exit_code == 2 and "nightly.better: latency_ms not among the followed metrics (ops)" in result.stderr


def test_nightly_metrics_default_to_the_workloads_metrics_with_a_known_direction():
    statx = parse_playbook((Path(__file__).resolve().parents[2] / "playbooks" / "statx.yaml").read_text())
    assert statx.nightly is not None and statx.nightly.metrics is not None
    default = statx.nightly.model_copy(update={"metrics": None})
    tracked, left_out = default.tracked(statx.bench)
    assert tracked == ["calls_per_s", "duration_s", "errors_total", "min_ns", "p50_ns", "p90_ns", "p99_ns",
                       "p999_ns", "max_ns"]  # fmt: skip
    assert left_out == {"calls": "whether higher is better is unknown (set nightly.better)"}
    # A JSON workload that does not name its metrics gives dotted paths: which to follow must be said.
    unnamed = statx.bench.model_copy(update={"workload": statx.bench.workload.model_copy(update={"metrics": None})})
    with pytest.raises(ValueError, match=r"nightly.metrics: the workload \(output: json, no bench.workload.metrics\)"):
        default.tracked(unnamed)
    assert default.model_copy(update={"metrics": ["latency_ns.p50"]}).tracked(unnamed) == (["latency_ns.p50"], {})

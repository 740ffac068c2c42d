"""``g5k bench`` on the local testbed: real sshd nodes, the real statx-bench, a resumable sweep."""

from __future__ import annotations

import csv
import json
import os
import signal
import time
from collections import Counter
from pathlib import Path

import pytest
from typer.testing import CliRunner

from g5kdeploy.cli import app
from g5kdeploy.testbeds.loopback import stop_nodes
from tests.conftest import spawn_g5k

PLAYBOOK = """\
version: 2
name: benchtest
testbed: local
reservation:
  site: nancy
  roles:
    collector: {{nodes: 1, cluster: gros}}
    exporter: {{nodes: 2, cluster: gros}}
  walltime: "1:00"
  max_wait: "0:05"
bench:
  roles: [exporter]
  workload:
    command: >-
      statx-bench --json --iterations {iterations} --warmup 10 --threads {{threads}}
      --path /etc/hostname --path /nonexistent/statx-target
    metrics: {{calls_per_s: calls_per_s, p50_ns: latency_ns.p50, p99_ns: latency_ns.p99}}
    artifacts: [statx-bench]
  parameters:
    threads: [1, 2]
    ebpf: [off, on]
  repetitions: {repetitions}
  timeout: 60
"""


@pytest.fixture
def local_run(tmp_path, monkeypatch):
    """A reserved local-testbed run (simulator + 3 sshd nodes); released afterwards."""
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable in ("G5K_API_URL", "G5K_USERNAME", "G5K_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    results = tmp_path / "results"
    monkeypatch.setenv("G5K_RESULTS_DIR", str(results))
    runner = CliRunner()

    def make(*, iterations: int = 2000, repetitions: int = 2, bench: str | None = None) -> tuple[str, Path]:
        book = tmp_path / "bench.yaml"
        text = PLAYBOOK.format(iterations=iterations, repetitions=repetitions)
        book.write_text(text if bench is None else text[: text.index("bench:\n")] + bench)
        reserved = runner.invoke(app, ["reserve", str(book), "--json"])
        assert reserved.exit_code == 0, reserved.output
        run_id = json.loads(reserved.stdout)["run_id"]
        made.append(run_id)
        return run_id, results / run_id

    made: list[str] = []
    yield make
    for run_id in made:
        runner.invoke(app, ["release", run_id])


def g5k(*args: str):
    return CliRunner().invoke(app, list(args))


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def bench_log(run_dir: Path, node: str) -> Counter[str]:
    workdir = Path(record(run_dir)["access"]["workdirs"][node])
    return Counter(line.split()[1] for line in (workdir / "bench.log").read_text().splitlines())


def test_sweep_runs_every_combination_on_every_node_and_skips_ebpf_on_locally(local_run):
    run_id, run_dir = local_run()
    result = g5k("bench", run_id, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["results"] == summary["new"] == 8
    assert summary["failed"] == {}
    assert len(summary["skipped"]) == 8
    assert all("no custom kernel" in reason for reason in summary["skipped"].values())
    exporters = record(run_dir)["roles"]["exporter"]
    rows = list(csv.DictReader((run_dir / "bench.csv").open()))
    assert len(rows) == 8
    assert {row["node"] for row in rows} == set(exporters)
    assert {(row["threads"], row["ebpf"], row["repetition"]) for row in rows} == {
        (t, "off", r) for t in ("1", "2") for r in ("1", "2")
    }
    one = json.loads((run_dir / "bench" / "threads-2_ebpf-off_rep-1" / f"{exporters[0]}.json").read_text())
    assert one["result"]["calls"] == 2 * 2000
    assert one["result"]["errors"] == {"ENOENT": 2000}
    assert one["result"]["statx"]["/etc/hostname"]["size"] == os.stat("/etc/hostname").st_size
    collector = record(run_dir)["roles"]["collector"][0]
    assert not (run_dir / "bench" / "threads-1_ebpf-off_rep-1" / f"{collector}.json").exists()

    again = json.loads(g5k("bench", run_id, "--json").stdout)
    assert again["new"] == 0 and again["results"] == 8
    assert all(count == 1 for node in exporters for count in bench_log(run_dir, node).values())


def wait_for_results(run_dir: Path, count: int, timeout: float = 60.0) -> None:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        if len(list((run_dir / "bench").glob("*/*.json"))) >= count:
            return
        time.sleep(0.02)
    raise AssertionError(f"fewer than {count} results after {timeout} s")


def test_sweep_killed_with_sigkill_resumes_without_losing_or_repeating(local_run):
    run_id, run_dir = local_run(iterations=300_000, repetitions=3)
    env = {"G5K_RESULTS_DIR": str(run_dir.parent), "HOME": os.environ["HOME"]}
    process = spawn_g5k("bench", run_id, env=env)
    wait_for_results(run_dir, 3)
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    finished_before = {path.relative_to(run_dir) for path in (run_dir / "bench").glob("*/*.json")}
    assert 3 <= len(finished_before) < 12

    result = g5k("bench", run_id, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert summary["results"] == 12
    assert summary["new"] == 12 - len(finished_before)
    for node in record(run_dir)["roles"]["exporter"]:
        runs = bench_log(run_dir, node)
        assert set(runs) == {f"threads-{t}_ebpf-off_rep-{r}" for t in (1, 2) for r in (1, 2, 3)}
        repeated = [key for key, count in runs.items() if count > 1]
        assert len(repeated) <= 1, "only the combination in flight at the kill may run again"
        for key in repeated:
            assert Path("bench") / key / f"{node}.json" not in finished_before


def test_node_whose_sshd_dies_is_reported_and_the_others_finish(local_run):
    run_id, run_dir = local_run(iterations=200_000, repetitions=3)
    victim, survivor = record(run_dir)["roles"]["exporter"]
    env = {"G5K_RESULTS_DIR": str(run_dir.parent), "HOME": os.environ["HOME"]}
    process = spawn_g5k("bench", run_id, env=env)
    wait_for_results(run_dir, 2)
    stop_nodes([record(run_dir)["local"]["sshd_pids"][victim]])
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 1, stderr
    assert "pairs are missing" in stderr and victim in stderr
    assert len(list((run_dir / "bench").glob(f"*/{survivor}.json"))) == 6
    notes = json.loads((run_dir / "bench" / "sweep.json").read_text())["pairs"]
    missing = [key for key in notes if "ebpf-off" in key and victim in notes[key]]
    assert missing
    for key in missing:
        assert notes[key][victim]["state"] == "failed"
        assert "Connection refused" in notes[key][victim]["reason"]
        assert not (run_dir / "bench" / key / f"{victim}.json").exists()
    assert record(run_dir)["phases"]["bench"]["state"] == "failed"


def test_bench_without_a_bench_section_is_a_clear_error(local_run, tmp_path):
    run_id, run_dir = local_run()
    saved = record(run_dir)
    del saved["playbook"]["bench"]
    (run_dir / "run.json").write_text(json.dumps(saved))
    result = g5k("bench", run_id)
    assert result.exit_code == 2
    assert "no bench section" in result.stderr


REGEX_WORKLOAD = """\
bench:
  roles: [exporter]
  workload:
    # Not statx-bench: a script pushed as an artifact, its output read by a regular expression.
    # Values are put in shell-quoted: {label} stays one word whatever it holds.
    command: "add.sh {a} {b} {label} && echo rep={repetition}"
    output: regex
    pattern: 'sum=(?P<sum>[0-9]+) .*length=(?P<length>[0-9]+)'
    artifacts: [tools/add.sh]
  parameters:
    a: [1, 2]
    b: [10, 20]
    label: ["two words", "x"]
  exclude: [{b: 20, label: x}]
  timeout: 30
"""
ADD = """#!/bin/sh
[ "$1" = 2 ] && [ "$2" = 20 ] && { echo "nothing to see"; exit 0; }
echo "sum=$(($1 + $2)) and length=${#3}"
"""


def test_any_command_sweeps_its_own_parameters_and_its_output_becomes_metrics(local_run, tmp_path):
    (tmp_path / "tools").mkdir()
    (tmp_path / "tools" / "add.sh").write_text(ADD)
    (tmp_path / "tools" / "add.sh").chmod(0o755)
    run_id, run_dir = local_run(bench=REGEX_WORKLOAD)
    result = g5k("bench", run_id, "--json")
    assert result.exit_code == 1, result.output
    summary = json.loads(result.stdout)
    exporters = record(run_dir)["roles"]["exporter"]
    # 2 x 2 x 2 combinations, minus the two with b=20 and label=x, on 2 nodes; a=2 b=20 prints no sum.
    assert summary["results"] == 2 * (8 - 2) - 2
    assert sorted(summary["failed"]) == [f"a-2_b-20_label-two-words_rep-1 on {node}" for node in exporters]
    assert all("does not match the output: 'nothing to see\\nrep=1'" in why for why in summary["failed"].values())
    rows = list(csv.DictReader((run_dir / "bench.csv").open()))
    assert list(rows[0])[:7] == ["run_id", "combination", "a", "b", "label", "repetition", "node"]
    assert list(rows[0])[-2:] == ["sum", "length"]
    got = {(row["a"], row["b"], row["label"], row["node"]): (float(row["sum"]), float(row["length"])) for row in rows}
    assert got[("1", "20", "two words", exporters[0])] == (21.0, 9.0)
    assert got[("2", "10", "x", exporters[1])] == (12.0, 1.0)
    assert not any(key[1] == "20" and key[2] == "x" for key in got)
    one = json.loads((run_dir / "bench" / "a-1_b-10_label-x_rep-1" / f"{exporters[0]}.json").read_text())
    assert one["metrics"] == {"sum": 11.0, "length": 1.0} and one["combination"]["parameters"]["label"] == "x"
    assert one["command"] == "add.sh 1 10 x && echo rep=1" and "rep=1" in one["output_tail"]

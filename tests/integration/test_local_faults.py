"""The local testbed after faults: a dead simulator, a failed bench, two runs at once, signals, and release."""

from __future__ import annotations

import json
import os
import signal
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from g5kdeploy.cli import app
from g5kdeploy.process import is_running
from g5kdeploy.testbeds.loopback import stop_nodes
from tests.conftest import spawn_g5k

PLAYBOOK = """\
version: 2
name: faults
testbed: local
reservation:
  site: nancy
  roles:
    collector: {nodes: 1, cluster: gros}
    exporter: {nodes: 2, cluster: gros}
  walltime: "1:00"
  max_wait: "0:05"
deploy:
  method: artifacts
bench:
  roles: [exporter]
  workload:
    command: >-
      statx-bench --json --iterations REPLACE_ITERATIONS --threads {threads}
      --path /tmp/g5k-statx-target --path /etc/hostname
    metrics: {calls_per_s: calls_per_s, p50_ns: latency_ns.p50, p99_ns: latency_ns.p99}
    artifacts: [statx-bench]
  parameters:
    threads: [1]
    ebpf: ["off"]
  repetitions: REPLACE_REPETITIONS
collect:
  role: collector
  step: 0.5
  queries: {load: node_load1}
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable in ("G5K_API_URL", "G5K_USERNAME", "G5K_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("G5K_RESULTS_DIR", str(tmp_path / "results"))
    yield tmp_path
    g5k("release", "--all")


def playbook(directory: Path, *, iterations: int = 100_000, repetitions: int = 1, name: str = "faults") -> Path:
    path = directory / f"{name}.yaml"
    text = PLAYBOOK.replace("REPLACE_ITERATIONS", str(iterations)).replace("REPLACE_REPETITIONS", str(repetitions))
    path.write_text(text.replace("name: faults", f"name: {name}"))
    return path


def g5k(*args: str):
    return CliRunner().invoke(app, list(args))


def record_of(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def daemons(record: dict) -> list[int]:
    local = record["local"] or {}
    return [pid for pid in [local.get("simulator_pid"), *local["sshd_pids"].values(), *local["monitoring_pids"]] if pid]


def processes_of(run_dir: Path) -> list[str]:
    """Every live process whose command line names the run's directory (simulator, sshd, Prometheus)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if str(run_dir) in cmdline and process.info["status"] != psutil.STATUS_ZOMBIE:
            found.append(f"{process.info['pid']}: {cmdline[:200]}")
    return found


def export_rows(run_dir: Path, name: str = "load") -> int:
    return len((run_dir / "exports" / f"{name}.csv").read_text().splitlines()) - 1


def test_two_local_runs_at_once_both_bring_back_their_own_data(env):
    first = spawn_g5k("run", str(playbook(env, name="first")), "--json", env={})
    second = spawn_g5k("run", str(playbook(env, name="second")), "--json", env={})
    outcomes = []
    for process in (first, second):
        stdout, stderr = process.communicate(timeout=240)
        assert process.returncode == 0, stderr
        outcomes.append(json.loads(stdout))
    ports = set()
    for outcome in outcomes:
        run_dir = env / "results" / outcome["run_id"]
        assert export_rows(run_dir) > 3
        local = record_of(run_dir)["local"]
        ports.add((local["prometheus_port"], local["exporter_port"]))
        assert processes_of(run_dir) == []
        assert g5k("verify", str(run_dir)).exit_code == 0
    assert len(ports) == 2, "each run picks its own ports"


def test_release_after_the_simulator_was_killed_restarts_it_and_leaves_no_process(env):
    result = g5k("reserve", str(playbook(env)), "--json")
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["run_id"]
    run_dir = env / "results" / run_id
    before = record_of(run_dir)
    os.kill(before["local"]["simulator_pid"], signal.SIGKILL)
    while is_running(before["local"]["simulator_pid"]):
        time.sleep(0.05)

    released = g5k("release", run_id)
    assert released.exit_code == 0, released.output
    after = record_of(run_dir)
    assert after["released_at"] and all(job["released"] for job in after["jobs"])
    # The simulator that answered was a new one, on the same state: its URL is the current one, not the first.
    log = (run_dir / "testbed" / "simulator.log").read_text()
    urls = [line for line in log.splitlines() if line.startswith("http://")]
    assert len(urls) == 2 and urls[0] != urls[1]
    assert processes_of(run_dir) == []
    assert not any(is_running(pid) for pid in daemons(before))


def test_release_stops_every_daemon_even_when_the_simulator_cannot_come_back(env):
    result = g5k("reserve", str(playbook(env)), "--json")
    run_id = json.loads(result.stdout)["run_id"]
    run_dir = env / "results" / run_id
    before = record_of(run_dir)
    os.kill(before["local"]["simulator_pid"], signal.SIGKILL)
    state = run_dir / "testbed" / "simulator-state.json"
    kept = state.read_bytes()
    state.write_text("{ damaged")

    released = g5k("release", run_id)
    assert released.exit_code == 1
    assert f"g5k release {run_id}" in released.stderr or "release again" in released.stderr
    assert processes_of(run_dir) == []
    assert not any(is_running(pid) for pid in daemons(before))
    # Once the state is readable again, the next release finishes the job.
    state.write_bytes(kept)
    assert g5k("release", run_id).exit_code == 0
    assert record_of(run_dir)["released_at"]
    assert processes_of(run_dir) == []


def test_resume_after_a_failed_bench_reserves_again_benches_what_is_missing_and_collects_again(env):
    # Enough repetitions that the sweep is far from its end when the node goes, however loaded the machine.
    book = playbook(env, iterations=300_000, repetitions=10)
    process = spawn_g5k("run", str(book), env={})
    run_dir = _wait_for_results(env / "results", 1)
    record = record_of(run_dir)
    victim = record["roles"]["exporter"][0]
    # The node goes away with its open connections, as a crashed node does.
    stop_nodes([record["local"]["sshd_pids"][victim]])
    _, stderr = process.communicate(timeout=240)
    assert process.returncode == 1, stderr
    failed = record_of(run_dir)
    assert failed["phases"]["bench"]["state"] == "failed" and failed["released_at"]
    first_job = failed["jobs"][0]["uid"]

    resumed = g5k("run", "--resume", run_dir.name, "--json")
    assert resumed.exit_code == 0, resumed.output
    outcome = json.loads(resumed.stdout)
    assert outcome["phases"] == {"reserve": "done", "deploy": "done", "bench": "done", "collect": "done"}
    final = record_of(run_dir)
    assert [job["uid"] for job in final["past_jobs"]] == [first_job]
    assert final["jobs"][0]["uid"] != first_job and final["released_at"]
    nodes = final["roles"]["exporter"]
    for node in nodes:
        assert len(list((run_dir / "bench").glob(f"*/{node}.json"))) == 10
    report = (run_dir / "report.md").read_text()
    assert "Nothing: every pair ran." in report
    assert "not yet" not in report
    assert g5k("verify", str(run_dir)).exit_code == 0
    assert processes_of(run_dir) == []


def _wait_for_results(results: Path, count: int, timeout: float = 120.0) -> Path:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        found = list(results.glob("*/bench/*/*.json"))
        if len(found) >= count:
            return found[0].parents[2]
        time.sleep(0.05)
    raise AssertionError(f"fewer than {count} bench results within {timeout} s")


def test_release_of_a_released_run_with_daemons_left_stops_them(env):
    result = g5k("reserve", str(playbook(env)), "--json")
    run_id = json.loads(result.stdout)["run_id"]
    run_dir = env / "results" / run_id
    assert g5k("release", run_id).exit_code == 0
    # A resume that failed after the release could start nodes again: release must still find and stop them.
    assert g5k("status", run_id).exit_code == 0
    from g5kdeploy.results import RunStore
    from g5kdeploy.testbeds import LocalTestbed

    store = RunStore(env / "results")
    record = store.load(run_id)
    LocalTestbed().access(record, store)
    assert processes_of(run_dir)
    listed = g5k("release", "--all")
    assert listed.exit_code == 0, listed.output
    assert "stopped" in listed.stdout
    assert processes_of(run_dir) == []
    nothing = g5k("release", "--all")
    assert nothing.exit_code == 0 and "nothing to release" in nothing.stdout


def test_daemons_never_inherit_the_password(env, monkeypatch):
    monkeypatch.setenv("G5K_PASSWORD", "pw-daemon-must-not-see")
    result = g5k("reserve", str(playbook(env)), "--json")
    assert result.exit_code == 0, result.output
    record = record_of(env / "results" / json.loads(result.stdout)["run_id"])
    pids = daemons(record)
    assert len(pids) == 1 + 3 + 4
    for pid in pids:
        assert b"pw-daemon-must-not-see" not in Path(f"/proc/{pid}/environ").read_bytes()

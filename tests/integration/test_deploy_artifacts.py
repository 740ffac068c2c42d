"""``g5k deploy`` with the artifacts method on the local testbed: real files, real sshd nodes, real checks."""

from __future__ import annotations

import hashlib
import json
from pathlib import Path

import pytest
from typer.testing import CliRunner

from g5kdeploy.cli import app
from g5kdeploy.payload import STATX_TARGET, STATX_TARGET_TEXT

PLAYBOOK = """\
version: 2
name: deploytest
testbed: local
reservation:
  site: nancy
  roles:
    collector: {{nodes: 1, cluster: gros}}
    exporter: {{nodes: 2, cluster: gros}}
  walltime: "1:00"
  max_wait: "0:05"
deploy:
  method: artifacts
  retries: 1
  timeout: 120
{extra}
bench:
  roles: [exporter]
  workload:
    command: >-
      statx-bench --json --iterations 1000 --threads {{threads}}
      --path /etc/hostname
    metrics: {{calls_per_s: calls_per_s, p50_ns: latency_ns.p50, p99_ns: latency_ns.p99}}
    artifacts: [statx-bench]
  parameters:
    threads: [1]
"""


@pytest.fixture
def reserved(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable in ("G5K_API_URL", "G5K_USERNAME", "G5K_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("G5K_RESULTS_DIR", str(tmp_path / "results"))
    made: list[str] = []

    def make(extra: str = "") -> tuple[str, Path]:
        book = tmp_path / "deploy.yaml"
        book.write_text(PLAYBOOK.format(extra=extra))
        result = g5k("reserve", str(book), "--json")
        assert result.exit_code == 0, result.output
        run_id = json.loads(result.stdout)["run_id"]
        made.append(run_id)
        return run_id, tmp_path / "results" / run_id

    yield make
    for run_id in made:
        g5k("release", run_id)


def g5k(*args: str):
    return CliRunner().invoke(app, list(args))


def record(run_dir: Path) -> dict:
    return json.loads((run_dir / "run.json").read_text())


def test_artifacts_reach_every_node_with_their_checksums_and_bench_uses_them(reserved):
    run_id, run_dir = reserved()
    plan = json.loads(g5k("deploy", run_id, "--dry-run", "--json").stdout)["plan"]
    assert plan["method"] == "artifacts" and len(plan["to_deploy"]) == 3
    assert not any((Path(w) / "artifacts").exists() for w in record(run_dir)["access"]["workdirs"].values())

    result = g5k("deploy", run_id, "--json")
    assert result.exit_code == 0, result.output
    assert len(json.loads(result.stdout)["verified"]) == 3
    saved = record(run_dir)
    for node, workdir in saved["access"]["workdirs"].items():
        pushed = Path(workdir) / "artifacts" / "statx-bench"
        expected = saved["deploy"]["plan"]["files"]["artifacts/statx-bench"]
        assert hashlib.sha256(pushed.read_bytes()).hexdigest() == expected
        assert saved["deploy"]["nodes"][node]["state"] == "verified"
        assert saved["deploy"]["nodes"][node]["facts"]["sha256"]["artifacts/statx-bench"] == expected
    # The deploy pushed the workload's artifacts: the bench phase has nothing left to push.
    assert saved["provided"] == ["statx-bench"]

    again = json.loads(g5k("deploy", run_id, "--json").stdout)
    assert again["plan"]["to_deploy"] == []
    assert all(state["attempts"] == 1 for state in record(run_dir)["deploy"]["nodes"].values())

    stamps = {
        node: (Path(w) / "artifacts" / "statx-bench").stat().st_mtime_ns
        for node, w in saved["access"]["workdirs"].items()
    }
    bench = g5k("bench", run_id, "--json")
    assert bench.exit_code == 0, bench.output
    assert json.loads(bench.stdout)["new"] == 2
    assert stamps == {
        node: (Path(w) / "artifacts" / "statx-bench").stat().st_mtime_ns
        for node, w in saved["access"]["workdirs"].items()
    }


def break_node(run_dir: Path, node: str) -> None:
    """A file where the node's artifacts directory should go: every push to that node fails."""
    (Path(record(run_dir)["access"]["workdirs"][node]) / "artifacts").write_text("in the way\n")


def test_failing_node_is_dropped_when_min_nodes_allows(reserved):
    run_id, run_dir = reserved("  min_nodes: 1")
    victim = record(run_dir)["roles"]["exporter"][0]
    break_node(run_dir, victim)
    result = g5k("deploy", run_id, "--json")
    assert result.exit_code == 0, result.output
    summary = json.loads(result.stdout)
    assert list(summary["dropped"]) == [victim]
    saved = record(run_dir)
    assert victim not in saved["roles"]["exporter"]
    assert saved["deploy"]["nodes"][victim]["state"] == "dropped"
    assert saved["deploy"]["nodes"][victim]["attempts"] == 2


def test_deploy_fails_with_each_nodes_reason_when_a_role_falls_short(reserved):
    run_id, run_dir = reserved()
    victim = record(run_dir)["roles"]["exporter"][1]
    break_node(run_dir, victim)
    result = g5k("deploy", run_id)
    assert result.exit_code == 1
    assert "exporter: 1 of 2 verified, min_nodes 2" in result.stderr
    assert victim in result.stderr
    assert record(run_dir)["phases"]["deploy"]["state"] == "failed"


def test_dry_run_prints_readable_yaml_and_deploy_creates_the_override_target(reserved):
    run_id, _ = reserved()
    shown = g5k("deploy", run_id, "--dry-run")
    assert shown.exit_code == 0, shown.output
    assert "method: artifacts" in shown.stdout
    # No Python reprs of the plan's dicts and lists.
    assert "{'" not in shown.stdout and "['" not in shown.stdout
    assert "artifacts/statx-bench:" in shown.stdout

    # The nodes share this machine's /tmp: the deploy makes the file the eBPF program's override is about.
    target = Path(STATX_TARGET)
    target.unlink(missing_ok=True)
    assert g5k("deploy", run_id).exit_code == 0
    assert target.read_text() == STATX_TARGET_TEXT

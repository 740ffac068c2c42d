"""``g5k run`` and ``g5k collect`` on the local testbed, with a real Prometheus and node exporters."""

from __future__ import annotations

import json
import shutil
import signal
import subprocess
import tarfile
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from g5kdeploy.cli import app
from g5kdeploy.process import is_running
from g5kdeploy.remote import SshRunner
from g5kdeploy.tools.prometheus import PrometheusClient, serve_snapshot, snapshot_tree_time_range, stop_served
from tests.conftest import spawn_g5k

PLAYBOOK = """\
version: 2
name: pipe
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
      statx-bench --json --iterations 300000 --threads {threads}
      --path /etc/hostname
    metrics: {calls_per_s: calls_per_s, p50_ns: latency_ns.p50, p99_ns: latency_ns.p99}
    artifacts: [statx-bench]
  parameters:
    threads: [1, 2]
    ebpf: [off]
collect:
  role: collector
  step: 0.5
  queries: {load: node_load1, cpu: "sum by (node) (node_cpu_seconds_total)", nothing: g5k_no_such_metric}
"""


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable in ("G5K_API_URL", "G5K_USERNAME", "G5K_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("G5K_RESULTS_DIR", str(tmp_path / "results"))
    book = tmp_path / "pipe.yaml"
    book.write_text(PLAYBOOK)
    yield book
    g5k("release", "--all")


def g5k(*args: str):
    return CliRunner().invoke(app, list(args))


def daemons(record: dict) -> list[int]:
    local = record["local"]
    return [local["simulator_pid"] or 0, *local["sshd_pids"].values(), *local["monitoring_pids"]]


def test_run_produces_a_verified_report_and_a_snapshot_that_reopens(env, tmp_path):
    result = g5k("run", str(env), "--json")
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    run_dir = tmp_path / "results" / outcome["run_id"]
    assert outcome["phases"] == {"reserve": "done", "deploy": "done", "bench": "done", "collect": "done"}
    report = Path(outcome["report"]).read_text()
    assert "| 1 | off |" in report and "plots/throughput.png" in report
    assert all((run_dir / "plots" / name).stat().st_size > 5000 for name in ("throughput.png", "latency-threads-1.png"))
    record = json.loads((run_dir / "run.json").read_text())
    assert record["released_at"]
    assert not any(is_running(pid) for pid in daemons(record) if pid)
    # The throwaway SSH keys of the local nodes do not outlive the run in its results.
    private = [p for p in run_dir.rglob("*") if p.is_file() and b"PRIVATE KEY" in p.read_bytes()]
    assert private == []
    facts = json.loads((run_dir / "nodes" / f"{record['roles']['exporter'][0]}.json").read_text())
    assert facts["kernel"] and facts["reference"]["uid"].startswith("gros-")
    rows = (run_dir / "exports" / "load.csv").read_text().splitlines()
    assert rows[0].startswith("timestamp,value,") and len(rows) > 3
    # Collect waited for a scrape after the bench: its last seconds are in the data, whatever the machine's speed.
    bench_end = datetime.strptime(record["phases"]["bench"]["finished_at"], "%Y-%m-%dT%H:%M:%SZ")
    assert max(float(row.split(",")[0]) for row in rows[1:]) >= bench_end.replace(tzinfo=UTC).timestamp()
    # A query that matched nothing is said loudly, not left as a header-only file.
    assert [w for w in outcome["warnings"] if w.startswith("export nothing")], outcome["warnings"]
    assert "export nothing" in result.stderr
    assert "[nothing](exports/nothing.csv) (EMPTY, no samples" in report
    # Written after the release: the archived report describes the finished run.
    assert "not yet" not in report and "| running |" not in report
    assert "| collect | done |" in report

    # What each node ran, as CycloneDX: no Nix closure here, so the deployed artifacts and the kernel it reported.
    manifest = {entry["path"] for entry in json.loads((run_dir / "manifest.json").read_text())["files"]}
    for node in {node for members in record["roles"].values() for node in members}:
        sbom = json.loads((run_dir / "sbom" / f"{node}.cdx.json").read_text())
        assert sbom["bomFormat"] == "CycloneDX" and sbom["specVersion"] == "1.5"
        assert f"sbom/{node}.cdx.json" in manifest
        kernel = next(c for c in sbom["components"] if c["name"] == "linux")
        assert kernel["version"] == json.loads((run_dir / "nodes" / f"{node}.json").read_text())["kernel"]
        assert "no Nix closure on the local testbed" in json.dumps(sbom["metadata"])
    exporter_sbom = json.loads((run_dir / "sbom" / f"{record['roles']['exporter'][0]}.cdx.json").read_text())
    bench_binary = next(c for c in exporter_sbom["components"] if c["name"].endswith("statx-bench"))
    assert bench_binary["hashes"][0]["content"] == record["deploy"]["plan"]["files"][bench_binary["name"]]
    assert "## SBOM" in report and f"sbom/{record['roles']['exporter'][0]}.cdx.json" in report

    assert g5k("verify", str(run_dir)).exit_code == 0
    (run_dir / "bench.csv").write_text((run_dir / "bench.csv").read_text().replace("300000", "300001"))
    tampered = g5k("verify", str(run_dir))
    assert tampered.exit_code == 1 and "changed: bench.csv" in tampered.stderr

    served_by_cli = spawn_g5k(
        "snapshot", "serve", outcome["run_id"], "--json", env={"G5K_RESULTS_DIR": str(run_dir.parent)}
    )
    try:
        lines: list[str] = []
        while not lines or lines[-1] != "}":
            lines.append(served_by_cli.stdout.readline().rstrip("\n"))
        url = json.loads("\n".join(lines))["url"]
        with PrometheusClient(url) as client:
            assert client.ready()
    finally:
        served_by_cli.send_signal(signal.SIGINT)
        served_by_cli.communicate(timeout=30)
    assert served_by_cli.returncode == 130

    [tarball] = (run_dir / "prometheus").glob("*.tar.gz")
    with tarfile.open(tarball) as archive:
        archive.extractall(tmp_path / "snapshot", filter="data")
    [snapshot] = (tmp_path / "snapshot").iterdir()
    _, end = snapshot_tree_time_range(snapshot)
    served = serve_snapshot(snapshot, tmp_path / "replay")
    try:
        with PrometheusClient(served.url) as client:
            samples = client.query("count_over_time(node_load1[10m])", end)
        assert {sample["metric"]["node"] for sample in samples} == {
            *record["roles"]["collector"],
            *record["roles"]["exporter"],
        }
    finally:
        stop_served(served.pid)


def run_dir_of(tmp_path: Path) -> Path:
    [run_dir] = (tmp_path / "results").iterdir()
    return run_dir


def test_collect_interrupted_mid_fetch_reruns_without_losing_or_duplicating(env, tmp_path, monkeypatch):
    assert g5k("run", str(env), "--keep").exit_code == 0
    run_dir = run_dir_of(tmp_path)
    bench_before = {path: path.read_bytes() for path in (run_dir / "bench").rglob("*.json")}
    shutil.rmtree(run_dir / "prometheus")
    record = json.loads((run_dir / "run.json").read_text())
    record["collected"] = {}
    (run_dir / "run.json").write_text(json.dumps(record))

    def crash(*_args, **_kwargs):
        raise KeyboardInterrupt

    with monkeypatch.context() as patch:
        patch.setattr(SshRunner, "get_tree", crash)
        assert g5k("collect", run_dir.name).exit_code == 130
    taken = json.loads((run_dir / "run.json").read_text())["collected"]["snapshot"]
    snapshots = run_dir / "testbed" / "monitoring" / "prometheus-data" / "snapshots"
    assert (snapshots / taken).is_dir(), "the snapshot stays on the node until its copy is verified"

    result = g5k("collect", run_dir.name, "--json")
    assert result.exit_code == 0, result.output
    assert [path.name for path in (run_dir / "prometheus").glob("*.tar.gz")] == [f"{taken}.tar.gz"]
    assert list(snapshots.iterdir()) == [], "fetched, verified, then removed; no second snapshot taken"
    assert {path: path.read_bytes() for path in (run_dir / "bench").rglob("*.json")} == bench_before


def test_unreachable_collector_is_a_clear_error_and_bench_results_stay(env, tmp_path):
    assert g5k("run", str(env), "--keep").exit_code == 0
    run_dir = run_dir_of(tmp_path)
    bench_before = {path: path.read_bytes() for path in (run_dir / "bench").rglob("*.json")}
    record = json.loads((run_dir / "run.json").read_text())
    record["collected"] = {}
    (run_dir / "run.json").write_text(json.dumps(record))
    shutil.rmtree(run_dir / "prometheus")
    collector = record["roles"]["collector"][0]
    address = record["local"]["addresses"][collector]
    known_hosts = Path(record["access"]["known_hosts"])
    # Another host's key for the collector's address: ssh refuses to talk to it, as to a node that is gone.
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(tmp_path / "other")], check=True)
    other = (tmp_path / "other.pub").read_text().split()[:2]
    lines = known_hosts.read_text().splitlines()
    known_hosts.write_text(
        "\n".join(
            f"[{address}]:{line.split()[0].rsplit(':', 1)[1]} {' '.join(other)}"
            if line.startswith(f"[{address}]:")
            else line
            for line in lines
        )
        + "\n"
    )
    result = g5k("collect", run_dir.name)
    assert result.exit_code == 1
    assert f"cannot connect to {collector}" in result.stderr and "does not match" in result.stderr
    assert {path: path.read_bytes() for path in (run_dir / "bench").rglob("*.json")} == bench_before
    assert json.loads((run_dir / "run.json").read_text())["phases"]["collect"]["state"] == "failed"

"""``testbed: local``: the agent starts its own simulator daemon, and stops it at release."""

from __future__ import annotations

import json
import os
import signal
from pathlib import Path

from typer.testing import CliRunner

from g5kdeploy.cli import app
from g5kdeploy.process import is_running

REPO = Path(__file__).resolve().parents[2]


def test_local_playbook_reserves_on_its_own_simulator_and_release_stops_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable in ("G5K_API_URL", "G5K_USERNAME", "G5K_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    runner = CliRunner()
    results = tmp_path / "results"
    reserved = runner.invoke(
        app, ["--results-dir", str(results), "reserve", str(REPO / "playbooks/statx-local.yaml"), "--json"]
    )
    assert reserved.exit_code == 0, reserved.output
    run_id = json.loads(reserved.stdout)["run_id"]
    record = json.loads((results / run_id / "run.json").read_text())
    pid = record["local"]["simulator_pid"]
    try:
        assert is_running(pid)
        assert record["local"]["simulator_url"].startswith("http://127.0.0.1:")
        assert len(record["roles"]["exporter"]) == 2

        status = json.loads(runner.invoke(app, ["--results-dir", str(results), "status", run_id, "--json"]).stdout)
        assert status[0]["jobs"][0]["state"] == "running"

        released = runner.invoke(app, ["--results-dir", str(results), "release", run_id])
        assert released.exit_code == 0, released.output
        assert not is_running(pid)
        assert json.loads((results / run_id / "run.json").read_text())["released_at"]
    finally:
        if is_running(pid):
            os.kill(pid, signal.SIGKILL)

"""Shared fixtures: a real simulator on loopback, and the environment that points the agent at it."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from g5kdeploy.cli import app
from g5kdeploy.simulator import SimConfig, serve_in_thread

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "pw-Zq81-never-logged"
USER = "jdoe"


@pytest.fixture
def sim():
    with serve_in_thread(SimConfig(launch_seconds=1.0, seed=7)) as server:
        yield server


@pytest.fixture
def agent_env(sim, tmp_path, monkeypatch):
    """Environment for the agent: the simulator's URL, credentials, an empty HOME, a results directory."""
    env = {
        "G5K_API_URL": sim.url,
        "G5K_USERNAME": USER,
        "G5K_PASSWORD": PASSWORD,
        "HOME": str(tmp_path / "home"),
        "G5K_RESULTS_DIR": str(tmp_path / "results"),
    }
    (tmp_path / "home" / ".ssh").mkdir(parents=True)
    # The agent only needs the key to exist for the ssh_config it writes; nothing connects to Grid'5000.
    (tmp_path / "home" / ".ssh" / "id_ed25519").write_text("not a real key\n")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def g5k(agent_env):
    """Run the CLI in-process; returns the click Result."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def spawn_g5k(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """The CLI as a separate process, for tests that signal or kill it."""
    return subprocess.Popen(
        [sys.executable, "-m", "g5kdeploy", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def write_playbook(directory: Path, body: str, name: str = "exp") -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(body)
    return path


def playbook_text(*, nodes: int = 2, extra: str = "", site: str = "nancy", cluster: str = "gros") -> str:
    return (
        "version: 1\nname: exp\ntestbed: grid5000\nreservation:\n"
        f"  site: {site}\n  roles:\n    collector: {{nodes: 1, cluster: {cluster}}}\n"
        f"    exporter: {{nodes: {nodes}, cluster: {cluster}}}\n  walltime: 1:00\n  max_wait: 0:05\n{extra}"
    )

"""Shared fixtures: a real simulator on loopback, and the environment that points the agent at it."""

from __future__ import annotations

import os
import signal
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


# The VM testbed's kernel takes minutes to build on a cold machine (CI): when VM tests are selected, its build
# starts in the background as the session starts, on CPU the other tests leave idle, into the cache the VM
# tests use (builds of one kernel are serialised: the first VM test waits for this one if it is not done).
_KERNEL_BUILD: dict[str, subprocess.Popen[bytes]] = {}


def pytest_collection_modifyitems(session, config, items) -> None:
    if any(Path(str(item.fspath)).parent.name == "vm" for item in items) and not _KERNEL_BUILD:
        # Its output is not needed: a build that fails here fails again, with its message, in the first VM test.
        _KERNEL_BUILD["process"] = subprocess.Popen(
            [sys.executable, "-m", "g5kdeploy", "vm", "kernel"],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


def pytest_sessionfinish(session, exitstatus) -> None:
    process = _KERNEL_BUILD.pop("process", None)
    if process is not None and process.poll() is None:
        # Ctrl-C, not SIGKILL: the build stops make and its compilers and leaves nothing in the cache.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

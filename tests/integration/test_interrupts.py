"""Reservations never leak: a killed agent's jobs are found again, an interrupted agent releases its own."""

from __future__ import annotations

import json
import signal
import time
from pathlib import Path

import pytest

from tests.conftest import USER, playbook_text, spawn_g5k, write_playbook
from tests.integration.test_reserve import hog


def wait_for_ledger_uid(results: Path, timeout: float = 30.0) -> dict:
    deadline = time.monotonic() + timeout
    while time.monotonic() < deadline:
        for run_file in results.glob("*/run.json"):
            try:
                record = json.loads(run_file.read_text())
            except json.JSONDecodeError:
                continue
            if record["jobs"] and record["jobs"][0]["uid"] is not None:
                return record
        time.sleep(0.05)
    raise AssertionError("the agent never recorded a job uid")


def live(sim) -> list[dict]:
    return [job for job in sim.simulator.live_jobs() if job["user"] == USER]


@pytest.fixture
def waiting_agent(sim, tmp_path, agent_env):
    """An agent process waiting for a job that cannot start for 10 hours."""
    hog(sim)
    book = write_playbook(tmp_path, playbook_text().replace("max_wait: 0:05", "max_wait: 12:00"))
    process = spawn_g5k("reserve", str(book), env=agent_env)
    record = wait_for_ledger_uid(Path(agent_env["G5K_RESULTS_DIR"]))
    assert len(live(sim)) == 1
    yield process, record
    if process.poll() is None:
        process.kill()
        process.wait()


def test_agent_killed_with_sigkill_then_release_leaves_no_live_job(waiting_agent, sim, g5k):
    process, record = waiting_agent
    process.send_signal(signal.SIGKILL)
    process.wait(timeout=10)
    assert len(live(sim)) == 1, "SIGKILL gives the agent no chance to clean up"
    result = g5k("release", record["run_id"])
    assert result.exit_code == 0, result.output
    assert live(sim) == []


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_interrupted_agent_releases_its_jobs_before_exiting(waiting_agent, sim, agent_env, sig):
    process, record = waiting_agent
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "interrupted" in stderr
    assert live(sim) == []
    saved = json.loads((Path(agent_env["G5K_RESULTS_DIR"]) / record["run_id"] / "run.json").read_text())
    assert saved["jobs"][0]["released"] is True
    assert saved["phases"]["reserve"]["state"] == "failed"


def test_keep_leaves_the_jobs_for_later(sim, tmp_path, agent_env, g5k):
    hog(sim)
    book = write_playbook(tmp_path, playbook_text().replace("max_wait: 0:05", "max_wait: 12:00"))
    process = spawn_g5k("reserve", str(book), "--keep", env=agent_env)
    record = wait_for_ledger_uid(Path(agent_env["G5K_RESULTS_DIR"]))
    process.send_signal(signal.SIGINT)
    process.communicate(timeout=60)
    assert process.returncode == 130
    assert len(live(sim)) == 1
    assert g5k("release", record["run_id"]).exit_code == 0
    assert live(sim) == []


@pytest.mark.parametrize("gap", [0.0, 0.001, 0.003, 0.005])
def test_two_signals_in_quick_succession_still_release_the_job(waiting_agent, sim, agent_env, gap):
    process, record = waiting_agent
    # A double Ctrl-C: the second arrives while the first is still unwinding, before any cleanup has begun.
    process.send_signal(signal.SIGINT)
    time.sleep(gap)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert live(sim) == []
    saved = json.loads((Path(agent_env["G5K_RESULTS_DIR"]) / record["run_id"] / "run.json").read_text())
    assert saved["jobs"][0]["released"] is True
    assert "Traceback" not in stderr


def catches_sigterm(pid: int) -> bool:
    """Whether ``pid`` handles SIGTERM itself: the agent's code is running (before that, only Python starts)."""
    try:
        status = Path(f"/proc/{pid}/status").read_text()
    except OSError:
        return False
    caught = next(line.split()[1] for line in status.splitlines() if line.startswith("SigCgt:"))
    return bool(int(caught, 16) & (1 << (signal.SIGTERM - 1)))


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
@pytest.mark.parametrize("delay", ["first-line", 0.3, 0.6, 1.0])
def test_a_signal_while_the_agent_starts_exits_130_without_a_traceback(sim, tmp_path, agent_env, sig, delay):
    book = write_playbook(tmp_path, playbook_text())
    process = spawn_g5k("reserve", str(book), env=agent_env)
    if delay == "first-line":
        # At the agent's very first line of code, before the CLI's imports (a second or more): anything earlier is
        # the interpreter's own start, the same for every Python program.
        deadline = time.monotonic() + 30
        while not catches_sigterm(process.pid) and process.poll() is None:
            assert time.monotonic() < deadline, "the agent never started"
            time.sleep(0.001)
    else:
        # Well past the interpreter's own start (tens of milliseconds), inside the CLI's imports or the command.
        time.sleep(delay)
    process.send_signal(sig)
    _, stderr = process.communicate(timeout=60)
    assert process.returncode == 130, stderr
    assert "Traceback" not in stderr and "KeyboardInterrupt" not in stderr
    assert live(sim) == []

"""``g5k nightly run``: booking tonight's slot on the simulator, attaching again, the local pipeline."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from g5kdeploy.cli import app
from g5kdeploy.errors import ReservationError
from g5kdeploy.nightly.phase import run_nightly
from g5kdeploy.nightly.regression import EXIT_NOT_ENOUGH_HISTORY
from g5kdeploy.playbook import PARIS, parse_playbook
from g5kdeploy.results import RunStore
from g5kdeploy.simulator import SimConfig, serve_in_thread
from g5kdeploy.testbeds import Grid5000Testbed
from tests.conftest import USER
from tests.integration.test_reserve import hog

NIGHTLY = """\
version: 2
name: nightly
testbed: grid5000
reservation:
  site: nancy
  roles:
    node: {nodes: 2, cluster: gros}
  walltime: "1:00"
  max_wait: "2:00"
nightly:
  start: "19:05"
  walltime: "2:00"
"""


@pytest.fixture
def fast(agent_env):
    # Ten simulated minutes a second: tonight's slot is at most 10 h (one minute) away, and a slot that starts
    # now is pushed back by 3 wall seconds (30 simulated minutes) for the agent to submit.
    # A Tuesday evening in Paris, whenever the test runs: tonight's window is 35 simulated minutes (3.5 s) away
    # and lasts the whole test, where the wall clock's time of day could put a call at the end of a window.
    tuesday = datetime(2026, 12, 8, 18, 30, tzinfo=PARIS).timestamp()
    with serve_in_thread(SimConfig(speed=600, launch_seconds=5, seed=4, start=tuesday)) as server:
        yield server, {**agent_env, "G5K_API_URL": server.url}


def test_nightly_books_tonights_slot_and_a_second_call_attaches(fast, tmp_path):
    server, env = fast
    store = RunStore(tmp_path / "results")
    playbook = parse_playbook(NIGHTLY)
    testbed = Grid5000Testbed(env=env, clock=server.simulator.clock)
    first = run_nightly(playbook, tmp_path / "nightly.yaml", store, testbed, api_url=server.url)
    assert not first.reattached and first.slot is not None
    [job] = [job for job in server.simulator.jobs() if job["user"] == USER]
    assert job["started_at"] == int(first.slot.start.timestamp())
    assert job["walltime"] == 2 * 3600
    assert first.record.released_at and job["state"] in ("error", "terminated")
    # One finished run is no history to check yet: the report says so (what `nightly check` exits with).
    assert first.report.exit_code == EXIT_NOT_ENOUGH_HISTORY and first.files["markdown"].exists()

    second = run_nightly(playbook, tmp_path / "nightly.yaml", store, testbed, api_url=server.url)
    assert second.reattached and second.record.run_id == first.record.run_id
    assert len([job for job in server.simulator.jobs() if job["user"] == USER]) == 1


def test_refused_reservation_says_when_it_could_run(fast, tmp_path):
    server, env = fast
    hog(server, hours=100)
    store = RunStore(tmp_path / "results")
    testbed = Grid5000Testbed(env=env, clock=server.simulator.clock)
    # A busy night is not bad input (exit 1, not 2): the user reads OAR's own answer.
    with pytest.raises(ReservationError, match=r"Reservation not valid --> KO \(This reservation could run at \d{4}-"):
        run_nightly(parse_playbook(NIGHTLY), tmp_path / "nightly.yaml", store, testbed, api_url=server.url)
    assert [job for job in server.simulator.live_jobs() if job["user"] == USER] == []


def test_local_nightly_runs_the_whole_pipeline_then_checks_and_attaches_again(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable in ("G5K_API_URL", "G5K_USERNAME", "G5K_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    book = tmp_path / "local-nightly.yaml"
    book.write_text(
        (Path(__file__).resolve().parents[2] / "playbooks" / "statx-local.yaml")
        .read_text()
        .replace("iterations: 200000", "iterations: 20000")
    )
    runner = CliRunner()
    results = tmp_path / "results"
    first = runner.invoke(app, ["--results-dir", str(results), "nightly", "run", str(book), "--json"])
    assert first.exit_code == 0, first.output
    outcome = json.loads(first.stdout)
    assert outcome["reattached"] is False and Path(outcome["report"]).exists()
    # The night's run succeeded (exit 0 above) even though one run is too little history to check.
    assert outcome["history"]["message"] == "not enough history (1 of 6 needed)"
    record = json.loads((results / outcome["run_id"] / "run.json").read_text())
    assert {name: phase["state"] for name, phase in record["phases"].items()} == dict.fromkeys(
        ("reserve", "deploy", "bench", "collect"), "done"
    )
    second = runner.invoke(app, ["--results-dir", str(results), "nightly", "run", str(book), "--json"])
    assert second.exit_code == 0, second.output
    assert json.loads(second.stdout)["run_id"] == outcome["run_id"]
    assert json.loads(second.stdout)["reattached"] is True

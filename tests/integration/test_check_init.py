"""``g5k check`` (what reserve checks, nothing submitted) and ``g5k init`` (a starting playbook that passes it)."""

from __future__ import annotations

import json
from datetime import datetime

import pytest

from g5kdeploy.log import configure
from g5kdeploy.playbook import PARIS, load_playbook, parse_playbook
from g5kdeploy.reserve.phase import create_run, reserve
from g5kdeploy.reserve.release import release_run
from g5kdeploy.results import RunStore
from g5kdeploy.simulator import SimConfig, serve_in_thread
from g5kdeploy.testbeds import Grid5000Testbed
from tests.conftest import playbook_text, write_playbook
from tests.integration.test_bad_input import PLAYBOOK_CASES

GOOD = playbook_text()
# Saturday 13 November 2027, 10:00 in Paris: inside the weekend's non-working window, which ends Monday 09:00.
SATURDAY = "2027-11-13 10:00:00"


def test_a_good_playbook_passes_and_says_what_was_checked_without_submitting(g5k, sim, tmp_path):
    result = g5k("check", str(write_playbook(tmp_path, GOOD)))
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    assert "ok: reservation.site: nancy, known to the API" in lines
    assert "ok: nancy/gros: 124 nodes (queues: admin, default); the roles ask collector 1 + exporter 2" in lines
    assert "OAR request on nancy: {cluster='gros'}/nodes=3,walltime=1:00:00, types: none" in lines
    assert any(line.startswith("ok: usage policy: walltime 1:00:00 starting now") for line in lines), lines
    assert lines[-1] == "nothing was submitted"
    assert sim.simulator.jobs() == []
    # No run either: check leaves the results directory as it found it.
    assert not (tmp_path / "results").exists()


def test_check_speaks_json(g5k, sim, tmp_path):
    result = g5k("check", str(write_playbook(tmp_path, GOOD)), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["ok"] is True
    assert report["jobs"] == [
        {"site": "nancy", "resources": "{cluster='gros'}/nodes=3,walltime=1:00:00", "types": [], "walltime": "1:00:00"}
    ]


@pytest.mark.parametrize("case", sorted(PLAYBOOK_CASES))
def test_check_refuses_what_reserve_refuses_with_exit_2_and_the_same_message(case, g5k, sim, tmp_path):
    text, expected = PLAYBOOK_CASES[case]
    result = g5k("check", str(write_playbook(tmp_path, text)))
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert "Traceback" not in result.output
    assert sim.simulator.jobs() == []


@pytest.mark.parametrize(
    ("start", "walltime", "verdict"),
    [
        (SATURDAY, "20:00", "ok: usage policy: walltime 20:00:00 from Sat 13 Nov 10:00 to Sun 14 Nov 06:00: within "
                            "the non-working window Fri 12 Nov 19:00 → Mon 15 Nov 09:00"),
        (SATURDAY, "72:00", "note: reservation.walltime: the job would run past Mon 15 Nov 09:00 into working-day "
                            "daytime"),
        # Armistice Day, a Thursday: the night from Wednesday runs on to Friday 09:00.
        ("2027-11-11 10:00:00", "20:00", "ok: usage policy: walltime 20:00:00 from Thu 11 Nov 10:00 to Fri 12 Nov "
                                         "06:00: within the non-working window Wed 10 Nov 19:00 → Fri 12 Nov 09:00"),
        ("2027-11-16 10:00:00", "2:00", "ok: usage policy: walltime 2:00:00 from Tue 16 Nov 10:00 to Tue 16 Nov "
                                        "12:00: in working-day daytime (09:00-19:00), kept for smaller experiments"),
        ("2027-11-16 10:00:00", "30:00", "note: reservation.walltime: the job spans the whole non-working window "
                                         "Tue 16 Nov 19:00 → Wed 17 Nov 09:00 and goes on into working-day daytime"),
    ],
)  # fmt: skip
def test_the_walltime_is_checked_against_the_usage_policy_from_the_reservation_date(
    start, walltime, verdict, g5k, sim, tmp_path
):
    text = GOOD.replace("walltime: 1:00", f"walltime: '{walltime}'") + f"  reservation: '{start}'\n"
    result = g5k("check", str(write_playbook(tmp_path, text)))
    assert result.exit_code == 0, result.output
    assert any(line.startswith(verdict) for line in result.stdout.splitlines()), result.stdout
    if verdict.startswith("note: reservation.walltime: the job would run past"):
        assert "ask for at most 47:00:00 from this start" in result.stdout
    assert sim.simulator.jobs() == []


def test_reserve_gives_the_same_usage_policy_advice(tmp_path, agent_env, capsys):
    """reserve runs the check that g5k check runs: the same note, logged before the job is submitted."""
    # The simulator's clock starts ten minutes before the reservation, and runs fast enough to reach it at once.
    start = datetime(2027, 11, 13, 9, 50, tzinfo=PARIS).timestamp()
    with serve_in_thread(SimConfig(start=start, speed=600, launch_seconds=1, seed=1)) as fast:
        text = GOOD.replace("walltime: 1:00", "walltime: '72:00'") + f"  reservation: '{SATURDAY}'\n"
        store = RunStore(tmp_path / "results")
        record = create_run(store, parse_playbook(text), tmp_path / "exp.yaml", api_url=fast.url)
        testbed = Grid5000Testbed(env={**agent_env, "G5K_API_URL": fast.url}, clock=fast.simulator.clock)
        configure(json_lines=True)
        try:
            reserve(record, store, testbed)
        finally:
            release_run(record, store, testbed)
    notes = [json.loads(line) for line in capsys.readouterr().err.splitlines() if '"usage policy"' in line]
    assert len(notes) == 1
    assert notes[0]["note"].startswith("reservation.walltime: the job would run past Mon 15 Nov 09:00")


def test_a_local_playbook_is_checked_against_a_simulator_of_its_own(g5k, tmp_path):
    text = GOOD.replace("testbed: grid5000", "testbed: local").replace("nodes: 2", "nodes: 200")
    result = g5k("check", str(write_playbook(tmp_path, text)))
    assert result.exit_code == 2, result.output
    assert "reservation.roles.exporter.nodes: 200 nodes on cluster gros, which has 124" in result.stderr


@pytest.mark.parametrize("testbed", ["local", "grid5000", "vm"])
def test_init_writes_a_commented_playbook_that_loads_and_passes_check(testbed, g5k, sim, tmp_path):
    path = tmp_path / f"My {testbed} experiment.yaml"
    written = g5k("init", "--testbed", testbed, str(path))
    assert written.exit_code == 0, written.output
    assert f"wrote {path}" in written.stdout
    text = path.read_text()
    assert text.count("\n#") + text.count("  #") >= 10, "a starting playbook explains itself"
    book = load_playbook(path)
    assert (book.version, book.testbed, book.name) == (2, testbed, f"my-{testbed}-experiment")
    assert book.bench is not None and book.bench.workload.command.startswith("statx-bench --json")
    checked = g5k("check", str(path))
    assert checked.exit_code == 0, checked.output
    assert sim.simulator.jobs() == []


def test_init_never_overwrites_a_file(g5k, tmp_path):
    path = tmp_path / "exp.yaml"
    path.write_text("mine\n")
    result = g5k("init", str(path))
    assert result.exit_code == 2
    assert f"PATH: {path} already exists" in result.stderr
    assert path.read_text() == "mine\n"

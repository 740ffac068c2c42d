"""The reserve and release phases through python-grid5000, over HTTP, against the simulator."""

from __future__ import annotations

import json
from pathlib import Path

import grid5000

from g5kdeploy.credentials import Endpoint
from g5kdeploy.playbook import parse_playbook
from g5kdeploy.reserve.phase import create_run, reserve
from g5kdeploy.reserve.release import release
from g5kdeploy.results import JobEntry, RunStore
from g5kdeploy.testbeds import Grid5000Testbed
from g5kdeploy.testbeds.api import Api
from tests.conftest import PASSWORD, USER, playbook_text, write_playbook


def hog(sim, *, nodes: int = 124, hours: int = 10, cluster: str = "gros") -> int:
    """Another user takes ``nodes`` nodes of ``cluster`` for ``hours``."""
    gk = grid5000.Grid5000(uri=sim.url, username="bob", password="x")
    job = gk.sites["nancy"].jobs.create(
        {
            "resources": f"{{cluster='{cluster}'}}/nodes={nodes},walltime={hours}:00",
            "command": "sleep 1d",
            "name": "hog",
        }
    )
    return job.uid


def ours(sim) -> list[dict]:
    return [job for job in sim.simulator.live_jobs() if job["user"] == USER]


def run_record(results: Path, run_id: str) -> dict:
    return json.loads((results / run_id / "run.json").read_text())


def test_reserve_maps_nodes_to_roles_and_release_ends_the_job(g5k, sim, tmp_path, agent_env):
    book = write_playbook(tmp_path, playbook_text())
    result = g5k("reserve", str(book), "--json")
    assert result.exit_code == 0, result.output
    out = json.loads(result.stdout)
    assert [len(out["roles"]["collector"]), len(out["roles"]["exporter"])] == [1, 2]
    assert all(
        node.startswith("gros-") and node.endswith(".nancy.grid5000.fr")
        for nodes in out["roles"].values()
        for node in nodes
    )
    [job] = ours(sim)
    assert job["state"] == "running" and job["name"] == out["run_id"]
    record = run_record(Path(agent_env["G5K_RESULTS_DIR"]), out["run_id"])
    assert record["jobs"][0]["uid"] == job["uid"]
    assert record["jobs"][0]["resources"] == "{cluster='gros'}/nodes=3,walltime=1:00:00"

    result = g5k("release", out["run_id"])
    assert result.exit_code == 0, result.output
    assert ours(sim) == []
    record = run_record(Path(agent_env["G5K_RESULTS_DIR"]), out["run_id"])
    assert record["released_at"] and record["jobs"][0]["released"]


def test_status_shows_the_running_job_and_walltime_left(g5k, sim, tmp_path):
    run_id = json.loads(g5k("reserve", str(write_playbook(tmp_path, playbook_text())), "--json").stdout)["run_id"]
    rows = json.loads(g5k("status", "--json").stdout)
    [row] = rows
    assert row["run_id"] == run_id and row["phase"] == "reserve:done"
    assert row["jobs"][0]["state"] == "running"
    assert 3500 < row["walltime_left"] <= 3600
    g5k("release", run_id)


def test_resume_reattaches_and_never_submits_twice(g5k, sim, tmp_path):
    run_id = json.loads(g5k("reserve", str(write_playbook(tmp_path, playbook_text())), "--json").stdout)["run_id"]
    result = g5k("reserve", "--run", run_id, "--json")
    assert result.exit_code == 0, result.output
    assert len(sim.simulator.jobs()) == 1
    g5k("release", run_id)


def test_job_that_would_start_after_the_deadline_is_deleted(g5k, sim, tmp_path):
    hog(sim)
    book = write_playbook(tmp_path, playbook_text(extra="  start_deadline: 0:30\n"))
    result = g5k("reserve", str(book))
    assert result.exit_code == 1
    assert "after start_deadline 0:30" in result.stderr and "it is deleted" in result.stderr
    assert ours(sim) == []
    assert len([job for job in sim.simulator.jobs() if job["user"] == USER]) == 1


def test_post_answered_500_after_creating_the_job_gives_exactly_one_job(tmp_path, agent_env):
    from g5kdeploy.simulator import SimConfig, serve_in_thread

    faults = "POST /sites/*/jobs:500=1,after=1,count=1"
    with serve_in_thread(SimConfig(launch_seconds=1.0, faults=faults, seed=1)) as faulty:
        store = RunStore(tmp_path / "results")
        playbook = parse_playbook(playbook_text())
        record = create_run(store, playbook, tmp_path / "exp.yaml", api_url=faulty.url)
        testbed = Grid5000Testbed(env={**agent_env, "G5K_API_URL": faulty.url})
        reserve(record, store, testbed)
        jobs = [job for job in faulty.simulator.jobs() if job["user"] == USER]
        assert len(jobs) == 1
        assert record.jobs[0].uid == jobs[0]["uid"]
        assert faulty.simulator.request_count("POST") == 1


def test_advance_reservation_accepted_waits_for_its_start(tmp_path, agent_env):
    from datetime import datetime

    from g5kdeploy.playbook import PARIS
    from g5kdeploy.simulator import SimConfig, serve_in_thread

    with serve_in_thread(SimConfig(speed=3600, launch_seconds=5, seed=1)) as fast:
        clock = fast.simulator.clock
        # Five wall seconds ahead at speed 3600: room to submit on a loaded machine before the start is past.
        start = datetime.fromtimestamp(clock.now() + 5 * 3600, PARIS).replace(microsecond=0)
        when = start.strftime("%Y-%m-%d %H:%M:%S")
        store = RunStore(tmp_path / "results")
        playbook = parse_playbook(playbook_text(extra=f"  reservation: '{when}'\n"))
        record = create_run(store, playbook, tmp_path / "exp.yaml", api_url=fast.url)
        testbed = Grid5000Testbed(env={**agent_env, "G5K_API_URL": fast.url}, clock=clock)
        reserve(record, store, testbed)
        [job] = fast.simulator.jobs()
        assert job["state"] == "running"
        assert job["started_at"] == int(start.timestamp())
        assert abs(record.jobs[0].started_at - start.timestamp()) < 1


def test_advance_reservation_refused_says_when_it_could_run(g5k, sim, tmp_path):
    from datetime import datetime

    from g5kdeploy.playbook import PARIS

    hog(sim, hours=10)
    when = datetime.fromtimestamp(sim.simulator.clock.now() + 3600, PARIS).strftime("%Y-%m-%d %H:%M:%S")
    result = g5k("reserve", str(write_playbook(tmp_path, playbook_text(extra=f"  reservation: '{when}'\n"))))
    # The playbook's date is what must change: bad input, the field named, OAR's own answer quoted.
    assert result.exit_code == 2
    assert "reservation.reservation: OAR refused the job on nancy" in result.stderr
    assert "Reservation not valid --> KO (This reservation could run at" in result.stderr
    assert "api.grid5000.fr" not in result.output
    assert ours(sim) == []


def test_release_finds_a_job_whose_uid_was_never_recorded(sim, tmp_path, agent_env):
    """A crash between the POST and the ledger update leaves only the intent: the name is enough."""
    store = RunStore(tmp_path / "results")
    record = create_run(store, parse_playbook(playbook_text()), tmp_path / "exp.yaml", api_url=sim.url)
    record.jobs.append(JobEntry(site="nancy", name=record.run_id, resources="nodes=1", walltime=3600))
    store.save(record)
    api = Api(Endpoint(url=sim.url, username=USER, password=PASSWORD))
    api.submit_job("nancy", {"name": record.run_id, "resources": "nodes=1", "command": "sleep 3600"})
    assert len(ours(sim)) == 1
    release(store.load(record.run_id), store, api, Grid5000Testbed(env=agent_env))
    assert ours(sim) == []


def test_site_auto_picks_a_site_with_room_and_says_why_not_the_others(g5k, sim, tmp_path):
    hog(sim, nodes=124)
    book = write_playbook(
        tmp_path,
        "version: 2\nname: exp\ntestbed: grid5000\nreservation:\n  site: [nancy, rennes]\n"
        "  roles:\n    exporter: {nodes: 4}\n  walltime: 1:00\n  max_wait: 0:05\n",
    )
    result = g5k("-v", "reserve", str(book), "--json")
    assert result.exit_code == 0, result.output
    [job] = ours(sim)
    assert job["assigned_nodes"][0].endswith(".nancy.grid5000.fr")
    g5k("release")


def test_release_all_releases_every_run_that_holds_jobs(g5k, sim, tmp_path):
    book = write_playbook(tmp_path, playbook_text(nodes=1))
    runs = [json.loads(g5k("reserve", str(book), "--json").stdout)["run_id"] for _ in range(2)]
    assert len(ours(sim)) == 2
    result = g5k("release", "--all", "--json")
    assert result.exit_code == 0, result.output
    assert sorted(json.loads(result.stdout)) == sorted(runs)
    assert ours(sim) == []

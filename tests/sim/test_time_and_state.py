"""Catching up simulated time quickly, saving only real changes, and answers rendered under the lock."""

import threading
import time

import requests

from g5kdeploy.simulator import SimConfig, serve_in_thread

JSON = {"Accept": "application/json"}


def test_busy_platform_at_huge_speed_answers_fast():
    with serve_in_thread(SimConfig(background_load=0.7, speed=1e5, seed=1)) as srv:
        time.sleep(1)
        started = time.monotonic()
        r = requests.get(f"{srv.url}/sites/nancy/status", headers=JSON, timeout=30)
        assert r.status_code == 200 and time.monotonic() - started < 3
        busy = sum(1 for n in r.json()["nodes"].values() if n["soft"] != "free")
        assert busy >= 0.5 * len(r.json()["nodes"])  # refilled at "now" after the jump


def test_replaying_most_of_a_day_stays_fast():
    with serve_in_thread(SimConfig(background_load=0.7, speed=4e4, seed=2)) as srv:
        time.sleep(1.5)  # 60000 simulated seconds: replayed event by event, under the one-day limit
        started = time.monotonic()
        assert requests.get(f"{srv.url}/sites/nancy/status", headers=JSON, timeout=30).status_code == 200
        assert time.monotonic() - started < 3
        # Finished background jobs are forgotten, so the job table does not grow with time.
        assert all(j["state"] not in ("terminated", "error") for j in srv.simulator.jobs())


def test_state_saved_only_on_changes_and_restored_after_a_long_gap(tmp_path, client):
    state = tmp_path / "sim.json"
    config = SimConfig(state_file=state, speed=1e5, background_load=0.5, seed=4)
    with serve_in_thread(config) as srv:
        job = (
            client(srv)
            .sites["nancy"]
            .jobs.create({"command": "sleep 36000000", "name": "keep", "resources": "nodes=1,walltime=1000"})
        )
        saved = state.stat().st_mtime_ns
        for _ in range(3):
            time.sleep(0.05)
            assert requests.get(f"{srv.url}/sites/nancy/status", headers=JSON).status_code == 200
            client(srv).sites["nancy"].jobs.list()
        assert state.stat().st_mtime_ns == saved
        client(srv).sites["nancy"].jobs.create({"command": "sleep 1"})
        assert state.stat().st_mtime_ns != saved
    time.sleep(1.2)  # more than a simulated day
    started = time.monotonic()
    with serve_in_thread(config) as srv:
        assert time.monotonic() - started < 3
        again = client(srv).sites["nancy"].jobs[job.uid]
        assert again.name == "keep" and again.state == "running"


def test_answers_are_snapshots_taken_under_the_lock(client):
    with serve_in_thread(SimConfig(speed=1000, background_load=0.3, seed=5)) as srv:
        sim = srv.simulator
        uid = client(srv).sites["nancy"].jobs.create({"command": "sleep 60"}).uid
        answer = sim.job("nancy", uid)
        answer["assigned_nodes"].clear()
        assert sim.job("nancy", uid)["assigned_nodes"]  # a copy, not the live job
        errors: list[BaseException] = []

        def hammer() -> None:
            try:
                site = client(srv).sites["nancy"]
                for _ in range(15):
                    site.jobs.create({"command": "sleep 3000", "resources": "nodes=2"}).delete()
            except BaseException as exc:  # reported below, in the main thread
                errors.append(exc)

        threads = [threading.Thread(target=hammer) for _ in range(3)]
        for thread in threads:
            thread.start()
        while any(t.is_alive() for t in threads):
            status = requests.get(f"{srv.url}/sites/nancy/status", headers=JSON, auth=("jdoe", "pw")).json()
            for node in status["nodes"].values():
                # Reservations come from the same instant as the status uid.
                for job in node["reservations"]:
                    assert "stopped_at" not in job
                    assert job["state"] == "waiting" or job["started_at"] <= status["uid"]
        assert errors == []

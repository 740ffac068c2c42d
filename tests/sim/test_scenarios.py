import os
import re
import signal
import subprocess
import sys
import time

import grid5000.exceptions
import pytest
import requests

from g5kdeploy.simulator import SimConfig, serve_in_thread
from g5kdeploy.simulator.oarsub import paris_time


def test_advance_reservation_accepted_then_refused(server, client):
    site = client(server).sites["luxembourg"]
    total = len(server.simulator.reference.nodes["luxembourg"])
    start = server.simulator.now() + 7200
    start -= start % 60
    job = site.jobs.create(
        {"command": "sleep 60", "resources": f"nodes={total},walltime=2", "reservation": paris_time(start)}
    )
    assert job.state == "waiting" and job.scheduled_at == start
    with pytest.raises(grid5000.exceptions.Grid5000CreateError) as err:
        site.jobs.create(
            {"command": "sleep 60", "resources": "nodes=1,walltime=1", "reservation": paris_time(start + 1800)}
        )
    found = re.search(r"Reservation not valid --> KO \(This reservation could run at (.+?)\)", str(err.value))
    assert found and found.group(1) == paris_time(start + 7200)
    with pytest.raises(grid5000.exceptions.Grid5000CreateError) as err:
        site.jobs.create({"command": "sleep 60", "reservation": "2001-01-01 10:00:00"})
    assert "Reservation too old" in str(err.value)
    # Normal jobs are planned around the reservation.
    later = site.jobs.create({"command": "sleep 60", "resources": "nodes=1,walltime=3"})
    assert later.scheduled_at == start + 7200


def test_state_file_survives_restart(tmp_path, client):
    state = tmp_path / "sim.json"
    config = SimConfig(state_file=state, speed=60, seed=3)
    with serve_in_thread(config) as srv:
        job = client(srv).sites["nancy"].jobs.create({"command": "sleep 36000", "name": "keep"})
        before = srv.simulator.now()
    time.sleep(0.5)
    with serve_in_thread(config) as srv:
        again = client(srv).sites["nancy"].jobs[job.uid]
        assert again.name == "keep" and again.state == "running"
        assert srv.simulator.now() - before >= 0.5 * 60 - 1  # time kept running while stopped
        new = client(srv).sites["nancy"].jobs.create({"command": "sleep 1"})
        assert new.uid == job.uid + 1


def test_background_load_is_visible(client):
    with serve_in_thread(SimConfig(background_load=0.5, seed=7)) as srv:
        nodes = client(srv).sites["lille"].status.list().nodes
        busy = [n for n in nodes.values() if n["soft"] != "free"]
        assert 0.3 * len(nodes) <= len(busy) <= 0.6 * len(nodes)
        assert all(r["user"].startswith("oar-bg-") for n in busy for r in n["reservations"])
        total = len(nodes)
        job = client(srv).sites["lille"].jobs.create({"command": "sleep 1", "resources": f"nodes={total}"})
        assert job.scheduled_at > job.submitted_at + 600


def test_deployments_ok_and_ko(client):
    with serve_in_thread(SimConfig(speed=600, deploy_ko_rate=0.5, seed=11, deploy_seconds=300)) as srv:
        site = client(srv).sites["nancy"]
        with pytest.raises(grid5000.exceptions.Grid5000CreateError) as err:
            site.deployments.create({"nodes": [], "environment": "debian12-min"})
        assert err.value.error_message == (
            "The deployment you are trying to submit is not valid: nodes must be a non-empty list of node FQDN"
        )
        plain = site.jobs.create({"command": "sleep 7200", "resources": "nodes=1"})
        job = site.jobs.create({"command": "sleep 7200", "resources": "nodes=6", "types": ["deploy"]})
        time.sleep(0.1)
        job.refresh()
        assert job.state == "running"
        with pytest.raises(grid5000.exceptions.Grid5000CreateError) as err:
            site.deployments.create({"nodes": plain.assigned_nodes, "environment": "debian12-min"})
        assert "Cannot launch deployment" in str(err.value)
        dep = site.deployments.create(
            {"nodes": job.assigned_nodes, "environment": "debian12-min", "key": "ssh-ed25519 AAAA me@here"}
        )
        assert dep.status == "processing" and dep.uid.startswith("D-")
        assert re.search(r"/sites/nancy/files/jdoe-key-[0-9a-f]{40}$", dep.key)
        time.sleep(0.7)
        dep.refresh()
        assert dep.status == "terminated"
        states = {r["state"] for r in dep.result.values()}
        assert states == {"OK", "KO"} and set(dep.result) == set(job.assigned_nodes)


def test_cli_prints_url_first_and_stops_on_sigterm(tmp_path):
    proc = subprocess.Popen(
        [sys.executable, "-m", "g5kdeploy.simulator", "--port", "0", "--state", str(tmp_path / "s.json")],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env={**os.environ, "PYTHONUNBUFFERED": "1"},
    )
    try:
        url = proc.stdout.readline().strip()
        assert re.fullmatch(r"http://127\.0\.0\.1:\d+/stable", url)
        assert requests.get(f"{url}/sites", timeout=5).status_code == 200
    finally:
        proc.send_signal(signal.SIGTERM)
        assert proc.wait(timeout=10) == 0
    assert (tmp_path / "s.json").exists()


def test_cli_rejects_bad_options(tmp_path):
    from typer.testing import CliRunner

    from g5kdeploy.simulator.cli import app

    runner = CliRunner()
    for args, option in [
        (["--speed", "0"], "--speed"),
        (["--deploy-ko-rate", "2"], "--deploy-ko-rate"),
        (["--prediction-delay", "-1"], "--prediction-delay"),
        (["--faults", "GET /x:boom=1"], "--faults"),
        (["--users", str(tmp_path / "no")], "--users"),
        (["--host", "192.0.2.1"], "--host"),
    ]:
        result = runner.invoke(app, ["serve", *args])
        assert result.exit_code == 2, args
        assert option in result.output, (args, result.output)


def test_deployment_flags_given_as_strings(client):
    with serve_in_thread(SimConfig(speed=600, seed=11)) as srv:
        site = client(srv).sites["nancy"]
        job = site.jobs.create({"command": "sleep 7200", "resources": "nodes=2", "types": ["deploy"]})
        time.sleep(0.1)
        job.refresh()
        dep = site.deployments.create(
            {"nodes": job.assigned_nodes, "environment": "debian12-min", "disable_disk_partitioning": "false"}
        )
        assert dep.disable_disk_partitioning is False
        r = requests.post(
            f"{srv.url}/sites/nancy/deployments",
            data={
                "nodes": job.assigned_nodes[0],
                "environment": "debian12-min",
                "ignore_nodes_deploying": "no",
                "disable_bootloader_install": "yes",
            },
            auth=("jdoe", "pw"),
            headers={"Accept": "application/json"},
        )
        assert r.status_code == 201
        assert r.json()["ignore_nodes_deploying"] is False and r.json()["disable_bootloader_install"] is True
        assert r.json()["nodes"] == [job.assigned_nodes[0]]

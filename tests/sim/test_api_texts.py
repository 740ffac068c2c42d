"""Answers that must read as g5k-api's (release v3.11.13) for the clients that parse them."""

import time

import grid5000.exceptions
import pytest
import requests

from g5kdeploy.simulator import SimConfig, serve_in_thread


def _until_running(job: grid5000.objects.Job, timeout: float = 30.0) -> None:
    deadline = time.monotonic() + timeout
    while job.state != "running":
        assert time.monotonic() < deadline, f"job {job.uid} still {job.state} after {timeout} s"
        job.refresh()


def test_background_jobs_belong_to_nobody_who_logs_in(client):
    """A user listing their own jobs on a loaded platform sees none they did not submit."""
    with serve_in_thread(SimConfig(seed=1, background_load=0.5)) as server:
        for login in ("alice", "bob", "carol", "dave", "jdoe"):
            jobs = client(server, user=login).sites["nancy"].jobs.list(user=login, state="running")
            assert jobs == [], login
        everyone = client(server).sites["nancy"].jobs.list(state="running")
        assert everyone, "the background load runs jobs"


def test_unknown_environment_is_refused_with_kadeploys_text(server, client):
    """deployments_controller_spec: 'Cannot launch deployment: Invalid environment specification -- ...'."""
    site = client(server).sites["nancy"]
    with pytest.raises(grid5000.exceptions.Grid5000CreateError) as err:
        site.deployments.create({"nodes": ["gros-1.nancy.grid5000.fr"], "environment": "debian99-nope"})
    assert err.value.response_code == 400
    assert err.value.error_message == (
        "Cannot launch deployment: Invalid environment specification -- the environment debian99-nope does not exist"
    )


def test_deployments_list_newest_first_and_oldest_first_with_reverse_true(client):
    """g5k-api's DeploymentsController#index: `created_at DESC`, ASC only when `reverse=true`."""
    with serve_in_thread(SimConfig(seed=1, speed=60.0, launch_seconds=0.0)) as server:
        site = client(server).sites["nancy"]
        job = site.jobs.create({"resources": "nodes=1", "command": "sleep 3600", "types": ["deploy"]})
        _until_running(job)
        made = []
        for _ in range(3):
            made.append(site.deployments.create({"nodes": job.assigned_nodes, "environment": "debian12-min"}).uid)
            job.refresh()  # lets the simulated clock move between two creations
        assert [d.uid for d in site.deployments.list()] == made[::-1]
        assert [d.uid for d in site.deployments.list(reverse="true")] == made
        job.delete()


def test_a_node_held_by_besteffort_only_has_no_busy_slots(server, client):
    """g5k-api lib/oar/resource.rb `derive_api_status`: busy_slots = busy - besteffort, freeable = besteffort."""
    site = client(server).sites["nancy"]
    job = site.jobs.create({"resources": "{cluster='gros'}/nodes=1", "command": "sleep 3600", "queue": "besteffort"})
    _until_running(job)
    node = job.assigned_nodes[0]
    status = requests.get(
        f"{server.url}/sites/nancy/status", params={"network_address": node}, auth=("jdoe", "pw"), timeout=10
    ).json()["nodes"][node]
    assert status["soft"] == "busy_besteffort"
    assert (status["busy_slots"], status["freeable_slots"], status["free_slots"]) == (0, 18, 0)
    job.delete()

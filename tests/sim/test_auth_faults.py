import grid5000.exceptions
import pytest
import requests

from g5kdeploy.simulator import SimConfig, parse_faults, serve_in_thread


def test_users_file_demands_credentials(client):
    """With a users file the simulator is the outside entry point: no credentials is the proxy's 401."""
    with serve_in_thread(SimConfig(users={"jdoe": "secret"})) as srv:
        with pytest.raises(grid5000.exceptions.Grid5000AuthenticationError):
            client(srv, password="wrong").sites.list()
        assert len(client(srv, password="secret").sites.list()) == 8
        with pytest.raises(grid5000.exceptions.Grid5000AuthenticationError):
            client(srv, user=None).sites.list()
        assert requests.get(f"{srv.url}/sites").status_code == 401


def test_anonymous_without_users_file(server, client):
    anon = client(server, user=None)
    assert len(anon.sites.list()) == 8
    with pytest.raises(grid5000.exceptions.Grid5000CreateError) as err:
        anon.sites["nancy"].jobs.create({"command": "sleep 1"})
    assert err.value.response_code == 403
    assert err.value.error_message == "You are not authorized to access this resource"
    job = client(server).sites["nancy"].jobs.create({"command": "sleep 600"})
    assert "reservations" not in next(iter(anon.sites["nancy"].status.list().nodes.values()))
    r = requests.delete(f"{server.url}/sites/nancy/jobs/{job.uid}")
    assert r.status_code == 403


def test_non_owner_cannot_delete(server, client):
    job = client(server).sites["nancy"].jobs.create({"command": "sleep 600"})
    with pytest.raises(grid5000.exceptions.Grid5000DeleteError) as err:
        client(server, user="mallory").sites["nancy"].jobs.delete(job.uid)
    assert err.value.response_code == 403
    assert client(server).sites["nancy"].jobs[job.uid].state != "error"


def test_persistent_get_500_exhausts_retries(client):
    with serve_in_thread(SimConfig(faults="GET /sites/*/jobs:500=1")) as srv:
        site = client(srv).sites["nancy"]
        with pytest.raises(requests.exceptions.RetryError):
            site.jobs.list()
        assert srv.simulator.request_count("GET", "/sites/nancy/jobs") == 6


def test_post_500_after_effect_creates_job_once(client):
    with serve_in_thread(SimConfig(faults="POST /sites/*/jobs:500=1,after=1,count=1")) as srv:
        site = client(srv).sites["nancy"]
        with pytest.raises(grid5000.exceptions.Grid5000CreateError) as err:
            site.jobs.create({"command": "sleep 600", "name": "once"})
        assert err.value.response_code == 500
        assert len(site.jobs.list(name="once")) == 1
        site.jobs.create({"command": "sleep 600", "name": "twice"})  # count=1: the next POST goes through
        assert srv.simulator.request_count("POST") == 2


def test_drop_closes_connection():
    with serve_in_thread(SimConfig(faults="GET /sites:drop=1,count=1")) as srv:
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"{srv.url}/sites", headers={"Accept": "application/json"})
        assert requests.get(f"{srv.url}/sites").status_code == 200


@pytest.mark.parametrize("spec", ["GET /x:700=1", "FETCH /x:500=1", "GET /x:500=2", "GET /x:foo=1", "GET /x"])
def test_bad_fault_specs(spec):
    with pytest.raises(ValueError, match="fault rule"):
        parse_faults(spec)

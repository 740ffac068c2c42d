"""Who the caller is (Basic auth, the frontend's X-Api-User-CN header, "no user" logins) and fault timing."""

import time

import pytest
import requests

from g5kdeploy.simulator import SimConfig, serve_in_thread
from g5kdeploy.simulator.errors import FORBIDDEN

JOB = {"command": "sleep 600", "name": "f"}
JSON = {"Accept": "application/json"}


def test_user_header_is_trusted_only_when_asked(client):
    with serve_in_thread(SimConfig(users={"jdoe": "secret"}, trust_user_header=True)) as srv:
        r = requests.post(f"{srv.url}/sites/nancy/jobs", json=JOB, headers={**JSON, "X-Api-User-CN": "jdoe"})
        assert r.status_code == 201 and r.json()["user"] == "jdoe"
        # On a frontend, a caller the proxy did not name reads as "no user" instead of getting a 401.
        assert requests.get(f"{srv.url}/sites", headers=JSON).status_code == 200
        r = requests.post(f"{srv.url}/sites/nancy/jobs", json=JOB, headers={**JSON, "X-Api-User-CN": "anonymous"})
        assert r.status_code == 403 and r.text == FORBIDDEN
    with serve_in_thread(SimConfig()) as srv:
        r = requests.post(f"{srv.url}/sites/nancy/jobs", json=JOB, headers={**JSON, "X-Api-User-CN": "jdoe"})
        assert r.status_code == 403 and r.text == FORBIDDEN


@pytest.mark.parametrize("login", ["anonymous", "unknown", "(unknown)"])
def test_no_user_logins_read_but_cannot_write(server, login):
    auth = (login, "pw")
    assert requests.get(f"{server.url}/sites/nancy/jobs", auth=auth, headers=JSON).status_code == 200
    r = requests.post(f"{server.url}/sites/nancy/jobs", json=JOB, auth=auth)
    assert r.status_code == 403 and r.text == FORBIDDEN
    with serve_in_thread(SimConfig(trust_user_header=True)) as srv:
        r = requests.post(f"{srv.url}/sites/nancy/jobs", json=JOB, headers={"X-Api-User-CN": login})
        assert r.status_code == 403 and r.text == FORBIDDEN
        r = requests.post(f"{srv.url}/sites/nancy/jobs", json=JOB, headers={"X-Api-User-CN": ""})
        assert r.status_code == 403


def test_drop_after_effect_creates_the_job_but_loses_the_answer():
    with serve_in_thread(SimConfig(faults="POST /sites/*/jobs:drop=1,after=1,count=1")) as srv:
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post(f"{srv.url}/sites/nancy/jobs", json=JOB, auth=("jdoe", "pw"))
        assert [j["name"] for j in srv.simulator.jobs()] == ["f"]
        r = requests.post(f"{srv.url}/sites/nancy/jobs", json=JOB, auth=("jdoe", "pw"))
        assert r.status_code == 201 and len(srv.simulator.jobs()) == 2


def test_drop_without_after_happens_before_the_server_acts():
    with serve_in_thread(SimConfig(faults="POST /sites/*/jobs:drop=1,count=1")) as srv:
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.post(f"{srv.url}/sites/nancy/jobs", json=JOB, auth=("jdoe", "pw"))
        assert srv.simulator.jobs() == []


@pytest.mark.parametrize(("after", "created"), [(1, 1), (0, 0)])
def test_delay_after_effect_holds_only_the_answer(after, created):
    with serve_in_thread(SimConfig(faults=f"POST /sites/*/jobs:delay=1,after={after},count=1")) as srv:
        with pytest.raises(requests.exceptions.ReadTimeout):
            requests.post(f"{srv.url}/sites/nancy/jobs", json=JOB, auth=("jdoe", "pw"), timeout=0.4)
        assert len(srv.simulator.jobs()) == created  # while the server still holds the answer
        time.sleep(0.8)
        assert len(srv.simulator.jobs()) == 1


def test_count_only_spends_rules_that_injected():
    # The drop wins on the first request, so the 500 rule injected nothing and must still be armed.
    with serve_in_thread(SimConfig(faults="GET /sites:drop=1,count=1;GET /sites:500=1,count=1")) as srv:
        with pytest.raises(requests.exceptions.ConnectionError):
            requests.get(f"{srv.url}/sites", headers=JSON)
        assert requests.get(f"{srv.url}/sites", headers=JSON).status_code == 500
        assert requests.get(f"{srv.url}/sites", headers=JSON).status_code == 200

"""The API client against a misbehaving simulator: slow POSTs, transient 5xx, repeated deletes."""

from __future__ import annotations

import pytest

from g5kdeploy.credentials import Endpoint
from g5kdeploy.errors import ApiError
from g5kdeploy.simulator import SimConfig, serve_in_thread
from g5kdeploy.testbeds.api import Api

BODY = {"name": "exp-1", "resources": "nodes=1,walltime=1:00", "command": "sleep 3600"}


def client(url: str, **options) -> Api:
    return Api(Endpoint(url=url, username="jdoe", password="pw"), retry_wait_max=0.2, **options)


def test_post_that_times_out_is_looked_up_by_name_not_sent_twice():
    with serve_in_thread(SimConfig(faults="POST /sites/*/jobs:delay=1.5,count=1", seed=1)) as server:
        job = client(server.url, timeout=0.5, submit_settle=1.5).submit_job("nancy", BODY)
        jobs = server.simulator.jobs()
        assert [j["uid"] for j in jobs] == [job["uid"]]
        assert server.simulator.request_count("POST") == 1


def test_post_dropped_before_the_server_acted_is_sent_again_once():
    with serve_in_thread(SimConfig(faults="POST /sites/*/jobs:drop=1,count=1", seed=1)) as server:
        job = client(server.url, submit_settle=0.1).submit_job("nancy", BODY)
        assert [j["uid"] for j in server.simulator.jobs()] == [job["uid"]]
        assert server.simulator.request_count("POST") == 2


def test_transient_503_on_reads_is_retried():
    with serve_in_thread(SimConfig(faults="GET /sites/nancy/jobs/*:503=1,count=2", seed=1)) as server:
        api = client(server.url)
        uid = api.submit_job("nancy", BODY)["uid"]
        assert api.get_job("nancy", uid)["uid"] == uid
        assert server.simulator.request_count("GET", f"/sites/nancy/jobs/{uid}") == 3


def test_persistent_server_errors_end_in_a_clear_error():
    with serve_in_thread(SimConfig(faults="GET /sites/nancy/jobs/*:503=1", seed=1)) as server:
        api = client(server.url, attempts=3)
        uid = api.submit_job("nancy", BODY)["uid"]
        with pytest.raises(ApiError, match=rf"get job nancy/{uid}: 503"):
            api.get_job("nancy", uid)


def test_refused_submission_carries_oar_text_and_is_not_retried():
    with serve_in_thread(SimConfig(seed=1)) as server:
        api = client(server.url)
        with pytest.raises(ApiError, match="There are not enough resources for your request") as caught:
            api.submit_job("nancy", {**BODY, "resources": "{cluster='gros'}/nodes=500,walltime=1:00"})
        assert caught.value.status == 400
        assert server.simulator.request_count("POST") == 1


def test_deleting_twice_is_not_an_error():
    with serve_in_thread(SimConfig(seed=1)) as server:
        api = client(server.url)
        uid = api.submit_job("nancy", BODY)["uid"]
        assert api.delete_job("nancy", uid) is True
        assert api.delete_job("nancy", uid) is False

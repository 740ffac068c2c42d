import time

import grid5000.exceptions
import pytest
import requests

from g5kdeploy.simulator import SimConfig, serve_in_thread

AUTH = ("jdoe", "pw")


def test_lifecycle_at_speed(client):
    with serve_in_thread(SimConfig(speed=600, seed=1)) as srv:
        site = client(srv).sites["nancy"]
        job = site.jobs.create({"command": "sleep 300", "resources": "{cluster='gros'}/nodes=2,walltime=0:30"})
        assert job.state == "waiting" and isinstance(job.uid, int) and job.walltime == 1800
        assert len(job.assigned_nodes) == 2 and all(n.startswith("gros-") for n in job.assigned_nodes)
        assert job.resources_by_type["cores"][0].endswith(".nancy.grid5000.fr/0")
        deadline = time.time() + 5
        while job.state != "terminated" and time.time() < deadline:
            time.sleep(0.1)
            job.refresh()
        assert job.state == "terminated"
        assert job.submitted_at <= job.scheduled_at <= job.started_at < job.stopped_at
        assert job.stopped_at - job.started_at == pytest.approx(305, abs=1)  # launch 5 s + sleep 300
        states = [s for s, _ in srv.simulator.job_history("nancy", job.uid)]
        assert states == ["waiting", "launching", "running", "terminated"]


def test_walltime_expiry_ends_in_error(client):
    with serve_in_thread(SimConfig(speed=3600, seed=1)) as srv:
        site = client(srv).sites["nancy"]
        job = site.jobs.create({"command": "sleep 999999", "resources": "nodes=1,walltime=1"})
        time.sleep(1.3)
        job.refresh()
        assert job.state == "error"
        assert job.stopped_at - job.started_at == 3600


def test_submit_errors(server, client):
    site = client(server).sites["nancy"]
    with pytest.raises(grid5000.exceptions.Grid5000CreateError) as err:
        site.jobs.create({"resources": "nodes=1"})
    assert err.value.response_code == 400
    assert err.value.error_message == (
        "The job you are trying to submit is not valid: you must give a :command to execute on launch"
    )
    with pytest.raises(grid5000.exceptions.Grid5000CreateError) as err:
        site.jobs.create({"command": "sleep 1", "resources": "nodes=1000"})
    message = str(err.value)
    assert "/sites/nancy/internal/oarapi/jobs.json failed with status 400" in message
    assert "There are not enough resources for your request" in message
    with pytest.raises(grid5000.exceptions.Grid5000CreateError) as err:
        site.jobs.create({"command": "sleep 1", "properties": "colour='red'"})
    assert "Bad resource request (" in str(err.value) and "colour" in str(err.value)
    with pytest.raises(grid5000.exceptions.Grid5000CreateError) as err:
        site.jobs.create({"command": "sleep 1", "reservation": "tomorrow noon"})
    assert "Syntax error in reservation start date, should at least match the format: 'YYYY-MM-DD hh:mm:ss'." in str(
        err.value
    )


def test_properties_filter_selects_nodes(server, client):
    site = client(server).sites["nancy"]
    job = site.jobs.create(
        {"command": "sleep 60", "resources": "nodes=3", "properties": "cluster in ('grisou') and memnode > 1000"}
    )
    assert all(n.startswith("grisou-") for n in job.assigned_nodes) and len(job.assigned_nodes) == 3
    assert job.properties == "(cluster in ('grisou') and memnode > 1000) AND maintenance = 'NO'"
    job = site.jobs.create({"command": "sleep 60", "resources": "{cluster='gros'}/nodes=1+{cluster='grisou'}/nodes=1"})
    assert sorted(n.split("-")[0] for n in job.assigned_nodes) == ["grisou", "gros"]


def test_exotic_needs_type(server, client):
    site = client(server).sites["lyon"]
    with pytest.raises(grid5000.exceptions.Grid5000CreateError) as err:
        site.jobs.create({"command": "sleep 1", "properties": "cluster='pyxis'", "queue": "testing"})
    assert "There are not enough resources for your request" in str(err.value)
    job = site.jobs.create(
        {"command": "sleep 1", "properties": "cluster='pyxis'", "queue": "testing", "types": ["exotic"]}
    )
    assert job.assigned_nodes[0].startswith("pyxis-")


def test_fifo_waits_for_busy_nodes(server, client):
    site = client(server).sites["luxembourg"]
    total = len(server.simulator.reference.nodes["luxembourg"])
    first = site.jobs.create({"command": "sleep 7200", "resources": f"nodes={total},walltime=2"})
    second = site.jobs.create({"command": "sleep 60", "resources": "nodes=1,walltime=1"})
    assert second.scheduled_at == pytest.approx(first.scheduled_at + 7200, abs=2)
    first.delete()
    second.refresh()
    assert second.scheduled_at - second.submitted_at < 5  # rescheduled when the first job went away


def test_list_filters_and_paging(server, client):
    site = client(server).sites["nancy"]
    ids = [site.jobs.create({"command": "sleep 600", "name": f"exp{i % 2}"}).uid for i in range(5)]
    other = client(server, user="bob").sites["nancy"]
    other.jobs.create({"command": "sleep 600", "name": "exp0"})
    mine = site.jobs.list(user="jdoe")
    assert [j.uid for j in mine] == sorted(ids, reverse=True)
    assert not hasattr(mine[0], "assigned_nodes")
    assert [j.uid for j in site.jobs.list(user="jdoe", name="exp0")] == [ids[4], ids[2], ids[0]]
    assert hasattr(site.jobs.list(user="jdoe", resources="yes")[0], "assigned_nodes")
    page = requests.get(
        f"{server.url}/sites/nancy/jobs",
        params={"limit": 2, "offset": 1, "user": "jdoe"},
        headers={"Accept": "application/json"},
    ).json()
    assert page["total"] == 5 and page["offset"] == 1 and [j["uid"] for j in page["items"]] == ids[3:1:-1]
    assert site.jobs.list(state="running,terminated", user="jdoe") == []


def test_delete_twice(server, client):
    gk = client(server)
    job = gk.sites["nancy"].jobs.create({"command": "sleep 600"})
    r = requests.delete(f"{server.url}/sites/nancy/jobs/{job.uid}", auth=("jdoe", "pw"))
    assert r.status_code == 202 and r.text == ""
    assert r.headers["X-Oar-Info"] == (
        f"Deleting the job = {job.uid} ...REGISTERED. The job(s) [ {job.uid} ] will be deleted in a near future."
    )
    assert r.headers["Location"].endswith(f"/stable/sites/nancy/jobs/{job.uid}")
    job.refresh()
    assert job.state == "error" and job.events[0]["type"] == "FRAG_JOB_REQUEST"
    with pytest.raises(grid5000.exceptions.Grid5000DeleteError) as err:
        job.delete()
    assert err.value.response_code == 400 and f"Cannot frag {job.uid} ; This job was already killed." in str(err.value)
    with pytest.raises(grid5000.exceptions.Grid5000GetError) as err:
        gk.sites["nancy"].jobs[424242]
    assert err.value.error_message == "Couldn't find OAR::Job with 'job_id'=424242"


def test_walltime_change(client):
    with serve_in_thread(SimConfig(speed=60, seed=1)) as srv:
        job = client(srv).sites["nancy"].jobs.create({"command": "sleep 6000", "resources": "nodes=1,walltime=1"})
        url = f"{srv.url}/sites/nancy/jobs/{job.uid}/walltime"
        r = requests.post(
            url,
            data="walltime=+1:00",
            auth=("jdoe", "pw"),
            headers={"Content-Type": "application/x-www-form-urlencoded"},
        )
        assert r.status_code == 415
        r = requests.post(url, json={"walltime": "+1:00"}, auth=("jdoe", "pw"))
        assert (r.status_code, r.text) == (403, f"Job {job.uid} is not running")  # still waiting/launching
        time.sleep(0.3)
        assert job.walltime_change.get().walltime == "1:00:00"
        r = requests.post(url, json={"walltime": "+1:00"}, auth=("jdoe", "pw"))
        assert r.status_code == 202
        job.refresh()
        assert job.state == "running" and job.walltime == 7200


def test_walltime_decrease_and_formats(client):
    with serve_in_thread(SimConfig(speed=600, seed=1)) as srv:
        job = client(srv).sites["nancy"].jobs.create({"command": "sleep 60000", "resources": "nodes=1,walltime=2"})
        time.sleep(0.05)
        r = requests.post(f"{srv.url}/sites/nancy/jobs/{job.uid}/walltime", json={"walltime": "-0:30"}, auth=AUTH)
        assert r.status_code == 202 and r.text.startswith("Walltime change request")
        info = job.walltime_change.get()
        assert info.walltime == "1:30:00" and info.granted == "-0:30:00" and info.pending == "0:00:00"
        requests.post(f"{srv.url}/sites/nancy/jobs/{job.uid}/walltime", json={"walltime": "+1:00:05"}, auth=AUTH)
        assert job.walltime_change.get().granted == "+0:30:05"


def test_extension_does_not_push_back_waiting_jobs_unless_asked(client):
    with serve_in_thread(SimConfig(speed=600, seed=1)) as srv:
        site = client(srv).sites["luxembourg"]
        total = len(srv.simulator.reference.nodes["luxembourg"])
        first = site.jobs.create({"command": "sleep 60000", "resources": f"nodes={total},walltime=1"})
        time.sleep(0.05)
        second = site.jobs.create({"command": "sleep 60", "resources": "nodes=1,walltime=1"})
        planned = second.scheduled_at
        url = f"{srv.url}/sites/luxembourg/jobs/{first.uid}/walltime"
        r = requests.post(url, json={"walltime": "+1:00"}, auth=AUTH)
        # OAR's answer is the same text either way; the extension is not granted while it would delay a job.
        assert r.status_code == 202 and r.text.startswith("Walltime change request")
        first.refresh()
        second.refresh()
        assert first.walltime == 3600 and second.scheduled_at == planned
        r = requests.post(url, json={"walltime": "+1:00", "delay_next_jobs": True}, auth=AUTH)
        assert r.status_code == 202
        first.refresh()
        second.refresh()
        assert first.walltime == 7200 and second.scheduled_at == planned + 3600

"""Walltime change and the reference history as g5k-api answers them, and the API under `/sid` (issue 17, 6-7)."""

import time

import grid5000
import grid5000.exceptions
import pytest
import requests

from g5kdeploy.simulator import SimConfig, serve_in_thread

AUTH = ("jdoe", "pw")
ITEM = "application/vnd.grid5000.item+json"
INVALID = "The job walltime change you are trying to submit is not valid: "


def _until_running(job, deadline_s=10.0):
    deadline = time.monotonic() + deadline_s
    while job.state != "running":
        assert time.monotonic() < deadline, f"job {job.uid} still {job.state}"
        job.refresh()


@pytest.fixture
def fast():
    with serve_in_thread(SimConfig(speed=600, seed=1)) as srv:
        yield srv


def test_walltime_change_answers_oar_text(fast, client):
    """g5k-api spec/controllers/jobs_walltime_controller_spec.rb, "should return 202 when walltime change request
    is accepted": the body is OAR's `cmd_output` as it is, the Location the walltime resource."""
    job = client(fast).sites["nancy"].jobs.create({"command": "sleep 60000", "resources": "nodes=1,walltime=1"})
    _until_running(job)
    url = f"{fast.url}/sites/nancy/jobs/{job.uid}/walltime"
    r = requests.post(url, json={"walltime": "+1:00"}, auth=AUTH, timeout=30)
    assert r.status_code == 202
    assert r.text == f"Walltime change request accepted for job {job.uid}, it will be handled shortly"
    assert r.headers["Content-Type"] == ITEM
    assert r.headers["Location"] == url
    r = requests.post(url, json={"walltime": "+0:30"}, auth=AUTH, headers={"Accept": "application/json"}, timeout=30)
    assert (r.status_code, r.text) == (
        202,
        f"Walltime change request updated for job {job.uid}, it will be handled shortly",
    )
    assert r.headers["Content-Type"].startswith("application/json")
    job.refresh()
    assert job.walltime == 3600 + 5400


def test_walltime_change_through_python_grid5000(fast, client):
    """python-grid5000 asks for `application/json` and gets OAR's text under that type, as from the real API
    (g5k-api's `render_result` of a String): it cannot parse the answer, though the change is made."""
    job = client(fast).sites["nancy"].jobs.create({"command": "sleep 60000", "resources": "nodes=1,walltime=1"})
    _until_running(job)
    with pytest.raises(grid5000.exceptions.Grid5000ParsingError):
        job.walltime_change.create({"walltime": "+1:00"})
    job.refresh()
    assert job.walltime == 7200


def _post(srv, uid, body, auth=AUTH):
    r = requests.post(f"{srv.url}/sites/nancy/jobs/{uid}/walltime", json=body, auth=auth, timeout=30)
    assert r.headers["Content-Type"].startswith("text/plain")
    return r.status_code, r.text


def test_walltime_change_refusals(client):
    """g5k-api spec/controllers/jobs_walltime_controller_spec.rb (404, 403 other user, 403 not running, 403 force,
    400 missing walltime, 400 non-boolean flags) and spec/models/grid5000/job_walltime_spec.rb."""
    with serve_in_thread(SimConfig(speed=1, seed=1)) as srv:
        site = client(srv).sites["nancy"]
        job = site.jobs.create({"command": "sleep 60000", "resources": "nodes=1,walltime=1"})
        assert job.state != "running"  # launching takes 5 s at speed 1
        assert _post(srv, job.uid, {"walltime": "+1:00"}) == (403, f"Job {job.uid} is not running")
        other = ("marie", "pw")
        assert _post(srv, job.uid, {"walltime": "+1:00"}, other) == (403, f"Job {job.uid} does not belong to you")
        assert _post(srv, job.uid, {"force": True}) == (400, INVALID + "you must give a new walltime")
        assert _post(srv, job.uid, {"walltime": 3600}) == (400, INVALID + "new walltime must be a String")
        for flag in ("force", "delay_next_jobs", "whole"):
            assert _post(srv, job.uid, {"walltime": "+1:00", flag: 1}) == (
                400,
                INVALID + "delay_next_jobs, force, whole must be a Boolean",
            )
        assert _post(srv, 99999999, {"walltime": "+1:00"}) == (404, "Job id '99999999' cannot be found.")
        assert _post(srv, job.uid, {"walltime": "+1h"}) == (400, "Syntax error")
        _until_running(job)
        forced = {"walltime": "+1:00", "force": True}
        assert _post(srv, job.uid, forced) == (403, "Walltime change for this job is not allowed to be forced")
        with pytest.raises(grid5000.exceptions.Grid5000CreateError) as err:
            job.walltime_change.create({"walltime": "+1:00", "force": "maybe"})
        assert err.value.response_code == 400
        job.refresh()
        assert job.walltime == 3600


def test_versions_of_every_level(fast):
    """g5k-api spec/controllers/versions_controller_spec.rb: list, item, `latest` (307), unknown version and
    resource; one version, the bundled inventory's."""
    sha = fast.simulator.reference.version
    levels = ("", "/sites", "/sites/nancy", "/sites/nancy/clusters", "/sites/nancy/clusters/gros")
    for path in (*levels, "/sites/nancy/clusters/gros/nodes", "/sites/nancy/clusters/gros/nodes/gros-1"):
        r = requests.get(f"{fast.url}{path}/versions", timeout=30)
        assert r.status_code == 200, path
        doc = r.json()
        assert (doc["total"], doc["offset"], len(doc["items"])) == (1, 0, 1)
        assert sorted(link["rel"] for link in doc["links"]) == ["parent", "self"]
        item = doc["items"][0]
        assert sorted(item) == ["author", "date", "links", "message", "type", "uid"]
        assert (item["uid"], item["type"]) == (sha, "version")
        self_href = next(link["href"] for link in item["links"] if link["rel"] == "self")
        assert self_href == f"/stable{path}/versions/{sha}"
        r = requests.get(f"{fast.url}{path}/versions/latest", allow_redirects=False, timeout=30)
        assert (r.status_code, r.headers["Location"]) == (307, f"/stable{path}/versions/{sha}")
        r = requests.get(f"{fast.url}{path}/versions/{sha}", timeout=30)
        assert (r.status_code, r.json()) == (200, item)
    r = requests.get(f"{fast.url}/versions/doesnotexist", timeout=30)
    assert (r.status_code, r.text) == (404, "Reference (branch or commit) 'doesnotexist' cannot be found.")
    r = requests.get(f"{fast.url}/does/not/exist/versions", timeout=30)
    assert (r.status_code, r.text) == (404, "/does/not/exist does not exist.")


def test_whole_api_under_sid(fast, client):
    """The front proxy serves `sid` beside `stable` (shared reference g5k-api.md §1.1): reads, writes, links."""
    sid = fast.url.rsplit("/", 1)[0] + "/sid"
    gk = grid5000.Grid5000(uri=sid, username="jdoe", password="pw")
    site = gk.sites["nancy"]
    assert any(link["href"] == "/sid/sites/nancy" for link in site.links)
    assert len(site.clusters.list()) == len(client(fast).sites["nancy"].clusters.list())
    job = site.jobs.create({"command": "sleep 600", "resources": "nodes=1"})
    assert client(fast).sites["nancy"].jobs[job.uid].user == "jdoe"
    job.delete()
    r = requests.get(f"{sid}/sites/nancy/versions", timeout=30)
    assert r.status_code == 200 and r.json()["items"][0]["links"][1]["href"] == "/sid/sites/nancy"
    assert requests.get(f"{sid}/sites/atlantis", timeout=30).text == "Cannot find resource /sites/atlantis"

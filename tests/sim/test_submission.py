"""What a submission is checked against: local validation, OAR relays, reservation windows and DST."""

from datetime import UTC, datetime

import grid5000.exceptions
import pytest
import requests

from g5kdeploy.simulator import SimConfig, serve_in_thread
from g5kdeploy.simulator.oarsub import parse_window

INVALID = "The job you are trying to submit is not valid: "
SYNTAX = "Syntax error in reservation start date, should at least match the format: 'YYYY-MM-DD hh:mm:ss'."


def _refusal(site, body):
    with pytest.raises(grid5000.exceptions.Grid5000CreateError) as err:
        site.jobs.create(body)
    return err.value


def test_malformed_reservation_is_a_local_error(server, client):
    err = _refusal(client(server).sites["nancy"], {"command": "sleep 1", "reservation": "tomorrow noon"})
    assert err.response_code == 400
    assert err.error_message.startswith(INVALID + SYNTAX) and "oarapi" not in err.error_message
    err = _refusal(client(server).sites["nancy"], {"command": "sleep 1", "reservation": "2001-01-01 10:00:00"})
    assert "internal/oarapi/jobs.json failed with status 400" in err.error_message
    assert "Reservation too old" in err.error_message


@pytest.mark.parametrize("resources", ["slash_22=1+nodes=1", "subnet=1+nodes=1"])
def test_non_node_resources_are_refused(server, client, resources):
    err = _refusal(client(server).sites["nancy"], {"command": "sleep 1", "resources": resources})
    assert err.response_code == 400 and "internal/oarapi/jobs.json failed with status 400" in err.error_message
    assert "Bad resource request (" in err.error_message and "not allocated by the simulator" in err.error_message


def test_method_not_allowed_body(server):
    r = requests.put(f"{server.url}/sites/nancy/jobs", auth=("jdoe", "pw"))
    assert r.status_code == 405 and r.text == "Method Not Allowed"


@pytest.mark.parametrize(
    ("given", "shown"),
    [
        ("(cluster='gros')", "(cluster='gros') AND maintenance = 'NO'"),
        ("cluster='gros'", "(cluster='gros') AND maintenance = 'NO'"),
        ("(cluster='gros') or (cluster='grisou')", "((cluster='gros') or (cluster='grisou')) AND maintenance = 'NO'"),
        ("cluster in (')')", "(cluster in (')')) AND maintenance = 'NO'"),
    ],
)
def test_properties_are_wrapped_once(given, shown):
    from g5kdeploy.simulator.records import Job
    from g5kdeploy.simulator.render import oar_properties

    assert oar_properties(Job(1, "nancy", "u", "c", "nodes=1", given, 60, 0.0)) == shown


def test_reservation_window_sets_the_walltime(server, client):
    site = client(server).sites["nancy"]
    job = site.jobs.create(
        {"command": "sleep 1", "resources": "nodes=1,walltime=5", "reservation": "2030-07-01 12:00, 2030-07-01 14:30"}
    )
    assert job.walltime == 9000 and job.scheduled_at == parse_window("2030-07-01 12:00", 0)[0]
    err = _refusal(site, {"command": "sleep 1", "reservation": "2030-07-01 12:00, 2030-07-01 11:00"})
    assert err.response_code == 400 and err.error_message.startswith(INVALID)


def test_reservation_dates_at_dst_changes(server, client):
    """Non-existent local times (spring forward) are invalid; ambiguous ones (fall back) mean the first one."""
    site = client(server).sites["nancy"]
    err = _refusal(site, {"command": "sleep 1", "reservation": "2030-03-31 02:30:00"})
    assert err.response_code == 400 and err.error_message.startswith(INVALID + SYNTAX)
    job = site.jobs.create({"command": "sleep 1", "reservation": "2030-10-27 02:30:00"})
    assert job.scheduled_at == datetime(2030, 10, 27, 0, 30, tzinfo=UTC).timestamp()  # CEST, UTC+2
    assert parse_window("2030-03-31 01:59:59, 2030-03-31 03:00:00", 0) == (
        datetime(2030, 3, 31, 0, 59, 59, tzinfo=UTC).timestamp(),
        datetime(2030, 3, 31, 1, 0, tzinfo=UTC).timestamp(),
    )


def test_prediction_delay_and_deleted_waiting_job(client):
    with serve_in_thread(SimConfig(speed=600, prediction_delay=60, seed=1)) as srv:
        site = client(srv).sites["luxembourg"]
        job = site.jobs.create({"command": "sleep 7200", "resources": "nodes=1,walltime=3"})
        assert job.state == "waiting" and not hasattr(job, "scheduled_at") and job.assigned_nodes == []
        srv.simulator.clock.sleep(65)
        job.refresh()
        assert job.scheduled_at <= job.submitted_at + 61 and len(job.assigned_nodes) == 1
    with serve_in_thread(SimConfig(seed=1)) as srv:
        site = client(srv).sites["luxembourg"]
        total = len(srv.simulator.reference.nodes["luxembourg"])
        site.jobs.create({"command": "sleep 7200", "resources": f"nodes={total},walltime=2"})
        waiting = site.jobs.create({"command": "sleep 60", "resources": "nodes=1"})
        assert waiting.assigned_nodes and waiting.scheduled_at > waiting.submitted_at
        waiting.delete()
        # python-grid5000's refresh() keeps attributes the new answer lacks: look at the answer itself.
        [deleted] = [j for j in srv.simulator.jobs("luxembourg") if j["uid"] == waiting.uid]
        assert deleted["state"] == "error" and deleted["assigned_nodes"] == [] and "scheduled_at" not in deleted

"""What OAR alone can refuse: exit 2, the playbook field it is about, OAR's words, and never the real API's URL."""

from __future__ import annotations

from datetime import datetime

import pytest

from g5kdeploy.credentials import Endpoint
from g5kdeploy.errors import JobRefused
from g5kdeploy.playbook import PARIS
from g5kdeploy.simulator import SimConfig, serve_in_thread
from g5kdeploy.testbeds.api import Api
from tests.integration.test_reserve import hog

BODY = {"name": "exp-1", "resources": "{cluster='gros'}/nodes=1,walltime=1:00", "command": "sleep 3600"}
ROLES = "reservation.roles (nodes, cluster, properties)"


@pytest.fixture
def server():
    with serve_in_thread(SimConfig(seed=1)) as running:
        yield running


def paris(epoch: float) -> str:
    return datetime.fromtimestamp(epoch, PARIS).strftime("%Y-%m-%d %H:%M:%S")


@pytest.mark.parametrize(
    ("change", "field", "oar_says"),
    [
        ({"reservation": "2020-01-01 10:00:00"}, "reservation.reservation", "[OAR] Reservation too old"),
        ({"resources": "{cluster='gros'}/nodes=500,walltime=1:00"}, ROLES, "There are not enough resources"),
        ({"resources": "{cluster='gros' AND (colour='blue')}/nodes=1"}, ROLES, 'column "colour" does not exist'),
    ],
    ids=["past-reservation", "too-many-nodes", "unknown-property"],
)
def test_a_refused_job_names_the_field_and_quotes_oar(server, change, field, oar_says):
    api = Api(Endpoint(url=server.url, username="jdoe", password="pw"))
    with pytest.raises(JobRefused) as caught:
        api.submit_job("nancy", {**BODY, **change})
    refusal = caught.value
    assert refusal.exit_code == 2 and refusal.status == 400
    assert refusal.field == field
    assert str(refusal).startswith(f"{field}: OAR refused the job on nancy: ")
    assert oar_says in refusal.oar_text
    assert "api.grid5000.fr" not in str(refusal)
    assert server.simulator.jobs() == []


def test_an_advance_reservation_oar_cannot_place_names_the_date(server):
    hog(server, hours=10)
    api = Api(Endpoint(url=server.url, username="jdoe", password="pw"))
    with pytest.raises(JobRefused) as caught:
        api.submit_job("nancy", {**BODY, "reservation": paris(server.simulator.clock.now() + 3600)})
    assert caught.value.field == "reservation.reservation"
    assert "Reservation not valid --> KO (This reservation could run at" in caught.value.oar_text
    assert "api.grid5000.fr" not in str(caught.value)

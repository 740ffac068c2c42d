"""A password outside Latin-1 reaches the API as UTF-8, like python-grid5000's requests sends any str it can."""

from __future__ import annotations

import json

import pytest

from g5kdeploy.simulator import SimConfig, serve_in_thread
from tests.conftest import USER, playbook_text, write_playbook

PASSWORDS = {
    # Not Latin-1 at all: requests' latin1 encoding of the Basic credentials raised UnicodeEncodeError.
    "cjk": "pw-日本語-never-logged",
    # Latin-1, but not ASCII: sent as Latin-1 bytes, which a server decoding UTF-8 refuses.
    "accented": "pw-pässwörd-never-logged",
}


@pytest.fixture(params=sorted(PASSWORDS))
def password(request):
    return PASSWORDS[request.param]


@pytest.fixture
def sim(password):
    """The simulator as the outside entry point: it knows the user's password and checks it."""
    with serve_in_thread(SimConfig(launch_seconds=1.0, seed=7, users={USER: password})) as server:
        yield server


def test_a_non_ascii_password_is_sent_as_utf8(g5k, sim, tmp_path, password, monkeypatch):
    monkeypatch.setenv("G5K_PASSWORD", password)
    book = write_playbook(tmp_path, playbook_text())
    result = g5k("reserve", str(book), "--json")
    assert result.exit_code == 0, result.output
    run_id = json.loads(result.stdout)["run_id"]
    [job] = sim.simulator.live_jobs()
    assert job["user"] == USER and job["state"] == "running"
    assert password not in result.output
    assert g5k("release", run_id).exit_code == 0

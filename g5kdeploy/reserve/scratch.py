"""Reading the API as the reserve phase would, without a run: for ``g5k check`` and the discovery commands.

A testbed opens its API for a run (the local testbed starts its simulator in the run's directory), so a
throw-away run in a temporary directory stands in for one, and the testbed is closed (its simulator stopped)
before the directory goes. Nothing is submitted and nothing is left behind.
"""

from __future__ import annotations

import tempfile
from collections.abc import Iterator
from contextlib import contextmanager
from pathlib import Path

from g5kdeploy.playbook import Playbook, Reservation, Role
from g5kdeploy.reserve.check import CheckReport, check_playbook
from g5kdeploy.reserve.phase import create_run
from g5kdeploy.results import RunStore
from g5kdeploy.testbeds import testbed_for
from g5kdeploy.testbeds.api import Api
from g5kdeploy.testbeds.base import Testbed


@contextmanager
def scratch_api(playbook: Playbook, playbook_path: Path, testbed: Testbed, *, api_url: str) -> Iterator[Api]:
    """The API the playbook's runs would use, opened for a run that exists only inside the ``with``."""
    with tempfile.TemporaryDirectory(prefix="g5k-scratch-") as scratch:
        store = RunStore(Path(scratch))
        record = create_run(store, playbook, playbook_path, api_url=api_url)
        try:
            yield testbed.open(record, store)
        finally:
            testbed.close(record, store)


def check_without_run(playbook: Playbook, playbook_path: Path, testbed: Testbed, *, api_url: str) -> CheckReport:
    """What the reserve phase would check for ``playbook`` now, with nothing submitted and no run created."""
    with scratch_api(playbook, playbook_path, testbed, api_url=api_url) as api:
        return check_playbook(api, playbook, now=testbed.clock.now(), usage_policy=testbed.usage_policy)


@contextmanager
def discovery_api(testbed: str) -> Iterator[Api]:
    """The API the ``testbed``'s runs use: Grid'5000's (or ``G5K_API_URL``'s) with the user's credentials, or on the
    local and VM testbeds a simulator of its own, started as for a run and stopped on leaving."""
    reservation = Reservation(roles={"node": Role(nodes=1)})
    book = Playbook.model_validate({"version": 2, "name": "discovery", "testbed": testbed, "reservation": reservation})
    with scratch_api(book, Path("discovery"), testbed_for(testbed), api_url="discovery") as api:
        yield api

from __future__ import annotations

import selectors
import subprocess
import sys
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path

import grid5000
import pytest
import requests
import yaml

from g5kdeploy.simulator import SimConfig, SimServer, serve_in_thread

# The users file of the `live` simulator, written in UTF-8.
LIVE_USERS = {"jdoe": "pw", "marie": "pé-Ω ünï", "luc": "café"}


@pytest.fixture
def server() -> Iterator[SimServer]:
    with serve_in_thread(SimConfig(speed=1.0, seed=1)) as srv:
        yield srv


def _client(srv: SimServer, user: str | None = "jdoe", password: str = "pw") -> grid5000.Grid5000:
    if user is None:
        return grid5000.Grid5000(uri=srv.url)
    return grid5000.Grid5000(uri=srv.url, username=user, password=password)


@pytest.fixture
def client() -> Callable[..., grid5000.Grid5000]:
    """`client(server, user="jdoe", password="pw")`; user None = anonymous."""
    return _client


@dataclass
class LiveSim:
    """`python -m g5kdeploy.simulator --users FILE` in its own process, its stderr kept in `log`."""

    url: str
    log: Path
    process: subprocess.Popen[str]
    users: dict[str, str]

    def assert_unharmed(self) -> None:
        """Still serving, still alive, and nothing on stderr: no traceback, no error line."""
        assert requests.get(f"{self.url}/sites", auth=("jdoe", "pw"), timeout=10).status_code == 200
        assert self.process.poll() is None
        assert self.log.read_text(encoding="utf-8", errors="replace") == ""


def _first_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        if not selector.select(timeout):
            raise AssertionError(f"the simulator printed no URL within {timeout} s")
    return process.stdout.readline().strip()


@pytest.fixture(scope="module")
def live(tmp_path_factory: pytest.TempPathFactory) -> Iterator[LiveSim]:
    base = tmp_path_factory.mktemp("live-sim")
    users = base / "users.yaml"
    users.write_text(yaml.safe_dump(LIVE_USERS, allow_unicode=True), encoding="utf-8")
    log = base / "stderr.log"
    # stderr goes to a file: a pipe nobody reads would fill up and block the server on a long traceback.
    with log.open("w", encoding="utf-8") as stderr:
        process = subprocess.Popen(
            [sys.executable, "-m", "g5kdeploy.simulator", "--seed", "1", "--users", str(users)],
            stdout=subprocess.PIPE,
            stderr=stderr,
            text=True,
        )
    try:
        url = _first_line(process, timeout=60)
        assert url.startswith("http://127.0.0.1:"), (url, log.read_text())
        yield LiveSim(url, log, process, LIVE_USERS)
    finally:
        process.terminate()
        try:
            process.wait(timeout=10)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait(timeout=10)
        if process.stdout is not None:
            process.stdout.close()

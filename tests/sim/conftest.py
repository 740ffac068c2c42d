from __future__ import annotations

from collections.abc import Callable, Iterator

import grid5000
import pytest

from g5kdeploy.simulator import SimConfig, SimServer, serve_in_thread


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

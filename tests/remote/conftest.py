"""Real sshd nodes on loopback addresses for the remote tests, stopped by PID at teardown."""

from __future__ import annotations

import pytest

from g5kdeploy.remote import SshRunner
from g5kdeploy.testbeds.loopback import LoopbackNodes, start_nodes, stop_nodes

NAMES = tuple(f"gros-{i}.nancy.grid5000.fr" for i in range(1, 7))


@pytest.fixture(scope="module")
def testbed(tmp_path_factory) -> LoopbackNodes:
    nodes = start_nodes(tmp_path_factory.mktemp("loopback"), NAMES)
    yield nodes
    stop_nodes(node.pid for node in nodes.nodes)


@pytest.fixture(scope="module")
def runner(testbed) -> SshRunner:
    with SshRunner(testbed.ssh_config) as ssh:
        yield ssh


@pytest.fixture
def own_testbed(tmp_path):
    """Nodes a test may break."""
    nodes = start_nodes(tmp_path / "own", [f"grisou-{i}.nancy.grid5000.fr" for i in range(1, 5)])
    yield nodes
    stop_nodes(node.pid for node in nodes.nodes)

"""Commands fanned out over SSH: per-node results, exit codes, time-outs, retries, multiplexing."""

from __future__ import annotations

import time

from g5kdeploy.remote import SshRunner
from g5kdeploy.testbeds.loopback import stop_nodes
from tests.remote.conftest import NAMES


def test_a_command_reaches_every_node_with_its_own_output(runner):
    results = runner.run(NAMES, 'echo "$G5K_NODE $GREETING"', env={"GREETING": "hello 'world'"})
    assert set(results) == set(NAMES)
    for name, result in results.items():
        assert result.ok, result
        assert result.stdout == f"{name} hello 'world'\n"
        assert result.attempts == 1


def test_exit_codes_are_the_commands_own_and_never_retried(runner):
    results = runner.run(NAMES[:3], "echo oops >&2; exit 3")
    for result in results.values():
        assert (result.exit_code, result.ok, result.attempts, result.error) == (3, False, 1, None)
        assert result.stderr == "oops\n"


def test_a_command_past_its_timeout_is_stopped_on_the_node(runner, testbed):
    marker = testbed.nodes[0].workdir / "still-running"
    start = time.monotonic()
    results = runner.run(NAMES[:2], f"sleep 10; touch {marker}", timeout=1)
    elapsed = time.monotonic() - start
    assert 0.9 < elapsed < 4
    for result in results.values():
        assert result.timed_out and result.exit_code is None and not result.ok
    # `sleep` was killed on the node, not merely abandoned by the client.
    assert not runner.run(NAMES[:1], "pgrep -x -f 'sleep 10'", timeout=5)[NAMES[0]].ok


def test_a_dropped_connection_is_retried(runner, testbed):
    node = testbed.nodes[1]
    marker = node.workdir / "dropped-once"
    # First run: kill this session's own sshd process, which drops the connection (ssh exits 255).
    command = f"if [ ! -e {marker} ]; then touch {marker}; kill -9 $PPID; sleep 1; fi; echo done"
    result = runner.run([node.name], command, timeout=20)[node.name]
    assert result.ok, result
    assert result.stdout == "done\n"
    assert result.attempts == 2


def test_a_dead_node_fails_alone(own_testbed):
    names = [node.name for node in own_testbed.nodes]
    with SshRunner(own_testbed.ssh_config, retries=1, connect_timeout=3) as ssh:
        assert all(result.ok for result in ssh.run(names, "true").values())
        stop_nodes([own_testbed.nodes[0].pid])
        results = ssh.run(names, "echo $G5K_NODE", timeout=10)
    dead = results[names[0]]
    assert not dead.ok and dead.error and dead.exit_code is None
    assert dead.attempts == 2
    for name in names[1:]:
        assert results[name].ok and results[name].stdout == f"{name}\n"


def test_later_commands_reuse_one_connection_per_node(own_testbed):
    names = [node.name for node in own_testbed.nodes]
    with SshRunner(own_testbed.ssh_config) as ssh:
        for _ in range(4):
            assert all(result.ok for result in ssh.run(names, "true").values())
    for node in own_testbed.nodes:
        log = (own_testbed.directory / "nodes" / node.name / "sshd.log").read_text()
        assert log.count("Accepted publickey") == 1, log


def test_few_new_connections_at_a_time_still_reach_every_node(tmp_path):
    from g5kdeploy.testbeds.loopback import start_nodes

    nodes = start_nodes(tmp_path / "eight", [f"graphene-{i}.nancy.grid5000.fr" for i in range(1, 9)])
    try:
        with SshRunner(nodes.ssh_config, max_new_connections=2) as ssh:
            results = ssh.run([node.name for node in nodes.nodes], "echo $G5K_NODE")
        assert [result.stdout.strip() for result in results.values()] == [node.name for node in nodes.nodes]
        assert all(result.ok and result.attempts == 1 for result in results.values())
    finally:
        stop_nodes(node.pid for node in nodes.nodes)

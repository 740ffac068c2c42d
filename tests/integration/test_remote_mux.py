"""Sessions on warm ControlMasters through OpenSSH's multiplexing protocol, against real sshd nodes on loopback."""

from __future__ import annotations

import os
import resource
import signal
import subprocess
from pathlib import Path

import pytest

from g5kdeploy.remote import SshRunner, mux
from g5kdeploy.remote.ssh import remote_command
from g5kdeploy.testbeds.loopback import start_nodes, stop_nodes

NAMES = [f"grisou-{i}.nancy.grid5000.fr" for i in range(1, 5)]


@pytest.fixture(scope="module")
def warm(tmp_path_factory):
    """Four nodes, each with a live master (opened by a first command), and where each master's socket is."""
    nodes = start_nodes(tmp_path_factory.mktemp("mux"), NAMES)
    try:
        with SshRunner(nodes.ssh_config) as runner:
            assert all(result.ok for result in runner.run(NAMES, "true").values())
            yield runner, {host: socket_of(runner, host) for host in NAMES}
    finally:
        stop_nodes(node.pid for node in nodes.nodes)


def socket_of(runner: SshRunner, host: str) -> Path:
    """The master's socket, as ssh itself resolves its ControlPath."""
    shown = subprocess.run(["ssh", "-G", *runner.ssh_options, host], capture_output=True, text=True, check=True)
    return Path(next(line.split(" ", 1)[1] for line in shown.stdout.splitlines() if line.startswith("controlpath ")))


def run(sockets, command: str, tmp_path: Path, *, limit: float = 30.0):
    return mux.launch(sockets, remote_command(command, timeout=limit), tmp_path)(limit + 5)


def test_every_node_runs_the_command_with_its_output_and_exit_status(warm, tmp_path):
    _, sockets = warm
    outcomes = run(sockets, 'echo "out $G5K_NODE"; echo err >&2; exit 3', tmp_path)
    assert sorted(outcomes) == sorted(NAMES)
    for host, outcome in outcomes.items():
        assert (outcome.exit_code, outcome.stdout, outcome.stderr) == (3, f"out {host}\n", "err\n")
        assert not outcome.connection_failed and not outcome.timed_out and outcome.duration > 0
    assert list(tmp_path.iterdir()) == [], "the scratch files are removed"


def test_all_the_output_is_there_when_the_session_ends(warm, tmp_path):
    _, sockets = warm
    outcomes = run(sockets, "seq 1 300000", tmp_path)
    expected = "".join(f"{n}\n" for n in range(1, 300001))
    assert all(outcome.stdout == expected and outcome.exit_code == 0 for outcome in outcomes.values())


def test_a_command_s_own_exit_255_is_not_a_connection_failure(warm, tmp_path):
    _, sockets = warm
    [outcome] = run({NAMES[0]: sockets[NAMES[0]]}, "exit 255", tmp_path).values()
    assert outcome.exit_code == 255 and not outcome.connection_failed


@pytest.mark.timeout(30)
def test_the_deadline_leaves_the_slow_nodes_timed_out_and_the_masters_usable(warm, tmp_path):
    _, sockets = warm
    slow = NAMES[1]
    command = remote_command(f'[ "$G5K_NODE" = {slow} ] && sleep 60; echo done', timeout=60)
    outcomes = mux.launch(sockets, command, tmp_path)(3.0)
    assert outcomes[slow].timed_out and outcomes[slow].exit_code is None
    assert all(outcomes[host].stdout == "done\n" for host in NAMES if host != slow)
    again = run(sockets, "echo again", tmp_path)
    assert all(outcome.stdout == "again\n" for outcome in again.values())


def test_a_dead_master_is_a_connection_failure(tmp_path):
    nodes = start_nodes(tmp_path / "own", ["grele-1.nancy.grid5000.fr"])
    try:
        with SshRunner(nodes.ssh_config) as runner:
            assert runner.run(["grele-1.nancy.grid5000.fr"], "true")["grele-1.nancy.grid5000.fr"].ok
            path = socket_of(runner, "grele-1.nancy.grid5000.fr")
            subprocess.run(["ssh", *runner.ssh_options, "-O", "exit", "grele-1.nancy.grid5000.fr"], check=True)
            [outcome] = run({"grele-1.nancy.grid5000.fr": path}, "true", tmp_path).values()
    finally:
        stop_nodes(node.pid for node in nodes.nodes)
    assert outcome.connection_failed and outcome.exit_code == 255
    assert outcome.error and outcome.error.startswith("cannot reach the SSH master")


def test_a_master_killed_during_the_session_is_a_connection_failure(tmp_path):
    nodes = start_nodes(tmp_path / "own", ["grele-2.nancy.grid5000.fr"])
    host = "grele-2.nancy.grid5000.fr"
    try:
        with SshRunner(nodes.ssh_config) as runner:
            assert runner.run([host], "true")[host].ok
            path = socket_of(runner, host)
            check = ["ssh", *runner.ssh_options, "-O", "check", host]
            checked = subprocess.run(check, capture_output=True, text=True, check=True)
            pid = int(checked.stderr.split("pid=")[1].split(")")[0])
            collect = mux.launch({host: path}, remote_command("sleep 20", timeout=30), tmp_path)
            os.kill(pid, signal.SIGKILL)
            [outcome] = collect(25).values()
    finally:
        stop_nodes(node.pid for node in nodes.nodes)
    assert outcome.connection_failed and not outcome.timed_out
    # An end of file or a reset, depending on what was in flight.
    assert outcome.error in (
        "the SSH master ended the session without an exit status",
        "lost the SSH master: Connection reset by peer",
    )


def test_a_low_open_files_limit_is_raised_for_a_socket_per_host(warm, tmp_path):
    """A fan-out holds a socket per host: under a soft limit of 64 (hosts + what the process already holds) it
    would fail with EMFILE, so the limit is raised towards the hard one."""
    _, sockets = warm
    soft, hard = resource.getrlimit(resource.RLIMIT_NOFILE)
    resource.setrlimit(resource.RLIMIT_NOFILE, (64, hard))
    try:
        outcomes = run(sockets, "echo ok", tmp_path)
        assert resource.getrlimit(resource.RLIMIT_NOFILE)[0] >= len(sockets) + mux.SPARE_FDS
    finally:
        resource.setrlimit(resource.RLIMIT_NOFILE, (soft, hard))
    assert all(outcome.stdout == "ok\n" for outcome in outcomes.values())

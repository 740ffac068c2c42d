"""The loopback nodes: real sshd processes reached by their Grid'5000 names, with host keys checked."""

from __future__ import annotations

import subprocess

from g5kdeploy.process import is_running
from g5kdeploy.testbeds.loopback import node_is_up, stop_nodes


def ssh(nodes, name, command, *extra):
    return subprocess.run(
        ["ssh", "-F", str(nodes.ssh_config), *extra, name, command],
        capture_output=True,
        text=True,
        check=False,
        timeout=30,
    )


def test_each_node_answers_under_its_name_with_its_own_directory(own_testbed):
    for node in own_testbed.nodes:
        result = ssh(own_testbed, node.name, 'echo "$G5K_NODE $G5K_NODE_DIR"')
        assert result.returncode == 0, result.stderr
        assert result.stdout.split() == [node.name, str(node.workdir)]
    addresses = {node.address for node in own_testbed.nodes}
    assert len(addresses) == 4 and all(address.startswith("127.") for address in addresses)
    assert len({node.port for node in own_testbed.nodes}) == 1


def test_stop_ends_every_sshd_and_its_connections(own_testbed):
    node = own_testbed.nodes[0]
    session = subprocess.Popen(
        ["ssh", "-F", str(own_testbed.ssh_config), node.name, "sleep 60"],
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    try:
        assert ssh(own_testbed, node.name, "true").returncode == 0
        stop_nodes(n.pid for n in own_testbed.nodes)
        assert not any(is_running(n.pid) for n in own_testbed.nodes)
        assert not any(node_is_up(n) for n in own_testbed.nodes)
        # The open session went down with its node.
        assert session.wait(timeout=10) != 0
    finally:
        session.kill()
        session.wait(timeout=10)


def test_a_wrong_host_key_is_refused(own_testbed, tmp_path):
    first, second = own_testbed.nodes[:2]
    # Give the first node's address the second node's key, as if someone else answered there.
    lines = own_testbed.known_hosts.read_text().splitlines()
    key_of_second = next(line for line in lines if line.startswith(f"[{second.address}]")).split(" ", 1)[1]
    forged = tmp_path / "forged_known_hosts"
    forged.write_text(f"[{first.address}]:{first.port} {key_of_second}\n")
    result = ssh(own_testbed, first.name, "true", "-o", f"UserKnownHostsFile={forged}")
    assert result.returncode == 255
    assert "host key" in result.stderr.lower()

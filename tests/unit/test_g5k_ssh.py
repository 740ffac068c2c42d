from pathlib import Path

import pytest

from g5kdeploy.errors import ConfigError
from g5kdeploy.testbeds.g5k_ssh import find_key, grid5000_ssh_config

NODES = ["gros-1.nancy.grid5000.fr", "gros-2.nancy.grid5000.fr"]


def parse(text: str) -> dict[str, dict[str, str]]:
    hosts: dict[str, dict[str, str]] = {}
    current: dict[str, str] = {}
    for line in text.splitlines():
        if line.startswith("Host "):
            current = hosts.setdefault(line.split(None, 1)[1], {})
        elif line.strip():
            key, value = line.split(None, 1)
            current[key] = value
    return hosts


def test_outside_grid5000_every_node_goes_through_the_access_gateway():
    hosts = parse(grid5000_ssh_config(NODES, login="jdoe", key=Path("/k"), known_hosts=Path("/kh"), inside=False))
    assert hosts["access.grid5000.fr"]["User"] == "jdoe"
    assert hosts["access.grid5000.fr"]["StrictHostKeyChecking"] == "yes"
    for node in NODES:
        assert hosts[node]["ProxyJump"] == "access.grid5000.fr"
        assert hosts[node]["User"] == "jdoe"
        assert hosts[node]["StrictHostKeyChecking"] == "accept-new"
        assert hosts[node]["UserKnownHostsFile"] == "/kh"


def test_on_a_frontend_nodes_are_reached_directly():
    hosts = parse(grid5000_ssh_config(NODES, login="jdoe", key=Path("/k"), known_hosts=Path("/kh"), inside=True))
    assert "access.grid5000.fr" not in hosts
    assert all("ProxyJump" not in hosts[node] for node in NODES)


def test_key_is_the_playbooks_or_the_first_usual_one(tmp_path):
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_rsa").write_text("key")
    assert find_key(None, tmp_path) == tmp_path / ".ssh" / "id_rsa"
    (tmp_path / ".ssh" / "id_ed25519").write_text("key")
    assert find_key(None, tmp_path) == tmp_path / ".ssh" / "id_ed25519"
    with pytest.raises(ConfigError, match=r"ssh\.key: .*does not exist"):
        find_key(str(tmp_path / "missing"), tmp_path)


def test_no_key_at_all_says_how_to_make_one(tmp_path):
    with pytest.raises(ConfigError) as caught:
        find_key(None, tmp_path)
    assert "ssh-keygen -t ed25519" in (caught.value.hint or "")

"""EnOSlib 10.9.0's Grid'5000 provider, unchanged, against the simulator.

`G5k(conf).init()` reserves (and for a deploy job deploys) through python-grid5000 exactly as on
Grid'5000; only the steps that SSH into the nodes are replaced, because the simulator's nodes are not
machines: `grant_root_access` (sudo-g5k over SSH, ordinary jobs), `_verify_environment_consistency`
(reads /etc/grid5000/release over SSH; replaced by "nothing deployed yet", what a fresh job answers),
`wait_nodes` (waits for SSH after Kadeploy) and `dhcp_networks` (runs dhclient over SSH). Each test names
them with `ssh_replaced` in its name. The reference calls follow g5k-api's clusters_controller_spec
(queue filters) and the site documents' `ipv6` block.
"""

from __future__ import annotations

import functools
from collections.abc import Iterator
from pathlib import Path
from typing import Any

# Installed by scripts/setup.sh (without its pins: see there): a missing EnOSlib fails, it does not skip.
import enoslib as en
import pytest
import yaml
from enoslib.infra.enos_g5k import g5k_api_utils, provider

from g5kdeploy.simulator import SimConfig, SimServer, serve_in_thread


@pytest.fixture
def enoslib_api(server, tmp_path, monkeypatch) -> Iterator[None]:
    _point_enoslib_at(server, tmp_path, monkeypatch)
    yield
    _clear_caches()


def _point_enoslib_at(server: SimServer, tmp_path: Path, monkeypatch: pytest.MonkeyPatch) -> None:
    """EnOSlib's API client (a singleton read from ~/.python-grid5000.yaml) pointed at the simulator."""
    (tmp_path / ".python-grid5000.yaml").write_text(
        yaml.safe_dump({"uri": server.url, "username": "jdoe", "password": "pw"}), encoding="utf-8"
    )
    # The public key EnOSlib sends with a deployment (any text of the right form: nobody logs in with it).
    (tmp_path / ".ssh").mkdir()
    (tmp_path / ".ssh" / "id_ed25519.pub").write_text("ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIE jdoe@test\n")
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("USER", "jdoe")
    monkeypatch.setattr(g5k_api_utils, "_api_client", None)
    _clear_caches()


def _clear_caches() -> None:
    for value in vars(g5k_api_utils).values():
        if isinstance(value, functools._lru_cache_wrapper):
            value.cache_clear()


def _replace_ssh_steps(monkeypatch: pytest.MonkeyPatch) -> list[str]:
    called: list[str] = []

    def record(name: str, result: object = None) -> object:
        def step(self: object) -> object:
            called.append(name)
            return result

        return step

    monkeypatch.setattr(provider.G5kBase, "grant_root_access", record("grant_root_access"))
    monkeypatch.setattr(provider.G5kBase, "_verify_environment_consistency", record("verify_env", False))
    monkeypatch.setattr(provider.G5kBase, "wait_nodes", record("wait_nodes"))
    monkeypatch.setattr(provider.G5kBase, "dhcp_networks", record("dhcp_networks"))
    return called


def test_cluster_lookups_across_queues(server, enoslib_api):
    """A production cluster's site is found and a machine asks for it in the production queue."""
    assert g5k_api_utils.get_cluster_site("grcinq") == "nancy"
    assert g5k_api_utils.get_cluster_site("gros") == "nancy"
    conf = en.G5kConf.from_settings(job_name="enos-prod", walltime="01:00:00", queue="production").add_machine(
        roles=["r"], cluster="grcinq", nodes=1
    )
    conf.finalize()
    assert conf.sites == ["nancy"]


def test_init_and_destroy_an_ordinary_job_ssh_replaced(server, client, enoslib_api, monkeypatch):
    called = _replace_ssh_steps(monkeypatch)
    network = en.G5kNetworkConf(type="prod", roles=["net"], site="nancy")
    conf = (
        en.G5kConf.from_settings(job_name="enos-plain", walltime="01:00:00")
        .add_network_conf(network)
        .add_machine(roles=["server"], cluster="gros", nodes=2, primary_network=network)
        .finalize()
    )
    g5k = en.G5k(conf)
    roles, networks = g5k.init()
    assert len(roles["server"]) == 2
    assert all(h.address.endswith(".nancy.grid5000.fr") for h in roles["server"])
    # The ipv6 block is what EnOSlib turns into each network's IPv6 cidr.
    assert networks["net"][0].network.version == 4
    assert str(g5k.networks[0].cidr6) == "2001:0660:4406:0500::/64"
    assert called == ["grant_root_access"]
    uid = g5k.jobs[0].uid
    assert client(server).sites["nancy"].jobs[uid].state == "running"

    g5k.destroy(wait=True)
    assert client(server).sites["nancy"].jobs[uid].state in ("error", "terminated")


def test_init_and_destroy_a_deploy_job_ssh_replaced(client, tmp_path, monkeypatch):
    # Kadeploy's 300 simulated seconds pass in one of EnOSlib's 10 s polling sleeps.
    with serve_in_thread(SimConfig(speed=60.0, seed=1, deploy_seconds=300.0)) as server:
        _point_enoslib_at(server, tmp_path, monkeypatch)
        _deploy_and_destroy(server, client, monkeypatch)


def _deploy_and_destroy(server: SimServer, client: Any, monkeypatch: pytest.MonkeyPatch) -> None:
    called = _replace_ssh_steps(monkeypatch)
    network = en.G5kNetworkConf(type="prod", roles=["net"], site="nancy")
    conf = (
        en.G5kConf.from_settings(job_name="enos-deploy", job_type=["deploy"], env_name="debian12-min")
        .add_network_conf(network)
        .add_machine(roles=["server"], cluster="gros", nodes=1, primary_network=network)
        .finalize()
    )
    g5k = en.G5k(conf)
    roles, _ = g5k.init()
    assert len(roles["server"]) == 1
    deployments = client(server).sites["nancy"].deployments.list(user="jdoe")
    assert [d.status for d in deployments] == ["terminated"]
    assert deployments[0].nodes == [roles["server"][0].address]
    assert called == ["verify_env", "wait_nodes", "dhcp_networks"]

    uid = g5k.jobs[0].uid
    g5k.destroy(wait=True)
    assert client(server).sites["nancy"].jobs[uid].state in ("error", "terminated")

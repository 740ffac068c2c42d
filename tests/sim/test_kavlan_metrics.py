"""KaVLAN reservations and Kwollect metrics, through python-grid5000 and EnOSlib 10.9.0 unchanged.

The VLAN listing follows g5k-api's spec/controllers/vlans_controller_spec.rb (items `uid`, `type`, links
dhcpd/nodes/users/self/parent; `Vlan 200 does not exist`), the users and nodes routes
spec/controllers/vlans_users_controller_spec.rb and spec/controllers/vlans_nodes_controller_spec.rb. The job
holds its VLAN as EnOSlib reads it (g5k_api_utils.build_resources: `resources_by_type["vlans"]`, ids as
strings). EnOSlib's SSH steps are replaced as in test_clients_enoslib.py (`ssh_replaced` in the name).
"""

from __future__ import annotations

import time

import enoslib as en
import requests

from g5kdeploy.simulator import SimConfig, serve_in_thread
from tests.sim.test_clients_enoslib import _clear_caches, _point_enoslib_at, _replace_ssh_steps


def _wait_running(job) -> None:
    deadline = time.monotonic() + 10
    while job.state != "running" and time.monotonic() < deadline:
        time.sleep(0.05)
        job.refresh()
    assert job.state == "running"


def test_kavlan_local_reservation_holds_a_vlan_until_the_job_ends(client):
    with serve_in_thread(SimConfig(speed=60.0, seed=1)) as server:
        site = client(server).sites["nancy"]
        resources = "{type='kavlan-local'}/vlan=1+{cluster='gros'}/nodes=2,walltime=1:00"
        first = site.jobs.create({"command": "sleep 3600", "resources": resources})
        second = site.jobs.create({"command": "sleep 3600", "resources": resources})
        _wait_running(first)
        assert first.resources_by_type["vlans"] == ["1"]
        assert len(first.assigned_nodes) == 2
        second.refresh()
        assert second.resources_by_type["vlans"] == ["2"]

        listing = requests.get(f"{server.url}/sites/nancy/vlans", auth=("jdoe", "pw"), timeout=10).json()
        types = {item["uid"]: item["type"] for item in listing["items"]}
        assert [types[str(i)] for i in range(1, 10)] == ["kavlan-local"] * 3 + ["kavlan"] * 6
        assert types["14"] == "kavlan-global" and types["DEFAULT"] == "NULL"
        assert [link["rel"] for link in listing["items"][1]["links"]] == ["dhcpd", "nodes", "users", "self", "parent"]
        assert [u.uid for u in site.vlans["1"].users.list()] == ["jdoe"]
        missing = requests.get(f"{server.url}/sites/nancy/vlans/200", auth=("jdoe", "pw"), timeout=10)
        assert (missing.status_code, missing.text) == (404, "Vlan 200 does not exist")

        first.delete()
        assert site.vlans["1"].users.list() == []
        third = site.jobs.create({"command": "sleep 60", "resources": resources})
        assert third.resources_by_type["vlans"] == ["1"]  # released with the job that held it


def test_all_routed_vlans_taken_the_next_request_waits(server, client):
    site = client(server).sites["nancy"]
    for _ in range(6):
        site.jobs.create({"command": "sleep 3600", "resources": "{type='kavlan'}/vlan=1,walltime=1:00"})
    seventh = site.jobs.create({"command": "sleep 60", "resources": "{type='kavlan'}/vlan=1,walltime=1:00"})
    assert seventh.state == "waiting"
    assert seventh.scheduled_at - seventh.submitted_at > 3500


def test_enoslib_kavlan_setup_gets_its_vlan_ssh_replaced(client, tmp_path, monkeypatch):
    with serve_in_thread(SimConfig(speed=60.0, seed=1, deploy_seconds=300.0)) as server:
        _point_enoslib_at(server, tmp_path, monkeypatch)
        try:
            _replace_ssh_steps(monkeypatch)
            network = en.G5kNetworkConf(type="kavlan-local", roles=["net"], site="nancy")
            conf = (
                en.G5kConf.from_settings(job_name="enos-kavlan", job_type=["deploy"], env_name="debian12-min")
                .add_network_conf(network)
                .add_machine(roles=["server"], cluster="gros", nodes=1, primary_network=network)
                .finalize()
            )
            g5k = en.G5k(conf)
            roles, networks = g5k.init()
            job = g5k.jobs[0]
            assert job.resources_by_type["vlans"] == ["1"]
            assert [n.vlan_id for n in g5k.networks if n.vlan_id != "DEFAULT"] == ["1"]
            assert (
                str(networks["net"][0].network) == server.simulator.reference.sites["nancy"]["kavlans"]["1"]["network"]
            )
            assert len(roles["server"]) == 1
            g5k.destroy(wait=True)
        finally:
            _clear_caches()


def test_metrics_listing_and_values_for_a_jobs_nodes(server, client):
    site = client(server).sites["nancy"]
    job = site.jobs.create({"command": "sleep 3600", "resources": "{cluster='gros'}/nodes=1,walltime=1:00"})
    listing = requests.get(f"{server.url}/sites/nancy/metrics", auth=("jdoe", "pw"), timeout=10).json()
    names = [m["name"] for m in listing]
    assert "wattmetre_power_watt" in names and all({"name", "period", "source"} <= set(m) for m in listing)

    node = job.assigned_nodes[0].split(".")[0]
    start = server.simulator.now() - 60
    points = site.metrics.list(nodes=node, metrics="wattmetre_power_watt", start_time=int(start))
    assert points
    assert {(p.device_id, p.metric_id) for p in points} == {(node, "wattmetre_power_watt")}
    assert all(isinstance(p.value, float) for p in points)

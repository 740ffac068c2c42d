import grid5000.exceptions
import pytest
import requests


def test_sites_clusters_nodes(server, client):
    gk = client(server)
    assert [s.uid for s in gk.sites.list()] == sorted(
        ["grenoble", "lille", "luxembourg", "lyon", "nancy", "nantes", "rennes", "sophia"]
    )
    site = gk.sites["nancy"]
    clusters = [c.uid for c in site.clusters.list()]
    assert "gros" in clusters
    assert "graffiti" not in clusters  # production cluster hidden by default
    assert "graffiti" in [c.uid for c in site.clusters.list(queues="all")]
    nodes = site.clusters["gros"].nodes.list()
    assert nodes[0].uid == "gros-1"
    node = site.clusters["gros"].nodes["gros-1"]
    assert node.architecture["nb_cores"] == 18
    assert any(
        link["rel"] == "self" and link["href"] == "/stable/sites/nancy/clusters/gros/nodes/gros-1"
        for link in node.links
    )


def test_unknown_site_is_404(server, client):
    gk = client(server)
    with pytest.raises(grid5000.exceptions.Grid5000GetError) as err:
        gk.sites["atlantis"]
    assert err.value.response_code == 404
    assert "Cannot find resource /sites/atlantis" in str(err.value)


def test_content_type_rule(server):
    r = requests.get(f"{server.url}/sites", headers={"Accept": "application/json"})
    assert r.headers["Content-Type"] == "application/json; charset=utf-8"
    body = r.json()
    assert body["total"] == 8 and body["offset"] == 0 and "version" in body
    r = requests.get(f"{server.url}/sites/nancy", headers={"Accept": "*/*"})
    assert r.headers["Content-Type"] == "application/vnd.grid5000.item+json"
    r = requests.get(f"{server.url}/sites", headers={"Accept": "*/*"})
    assert r.headers["Content-Type"] == "application/vnd.grid5000.collection+json"
    r = requests.get(f"{server.url}/sites/nancy/status.json")
    assert r.headers["Content-Type"].startswith("application/json")
    r = requests.get(f"{server.url}/sites/nowhere")
    assert r.status_code == 404 and r.headers["Content-Type"].startswith("text/plain")


def test_status_shape(server, client):
    gk = client(server)
    status = gk.sites["nancy"].clusters["gros"].status.list()
    node = status.nodes["gros-1.nancy.grid5000.fr"]
    assert node["hard"] == "alive" and node["soft"] == "free" and node["free_slots"] == 18
    assert node["reservations"] == []
    assert abs(status.uid - server.simulator.now()) < 5
    site = gk.sites["nancy"].status.list(disks="no", vlans="no")
    assert "disks" not in site.attributes and "vlans" not in site.attributes and "subnets" in site.attributes

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
    assert "graffiti" in clusters  # a production cluster has the admin queue too: the default filter keeps it
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


def test_environments_health_and_links(server, client):
    site = client(server).sites["nancy"]
    names = [e.name for e in site.environments.list()]
    assert {"debian12-min", "debian12-nfs", "debian11-min", "ubuntu2404-min"} <= set(names)
    latest = site.environments.list(name="debian12-min", latest_only="yes")
    assert len(latest) == 1 and latest[0].arch == "x86_64" and isinstance(latest[0].version, int)
    assert len(site.environments.list(name="debian12-min")) == 2
    assert site.environments.list(arch="aarch64") == []
    env = latest[0]
    assert {"uid", "alias", "description", "image", "boot", "filesystem", "visibility"} <= set(env.attributes)
    r = requests.get(f"{server.url}/sites/nancy/health", headers={"Accept": "application/json"})
    assert r.json() == {"status": "OK"}
    rels = {link["rel"] for link in site.links}
    assert not rels & {"metrics", "storage", "vlans", "versions", "version"}
    for rel in rels - {"parent"}:
        href = next(link["href"] for link in site.links if link["rel"] == rel)
        assert requests.get(server.url.removesuffix("/stable") + href, auth=("jdoe", "pw")).status_code == 200, rel


def test_cache_control_on_reference_only(server):
    assert requests.get(f"{server.url}/sites/nancy/clusters").headers["Cache-Control"] == "public, max-age=60"
    assert requests.get(f"{server.url}/sites").headers["Cache-Control"] == "public, max-age=60"
    assert "Cache-Control" not in requests.get(f"{server.url}/sites/nancy/status").headers


def test_queues_all_means_admin_default_production(server, client):
    lyon = client(server).sites["lyon"]
    # pyxis (admin, testing) passes `all` through its admin queue, as in g5k-api's `lookup_path`.
    assert "pyxis" in [c.uid for c in lyon.clusters.list(queues="all")]
    assert "pyxis" not in [c.uid for c in lyon.clusters.list(queues="default,production")]
    assert "pyxis" in [c.uid for c in lyon.clusters.list(queues="testing")]

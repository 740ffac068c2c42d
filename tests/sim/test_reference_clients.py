"""The reference API as third-party clients read it: queue filters, site documents, versions.

Follows g5k-api release v3.11.13: `spec/controllers/clusters_controller_spec.rb` (queue filters, the 13
clusters of nancy, 404 for a cluster outside the filter) and `app/controllers/resources_controller.rb`
(`enrich_params`, `lookup_path`).
"""

import grid5000.exceptions
import pytest
import requests

NANCY_CLUSTERS = sorted(
    [
        "graffiti",
        "graoully",
        "graphique",
        "graphite",
        "grappe",
        "grcinq",
        "grele",
        "grimani",
        "grimoire",
        "grisou",
        "gros",
        "grue",
        "grvingt",
    ]
)


def test_default_filter_keeps_every_cluster_because_each_has_the_admin_queue(server, client):
    """clusters_controller_spec: 'should return ALL clusters in site nancy without any queues param' (13),
    `queues=production` gives 8 clusters of nancy, `queues=default` 4."""
    site = client(server).sites["nancy"]
    assert sorted(c.uid for c in site.clusters.list()) == NANCY_CLUSTERS
    assert sorted(c.uid for c in site.clusters.list(queues="all")) == NANCY_CLUSTERS
    production = sorted(c.uid for c in site.clusters.list(queues="production"))
    assert production == sorted(["grvingt", "grue", "grimani", "grele", "grcinq", "graphique", "graoully", "graffiti"])
    assert sorted(c.uid for c in site.clusters.list(queues="default")) == ["graphite", "grimoire", "grisou", "gros"]


def test_cluster_outside_the_filter_is_404(server, client):
    """clusters_controller_spec: 'should return NO cluster because graphite is NOT production cluster'."""
    site = client(server).sites["nancy"]
    assert site.clusters["graphite"].uid == "graphite"
    assert site.clusters["grcinq"].uid == "grcinq"  # production cluster, default filter admin,default
    r = requests.get(f"{server.url}/sites/nancy/clusters/graphite?queues=production", auth=("jdoe", "pw"), timeout=10)
    assert (r.status_code, r.text) == (404, "Cannot find resource /sites/nancy/clusters/graphite")
    with pytest.raises(grid5000.exceptions.Grid5000GetError):
        site.clusters.get("grcinq", queues="default")


def test_sites_carry_ipv6_as_real_site_documents_do(server, client):
    """What EnOSlib's `get_ipv6(site)` reads (`site.ipv6["site_index"]`) to build each network's cidr6."""
    sites = {s.uid: s for s in client(server).sites.list()}
    assert sites["rennes"].ipv6 == {"prefix": "2001:660:4406:07", "site_global_kavlan": 16, "site_index": 7}
    indexes = [s.ipv6["site_index"] for s in sites.values()]
    assert len(set(indexes)) == len(indexes)
    for site in sites.values():
        assert str(site.ipv6["site_global_kavlan"]) in site.kavlans

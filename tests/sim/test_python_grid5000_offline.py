"""python-grid5000's offline mode fed by the simulator: `Grid5000Offline(gk.dump_ref_api())`, unchanged.

Follows g5k-api's `ResourcesController#fetch` and `Grid5000::Repository#deep_expand` (release v3.11.13):
`?deep=1` answers a folder of the reference repository as one document under `items`, the documents of a
folder with sub-folders keyed by uid, nodes (and servers, pdus, network equipments) as lists.
"""

import grid5000
import pytest
import requests
from grid5000.exceptions import Grid5000GetError


def test_offline_client_browses_the_dump_like_the_online_one(server, client):
    online = client(server)
    offline = grid5000.Grid5000Offline(online.dump_ref_api())

    assert [s.uid for s in offline.sites.list()] == [s.uid for s in online.sites.list()]
    site = offline.sites["nancy"]
    assert site.ipv6["site_index"] == online.sites["nancy"].ipv6["site_index"]
    # The dump is unfiltered: every cluster of every queue, as `?queues=all` and more (grappe: testing).
    assert sorted(c.uid for c in site.clusters.list()) == sorted(
        c.uid for c in online.sites["nancy"].clusters.list(queues="admin,default,production,testing")
    )
    node = site.clusters["gros"].nodes["gros-1"]
    assert (
        node.architecture["nb_cores"] == online.sites["nancy"].clusters["gros"].nodes["gros-1"].architecture["nb_cores"]
    )
    assert [n.uid for n in site.clusters["gros"].nodes.list()][:2] == ["gros-1", "gros-2"]
    with pytest.raises(Grid5000GetError):
        offline.sites["atlantis"]


def test_deep_on_a_sub_folder_and_on_a_leaf(server):
    """`deep` expands folders only: a node document (a file in the repository) is served as usual."""
    auth = ("jdoe", "pw")
    headers = {"Accept": "application/json"}
    clusters = requests.get(f"{server.url}/sites/lyon/clusters?deep=1", auth=auth, headers=headers, timeout=10)
    assert clusters.status_code == 200
    body = clusters.json()
    assert isinstance(body["items"], dict) and body["total"] == len(body["items"])
    assert all(isinstance(c["nodes"], list) for c in body["items"].values() if "nodes" in c)
    nodes = requests.get(
        f"{server.url}/sites/nancy/clusters/gros/nodes?deep=1", auth=auth, headers=headers, timeout=10
    ).json()
    assert isinstance(nodes["items"], list) and nodes["items"][0]["uid"] == "gros-1"
    leaf = requests.get(
        f"{server.url}/sites/nancy/clusters/gros/nodes/gros-1?deep=1", auth=auth, headers=headers, timeout=10
    ).json()
    assert leaf["uid"] == "gros-1" and "items" not in leaf
    missing = requests.get(f"{server.url}/sites/atlantis?deep=1", auth=auth, headers=headers, timeout=10)
    assert missing.status_code == 404 and missing.text == "Cannot find resource /sites/atlantis"

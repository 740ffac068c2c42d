"""execo 2.8.2's planning against the simulator, unchanged and configured as its users configure it.

execo reads its settings from `~/.execo.conf.py` (`g5k_configuration`: `api_uri`, `api_username`); on a
Grid'5000 frontend it needs no credentials. Each check runs execo in a child process whose HOME is a
temporary directory holding that file (and execo's API cache), pointed at a simulator on loopback.

`get_planning` lists the site's OAR resources (`internal/oarapi/resources/details.json`, OAR's REST API
`/resources/details`, served by the site and reached through g5k-api's `internal` path) and the jobs of
g5k-api's `/sites/{site}/jobs` with their details (g5k-api spec/controllers/jobs_controller_spec.rb).
"""

from __future__ import annotations

import json
import os
import subprocess
import sys
import textwrap
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import grid5000
import pytest
import requests

from g5kdeploy.simulator import SimConfig, SimServer, serve_in_thread

SITE = "luxembourg"
CLUSTER = "petitprince"
NODES = 15
# execo pads every busy interval by 121 s (`execo_g5k.planning._fix_job`).
EXECO_MARGIN = 121


@pytest.fixture(scope="module")
def busy_site() -> Iterator[tuple[SimServer, dict[str, Any]]]:
    """A simulator where jdoe holds 10 of petitprince's 15 nodes for two hours."""
    with serve_in_thread(SimConfig(speed=1.0, seed=1)) as server:
        site = grid5000.Grid5000(uri=server.url, username="jdoe", password="pw").sites[SITE]
        job = site.jobs.create({"command": "sleep 7000", "resources": "nodes=10,walltime=2"})
        yield server, {"uid": job.uid, "nodes": sorted(job.assigned_nodes), "started_at": job.scheduled_at}


def run_execo(server: SimServer, home: Path, code: str) -> Any:
    """Run `code` (which sets `result`) with execo configured for the simulator; returns `result`."""
    (home / ".execo.conf.py").write_text(
        f"g5k_configuration = {{'api_uri': {server.url + '/'!r}, 'api_username': None}}\n", encoding="utf-8"
    )
    script = "import json\n" + textwrap.dedent(code) + "\nprint(json.dumps(result))\n"
    env = {k: v for k, v in os.environ.items() if not k.startswith(("G5K_", "http_", "https_", "HTTP"))}
    env["HOME"] = str(home)
    done = subprocess.run(
        [sys.executable, "-c", script], env=env, capture_output=True, text=True, timeout=300, check=False
    )
    assert done.returncode == 0, done.stderr[-3000:]
    assert "error connecting" not in done.stderr, done.stderr[-3000:]
    return json.loads(done.stdout.strip().splitlines()[-1])


def test_oar_resources_list_every_core_of_the_site(busy_site):
    server, _ = busy_site
    url = f"{server.url}/sites/{SITE}/internal/oarapi/resources/details.json"
    first = requests.get(url, params={"limit": 10}, timeout=10).json()
    everything = requests.get(url, params={"limit": 1073741824}, timeout=10).json()
    cores = sum(n.cores for n in server.simulator.reference.nodes[SITE])
    assert first["total"] == everything["total"] == cores and len(first["items"]) == 10
    assert {"rel": "next", "href": "/oarapi/resources/details.json?offset=10&limit=10"} in first["links"]
    addresses = {r["network_address"] for r in everything["items"]}
    assert addresses == {n.fqdn for n in server.simulator.reference.nodes[SITE]}
    assert {(r["type"], r["state"], r["maintenance"]) for r in everything["items"]} == {("default", "Alive", "NO")}


def test_get_planning_shows_the_job_on_its_nodes(busy_site, tmp_path):
    server, job = busy_site
    planning = run_execo(
        server,
        tmp_path,
        f"""
        from execo_g5k.planning import get_planning
        result = get_planning(elements=[{SITE!r}])
        """,
    )
    hosts = planning[SITE][CLUSTER]
    assert len(hosts) == NODES
    busy = {host for host, plan in hosts.items() if plan["busy"]}
    assert sorted(busy) == job["nodes"]
    start = job["started_at"]
    for host in busy:
        # execo cuts the planning at its start, a minute from now.
        (begin, end), *_ = hosts[host]["busy"]
        assert start <= begin <= start + 120 and end == start + 7200 + EXECO_MARGIN


def test_slot_search_finds_free_nodes_now_and_all_nodes_after_the_job(busy_site, tmp_path):
    server, job = busy_site
    found = run_execo(
        server,
        tmp_path,
        f"""
        from execo_g5k.planning import get_planning, compute_slots, find_first_slot, find_free_slot
        planning = get_planning(elements=[{SITE!r}])
        slots = compute_slots(planning, 3600)
        first = find_first_slot(slots, {{{CLUSTER!r}: 1}})
        free = find_free_slot(slots, {{{CLUSTER!r}: {NODES}}})
        result = [first[0], first[2][{CLUSTER!r}], free[0], free[2][{CLUSTER!r}]]
        """,
    )
    first, first_nodes, free, free_nodes = found
    assert first <= job["started_at"] + 120 and first_nodes == NODES - 10  # five nodes are free right away
    assert free == job["started_at"] + 7200 + EXECO_MARGIN and free_nodes == NODES


def test_site_clusters_by_queue(busy_site, tmp_path):
    """get_site_clusters(queues=...) filters the clusters of the reference API (issue 17, defect 1)."""
    server, _ = busy_site
    clusters = run_execo(
        server,
        tmp_path,
        """
        from execo_g5k.api_utils import get_site_clusters
        result = [get_site_clusters("nancy", queues=q) for q in ("production", "default", "testing")]
        """,
    )
    production, default, testing = clusters
    assert sorted(production) == ["graffiti", "graoully", "graphique", "grcinq", "grele", "grimani", "grue", "grvingt"]
    assert sorted(default) == ["graphite", "grimoire", "grisou", "gros"]
    assert testing == ["grappe"]

"""``g5k sites``, ``g5k clusters`` and ``g5k nodes``: the reference and status APIs, through python-grid5000."""

from __future__ import annotations

import json

import grid5000
import psutil
from typer.testing import CliRunner

from g5kdeploy.cli import app
from tests.integration.test_reserve import hog


def _simulators() -> set[int]:
    """The simulator daemons the discovery commands start (in their throw-away run directory)."""
    found = set()
    for process in psutil.process_iter(["pid", "cmdline"]):
        cmdline = " ".join(process.info["cmdline"] or [])
        if "g5kdeploy.simulator" in cmdline and "g5k-scratch-" in cmdline:
            found.add(process.info["pid"])
    return found


def test_sites_lists_every_site_with_its_nodes(g5k, sim):
    result = g5k("sites", "--json")
    assert result.exit_code == 0, result.output
    sites = {site["uid"]: site for site in json.loads(result.stdout)}
    assert sorted(sites) == ["grenoble", "lille", "luxembourg", "lyon", "nancy", "nantes", "rennes", "sophia"]
    assert sites["nancy"]["nodes"] == sites["nancy"]["free"] > 124
    table = g5k("sites")
    assert any(line.split()[:1] == ["nancy"] for line in table.stdout.splitlines()), table.stdout


def test_clusters_of_a_site_with_hardware_and_queues(g5k, sim):
    result = g5k("clusters", "nancy", "--json")
    assert result.exit_code == 0, result.output
    clusters = {cluster["uid"]: cluster for cluster in json.loads(result.stdout)}
    assert {cluster["site"] for cluster in clusters.values()} == {"nancy"}
    gros = clusters["gros"]
    assert (gros["nodes"], gros["free"], gros["exotic"]) == (124, 124, False)
    assert gros["hardware"] == {"cpu": "Intel Xeon Gold 5220", "cores": 18, "memory_gib": 96, "gpus": 0}
    assert "production" in clusters["grue"]["queues"]
    table = g5k("clusters", "nancy")
    assert "nancy/gros" in table.stdout and "5220" in table.stdout


def test_free_nodes_are_those_with_no_job_within_the_walltime(g5k, sim):
    hog(sim, nodes=120, hours=10)
    # Bob also books two of the four left, starting in an hour: free for 0:30, not for 2:00.
    bob = grid5000.Grid5000(uri=sim.url, username="bob", password="x")
    soon = sim.simulator.clock.now() + 3600
    from datetime import datetime

    from g5kdeploy.playbook import PARIS

    bob.sites["nancy"].jobs.create(
        {
            "resources": "{cluster='gros'}/nodes=2,walltime=1:00",
            "command": "sleep 1h",
            "reservation": datetime.fromtimestamp(soon, PARIS).strftime("%Y-%m-%d %H:%M:%S"),
        }
    )
    short = json.loads(g5k("nodes", "nancy/gros", "--free", "--walltime", "0:30", "--json").stdout)
    long = json.loads(g5k("nodes", "nancy/gros", "--free", "--walltime", "2:00", "--json").stdout)
    assert len(short["nodes"]) == 4 and len(long["nodes"]) == 2
    assert {node["name"] for node in long["nodes"]} < {node["name"] for node in short["nodes"]}
    booked = [node for node in short["nodes"] if node["next_job_at"]]
    assert len(booked) == 2 and all(abs(node["next_job_at"] - soon) < 60 for node in booked)
    every = json.loads(g5k("nodes", "nancy/gros", "--json").stdout)
    assert len(every["nodes"]) == 124
    busy = [node for node in every["nodes"] if node["busy_until"]]
    assert len(busy) == 120 and not any(node["free"] for node in busy)
    table = g5k("nodes", "nancy/gros", "--free", "--walltime", "2:00")
    assert table.exit_code == 0, table.output
    assert "2 free from" in table.stdout.splitlines()[0]


def test_bad_arguments_are_named(g5k, sim):
    for args, expected in (
        (["nodes", "atlantis/gros"], "SITE: unknown site 'atlantis'"),
        (["nodes", "nancy/nope"], "SITE/CLUSTER: no cluster 'nope' on nancy"),
        (["nodes", "nancy"], "SITE/CLUSTER: 'nancy' is not a site and a cluster"),
        (["nodes", "nancy/gros", "--walltime", "soon"], "--walltime: 'soon' is not an OAR duration"),
        (["clusters", "atlantis"], "SITE: unknown site 'atlantis'"),
    ):
        result = g5k(*args)
        assert result.exit_code == 2, (args, result.output)
        assert expected in result.stderr, (args, result.stderr)


def test_without_credentials_the_error_says_how_to_use_the_simulator(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable in ("G5K_API_URL", "G5K_USERNAME", "G5K_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    result = CliRunner().invoke(app, ["sites"])
    assert result.exit_code == 2
    assert "--testbed local" in result.stderr


def test_local_testbed_discovery_starts_its_own_simulator_and_stops_it(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable in ("G5K_API_URL", "G5K_USERNAME", "G5K_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    before = _simulators()
    result = CliRunner().invoke(app, ["clusters", "lyon", "--testbed", "local", "--json"])
    assert result.exit_code == 0, result.output
    assert {cluster["uid"] for cluster in json.loads(result.stdout)} >= {"nova", "taurus"}
    assert _simulators() == before

"""KadeployMethod against the real simulator: one deployment per site, per-node results, errors, time-outs."""

from __future__ import annotations

import time
from pathlib import Path
from typing import Any, cast

import pytest

from g5kdeploy.credentials import Endpoint
from g5kdeploy.deploy.base import DeployContext
from g5kdeploy.deploy.kadeploy import POLL_SECONDS, KadeployMethod, by_site
from g5kdeploy.plans import KadeployPlan
from g5kdeploy.playbook import parse_playbook
from g5kdeploy.remote import SshRunner
from g5kdeploy.results import RunRecord, RunStore
from g5kdeploy.simulator import SimConfig, serve_in_thread
from g5kdeploy.testbeds.api import Api
from tests.deploy.common import KEY, deploy_job

ENVIRONMENT = "http://public.nancy.grid5000.fr/~jdoe/statx.yaml"
PLAYBOOK = f"""
version: 2
name: exp
testbed: grid5000
reservation:
  site: nancy
  roles:
    exporter: {{nodes: 3, cluster: gros}}
  walltime: "1:00"
deploy:
  method: kadeploy
  environment: {ENVIRONMENT}
"""
SPEED = 600.0
DEPLOY_SECONDS = 300.0


def make_api(server: Any) -> Api:
    return Api(Endpoint(server.url, username="jdoe", password="pw"), attempts=2, retry_wait_max=0.1)


def context_for(tmp_path: Path, api: Api, clock: Any) -> DeployContext:
    playbook = parse_playbook(PLAYBOOK)
    record = RunRecord(run_id="exp-test", playbook_path="exp.yaml", playbook=playbook, testbed="grid5000", api_url="")
    # Kadeploy goes through the API only: no runner is ever used.
    return DeployContext(
        record=record,
        store=RunStore(tmp_path),
        playbook=playbook,
        runner=cast(SshRunner, None),
        api=api,
        clock=clock,
        workdirs={},
    )


@pytest.fixture
def testbed(request, tmp_path):
    """A simulator with the given config overrides, a running 3-node deploy job, and a context."""
    overrides = getattr(request, "param", {})
    config = SimConfig(speed=SPEED, launch_seconds=1.0, deploy_seconds=DEPLOY_SECONDS, seed=11, **overrides)
    with serve_in_thread(config) as server:
        api = make_api(server)
        clock = server.simulator.clock
        nodes = deploy_job(api, clock, types=["deploy"])
        yield api, clock, nodes, context_for(tmp_path, api, clock), server


def test_plan_names_the_environment_and_sites(testbed):
    _, _, nodes, context, _ = testbed
    plan = KadeployMethod(public_key_text=KEY).plan(context, nodes)
    assert plan == KadeployPlan(environment=ENVIRONMENT, nodes=nodes, sites={"nancy": nodes}, poll_seconds=POLL_SECONDS)
    assert plan.method == "kadeploy"


def test_by_site_uses_the_second_label():
    assert by_site(["a-1.nancy.grid5000.fr", "b-1.lyon.grid5000.fr", "a-2.nancy.grid5000.fr"]) == {
        "nancy": ["a-1.nancy.grid5000.fr", "a-2.nancy.grid5000.fr"],
        "lyon": ["b-1.lyon.grid5000.fr"],
    }


def test_all_nodes_deploy_ok(testbed):
    _api, clock, nodes, context, server = testbed
    outcomes = KadeployMethod(public_key_text=KEY).boot(context, nodes, deadline=clock.now() + 3 * DEPLOY_SECONDS)
    assert {node: outcome.ok for node, outcome in outcomes.items()} == dict.fromkeys(nodes, True)
    deployments = server.simulator.list_deployments("nancy", {}, 0, 50)[0]
    assert len(deployments) == 1
    # The key text is stored server-side and shows as a URL, as g5k-api does.
    assert deployments[0]["key"].startswith("https://api.grid5000.fr/")
    assert deployments[0]["environment"] == ENVIRONMENT


@pytest.mark.parametrize("testbed", [{"deploy_ko_rate": 0.5}], indirect=True)
def test_ko_nodes_are_redeployed_alone(testbed):
    _api, clock, nodes, context, server = testbed
    method = KadeployMethod(public_key_text=KEY)
    first = method.boot(context, nodes, deadline=clock.now() + 3 * DEPLOY_SECONDS)
    failed = [node for node, outcome in first.items() if not outcome.ok]
    assert failed and len(failed) < len(nodes), f"seed 11 should give a mix of OK and KO: {first}"
    for node in failed:
        assert first[node].reason.startswith("kadeploy KO")
    # The orchestration's retry round: boot again with only the failed nodes.
    server.simulator.deployments.ko_rate = 0.0
    second = method.boot(context, failed, deadline=clock.now() + 3 * DEPLOY_SECONDS)
    assert set(second) == set(failed)
    assert all(outcome.ok for outcome in second.values())
    deployments = server.simulator.list_deployments("nancy", {}, 0, 50)[0]
    assert sorted(map(len, (d["nodes"] for d in deployments))) == sorted([len(nodes), len(failed)])
    newest = max(deployments, key=lambda d: d["created_at"])
    assert sorted(newest["nodes"]) == sorted(failed)


@pytest.mark.parametrize("testbed", [{"deploy_error_rate": 1.0}], indirect=True)
def test_error_status_fails_every_node(testbed):
    _api, clock, nodes, context, _ = testbed
    outcomes = KadeployMethod(public_key_text=KEY).boot(context, nodes, deadline=clock.now() + 3 * DEPLOY_SECONDS)
    assert not any(outcome.ok for outcome in outcomes.values())
    assert all("ended with status error" in outcome.reason for outcome in outcomes.values())


def test_deadline_fails_and_cancels(testbed):
    _api, clock, nodes, context, server = testbed
    start = time.monotonic()
    outcomes = KadeployMethod(public_key_text=KEY).boot(context, nodes, deadline=clock.now() + DEPLOY_SECONDS / 3)
    assert time.monotonic() - start < 5
    assert not any(outcome.ok for outcome in outcomes.values())
    reason = outcomes[nodes[0]].reason
    assert "still processing after" in reason and "(canceled)" in reason
    deployments = server.simulator.list_deployments("nancy", {}, 0, 50)[0]
    assert [d["status"] for d in deployments] == ["canceled"]


def test_refused_post_fails_every_node_with_the_api_text(tmp_path):
    with serve_in_thread(SimConfig(speed=SPEED, launch_seconds=1.0, seed=3)) as server:
        api = make_api(server)
        clock = server.simulator.clock
        nodes = deploy_job(api, clock, types=[])  # not a deploy job
        context = context_for(tmp_path, api, clock)
        outcomes = KadeployMethod(public_key_text=KEY).boot(context, nodes, deadline=clock.now() + 600)
    assert set(outcomes) == set(nodes)
    for outcome in outcomes.values():
        assert not outcome.ok
        assert "You do not have the rights to deploy" in outcome.reason


def test_expectation_has_no_marker():
    expectation = KadeployMethod(public_key_text=KEY).expectation(cast(DeployContext, None))
    assert expectation.rebooted and expectation.kernel_options and expectation.exporter
    assert not expectation.marker
    assert KadeployMethod.system_artifacts == ("statx-bench",) and not KadeployMethod.pushes_artifacts

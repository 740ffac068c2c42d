"""NxcImageMethod, nxc's g5k-image flavour: the plan on a loopback sshd node playing the frontend, with the stand-in nix
(tests/deploy/standins), the real nxc 0.7.11 and a temporary HOME, publishes the image under ~/public; the boot
then goes to the real simulator's deployments API with exactly the published environment URL. Nothing runs Nix
or Kadeploy."""

from __future__ import annotations

import base64
import hashlib
import json
import os
import sys
import urllib.request
from pathlib import Path
from typing import Any

import pytest
import yaml

from g5kdeploy.credentials import Endpoint
from g5kdeploy.deploy import nxc_deployment
from g5kdeploy.deploy.base import DeployContext
from g5kdeploy.deploy.nxc_image import NxcImageMethod
from g5kdeploy.errors import G5kError
from g5kdeploy.plans import NxcImagePlan
from g5kdeploy.playbook import parse_playbook
from g5kdeploy.remote import SshRunner
from g5kdeploy.results import DeployRecord, RunRecord, RunStore
from g5kdeploy.simulator import SimConfig, serve_in_thread
from g5kdeploy.testbeds.api import Api
from g5kdeploy.testbeds.loopback import start_nodes, stop_nodes
from tests.deploy.common import CACHE_KEY, CACHE_URL, KERNEL, KEY, ROOT, deploy_job

STANDINS = Path(__file__).resolve().parent / "standins"
FRONTEND = "fnancy.nancy.grid5000.fr"
RUN_ID = "statx-20261127T150000-ab12"
STORE_IMAGE = "/nix/store/ffffffffffffffffffffffffffffffff-nixos.tar.xz"
LOGIN = "jdoe"
PUBLIC = f"http://public.nancy.grid5000.fr/~{LOGIN}/g5kdeploy/{RUN_ID}"
MARKER = "a1b2c3d4e5f6"
SPEED = 600.0
#: Boot deadlines, in simulated seconds: a minute of wall clock, since writing the environment description
#: over SSH before Kadeploy starts takes wall seconds that the simulator runs through 600 times faster.
BOOT_BUDGET = 60 * SPEED
DEPLOY_SECONDS = 120.0
PLAYBOOK = f"""
version: 2
name: exp
testbed: grid5000
reservation:
  site: nancy
  roles:
    collector: {{nodes: 1, cluster: gros}}
    exporter: {{nodes: 2, cluster: gros}}
  walltime: "1:00"
deploy:
  method: nxc
  flavour: g5k-image
  binary_cache: {{url: "{CACHE_URL}", public_key: "{CACHE_KEY}"}}
"""


class Bed:
    """A simulator with a running 3-node deploy job of jdoe's, and a loopback node playing the frontend."""

    def __init__(self, tmp_path: Path, server: Any) -> None:
        self.server = server
        self.api = Api(Endpoint(server.url, username=LOGIN, password="pw"), attempts=2, retry_wait_max=0.1)
        self.clock = server.simulator.clock
        self.nodes = deploy_job(self.api, self.clock, name="image-test")
        self.loop = start_nodes(tmp_path / "loop", [FRONTEND])
        self.runner = SshRunner(self.loop.ssh_config)
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.log = tmp_path / "frontend.log"
        self.flake = tmp_path / "flake"
        # The frontend's resolver (stand-in getent): addresses of the simulated nodes; no traffic goes there.
        self.addresses = {node: f"172.16.64.{index}" for index, node in enumerate(self.nodes, 1)}
        hosts = tmp_path / "hosts"
        hosts.write_text("".join(f"{node} {address}\n" for node, address in self.addresses.items()))
        self.env = {
            "PATH": f"{STANDINS}:{os.environ['PATH']}",
            "HOME": str(self.home),
            "USER": LOGIN,
            "STANDIN_PYTHON": sys.executable,
            "STANDIN_LOG": str(self.log),
            "STANDIN_ROOT": ROOT,
            "STANDIN_KERNEL": KERNEL,
            "STANDIN_HOSTS": str(hosts),
        }
        record = RunRecord(
            run_id=RUN_ID,
            playbook_path="exp.yaml",
            playbook=parse_playbook(PLAYBOOK),
            testbed="grid5000",
            api_url=server.url,
            roles={"collector": self.nodes[:1], "exporter": self.nodes[1:]},
            deploy=DeployRecord(method="nxc", marker=MARKER),
        )
        self.context = DeployContext(
            record=record,
            store=RunStore(tmp_path / "runs"),
            playbook=parse_playbook(PLAYBOOK),
            runner=self.runner,
            api=self.api,
            clock=self.clock,
            workdirs={},
        )

    def method(self, cmdline_limit: int = nxc_deployment.CMDLINE_LIMIT) -> NxcImageMethod:
        return NxcImageMethod(
            frontend=FRONTEND,
            runner=self.runner,
            directory=str(self.flake),
            env=self.env,
            public_key_text=KEY,
            http_bind=self.loop.nodes[0].address,
            cmdline_limit=cmdline_limit,
        )

    def description(self) -> dict[str, Any]:
        return yaml.safe_load((self.home / "public" / "g5kdeploy" / RUN_ID / "nixos.yaml").read_text())

    def close(self) -> None:
        self.runner.close()
        stop_nodes([node.pid for node in self.loop.nodes])


@pytest.fixture
def bed(tmp_path):
    config = SimConfig(speed=SPEED, launch_seconds=1.0, deploy_seconds=DEPLOY_SECONDS, seed=5)
    with serve_in_thread(config) as server:
        testbed = Bed(tmp_path, server)
        try:
            yield testbed
        finally:
            testbed.close()


def test_standin_image_plan_publishes_then_boot_deploys_that_url(bed):
    method = bed.method()
    plan = method.plan(bed.context, bed.nodes)

    # The plan: the same push / eval / cache query / substitution as kexec, then nxc build -f g5k-image.
    commands = bed.log.read_text().splitlines()
    assert any("path-info" in line for line in commands)
    assert any(
        line.startswith("nxc -d . build -f g5k-image --nix-flags ") and line.endswith(" nxc/composition.nix")
        for line in commands
    )
    assert not any(line.startswith("nxc -d . start") for line in commands), "nxc start would run kadeploy3"
    assert isinstance(plan, NxcImagePlan) and plan.method == "nxc" and plan.flavour == "g5k-image"
    assert plan.composition == ROOT and plan.arch == "x86_64"
    assert plan.toplevels["exporter"].endswith("nixos-system-exporter")
    assert "kexec" not in plan.model_dump()
    assert set(plan.plan_seconds) == {"push", "eval", "cache_query", "substitute", "nxc_build", "descriptor", "publish"}

    # The image, found in the user's own store, copied under ~/public with its sha256.
    source = bed.home / ".local/share/nix/root" / STORE_IMAGE.lstrip("/")
    published = bed.home / "public" / "g5kdeploy" / RUN_ID / "nixos.tar.xz"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert published.read_bytes() == source.read_bytes()
    assert oct(published.stat().st_mode & 0o777) == oct(0o644)
    image = plan.image
    assert image.sha256 == digest
    assert image.url == f"{PUBLIC}/nixos.tar.xz"
    assert image.path == f"~/public/g5kdeploy/{RUN_ID}/nixos.tar.xz"
    assert image.source == str(source)

    assert not (bed.home / "public" / "nixos.tar.xz").exists(), "nxc's shared ~/public/nixos.tar.xz is not used"

    # The deployment descriptor nxc's initrd reads, made for every node of the run in nxc's role order.
    descriptor = plan.descriptor
    assert descriptor["ssh_key.pub"] == KEY and descriptor["user"] == LOGIN
    assert descriptor["composition"] == "composition" and descriptor["all"]["image"] == STORE_IMAGE
    placed = {ip: (entry["role"], entry["host"]) for ip, entry in descriptor["deployment"].items()}
    assert placed == {
        bed.addresses[bed.nodes[0]]: ("collector", "collector1"),
        bed.addresses[bed.nodes[1]]: ("exporter", "exporter1"),
        bed.addresses[bed.nodes[2]]: ("exporter", "exporter2"),
    }
    assert plan.deploy_param.startswith("kernel command line, base64")
    assert plan.environment == f"{PUBLIC}/nixos.yaml"

    # Boot: the environment description written next to the image, then a Kadeploy deployment with exactly
    # its URL and the user's key; every node OK.
    outcomes = method.boot(bed.context, bed.nodes, deadline=bed.clock.now() + BOOT_BUDGET)
    assert {node: outcome.ok for node, outcome in outcomes.items()} == dict.fromkeys(bed.nodes, True), outcomes
    env = bed.description()
    assert env["image"] == {"file": f"{PUBLIC}/nixos.tar.xz", "kind": "tar", "compression": "xz"}
    assert env["boot"]["kernel"] == "/boot/bzImage" and env["boot"]["initrd"] == "/boot/initrd"
    assert env["filesystem"] == "ext4" and env["partition_type"] == 131 and env["arch"] == "x86_64"
    params = env["boot"]["kernel_params"].split()
    assert "check_kernel_initrd" in params and f"g5k.run={MARKER}" in params
    (deploy,) = [param.removeprefix("deploy=") for param in params if param.startswith("deploy=")]
    sent = json.loads(base64.b64decode(deploy))
    assert {ip: (entry["role"], entry["host"]) for ip, entry in sent["deployment"].items()} == placed
    deployments = bed.server.simulator.list_deployments("nancy", {}, 0, 50)[0]
    assert len(deployments) == 1
    assert deployments[0]["environment"] == plan.environment
    assert sorted(deployments[0]["nodes"]) == bed.nodes
    assert deployments[0]["key"].startswith("https://api.grid5000.fr/")

    expectation = method.expectation(bed.context)
    assert expectation.rebooted and expectation.kernel_options and expectation.exporter
    assert expectation.marker, "the run's marker is on the image's kernel command line"
    assert expectation.toplevel[bed.nodes[0]].endswith("collector")
    assert expectation.toplevel[bed.nodes[2]].endswith("exporter")


class FetchingApi(Api):
    """Stand-in for a node's initrd at Kadeploy time: when the deployment is created, fetch what the
    environment's deploy= names, as the booted image would. All HTTP to the API still reaches the simulator."""

    def __init__(self, api: Api, description: Any) -> None:
        self.__dict__.update(api.__dict__)
        self.read_description = description
        self.fetched: list[dict[str, Any]] = []

    def create_deployment(self, site: str, body: dict[str, Any]) -> dict[str, Any]:
        params = self.read_description()["boot"]["kernel_params"].split()
        (url,) = [param.removeprefix("deploy=") for param in params if param.startswith("deploy=")]
        with urllib.request.urlopen(url, timeout=5) as answer:
            self.fetched.append(json.loads(answer.read()))
        return super().create_deployment(site, body)


def test_standin_image_descriptor_too_long_is_served_while_kadeploy_runs(bed):
    api = FetchingApi(bed.api, bed.description)
    bed.context.api = api
    method = bed.method(cmdline_limit=256)
    plan = method.plan(bed.context, bed.nodes)
    assert plan.deploy_param.startswith("HTTP from")
    outcomes = method.boot(bed.context, bed.nodes, deadline=bed.clock.now() + BOOT_BUDGET)
    assert all(outcome.ok for outcome in outcomes.values()), outcomes
    assert api.fetched == [plan.descriptor]
    (url,) = [p.removeprefix("deploy=") for p in bed.description()["boot"]["kernel_params"].split() if "deploy=" in p]
    assert url.startswith(f"http://{bed.loop.nodes[0].address}:")
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


def test_standin_image_boot_after_restart_uses_the_saved_plan(bed):
    """A rerun (a new process) boots the KO nodes from the recorded plan's environment, without planning."""
    plan = bed.method().plan(bed.context, bed.nodes)
    assert bed.context.record.deploy is not None
    bed.context.record.deploy.plan = plan
    fresh = bed.method()
    outcomes = fresh.boot(bed.context, bed.nodes[1:], deadline=bed.clock.now() + BOOT_BUDGET)
    assert all(outcome.ok for outcome in outcomes.values()), outcomes
    deployments = bed.server.simulator.list_deployments("nancy", {}, 0, 50)[0]
    assert [d["environment"] for d in deployments] == [f"{PUBLIC}/nixos.yaml"]
    assert f"g5k.run={MARKER}" in bed.description()["boot"]["kernel_params"]
    assert sorted(deployments[0]["nodes"]) == bed.nodes[1:]
    assert fresh.expectation(bed.context).toplevel[bed.nodes[0]].endswith("collector")


def test_standin_image_missing_fails_the_plan_before_publishing(bed):
    bed.env["STANDIN_NO_IMAGE"] = "1"
    with pytest.raises(G5kError, match=f"image {STORE_IMAGE} not found"):
        bed.method().plan(bed.context, bed.nodes)
    assert not (bed.home / "public" / "g5kdeploy" / RUN_ID / "nixos.yaml").exists()
    assert bed.server.simulator.list_deployments("nancy", {}, 0, 50)[0] == []

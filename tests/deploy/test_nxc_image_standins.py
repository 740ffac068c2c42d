"""NxcMethod's g5k-image flavour: the plan on a loopback sshd node playing the frontend, with the stand-in nix and
nxc (tests/deploy/standins) and a temporary HOME, publishes the image under ~/public; the boot then goes to the
real simulator's deployments API with exactly the published environment URL. Nothing runs Nix or Kadeploy."""

from __future__ import annotations

import hashlib
import os
from pathlib import Path
from typing import Any

import pytest
import yaml

from g5kdeploy.credentials import Endpoint
from g5kdeploy.deploy.base import DeployContext
from g5kdeploy.deploy.nxc import NxcMethod
from g5kdeploy.errors import G5kError
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
SPEED = 600.0
DEPLOY_SECONDS = 120.0
PLAYBOOK = f"""
version: 1
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
        self.env = {
            "PATH": f"{STANDINS}:{os.environ['PATH']}",
            "HOME": str(self.home),
            "USER": LOGIN,
            "STANDIN_LOG": str(self.log),
            "STANDIN_ROOT": ROOT,
            "STANDIN_KERNEL": KERNEL,
        }
        record = RunRecord(
            run_id=RUN_ID,
            playbook_path="exp.yaml",
            playbook={},
            testbed="grid5000",
            api_url=server.url,
            roles={"collector": self.nodes[:1], "exporter": self.nodes[1:]},
            deploy=DeployRecord(method="nxc", marker="m"),
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

    def method(self) -> NxcMethod:
        return NxcMethod(
            frontend=FRONTEND, runner=self.runner, directory=str(self.flake), env=self.env, public_key_text=KEY
        )

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
    assert any(line.startswith("nxc -d . build -f g5k-image nxc/composition.nix") for line in commands)
    assert not any(line.startswith("nxc -d . start") for line in commands), "nxc start would run kadeploy3"
    assert plan["flavour"] == "g5k-image" and plan["composition"] == ROOT
    assert plan["toplevels"]["exporter"].endswith("nixos-system-exporter")
    assert "kexec" not in plan

    # The image, found in the user's own store, copied under ~/public with its sha256.
    source = bed.home / ".local/share/nix/root" / STORE_IMAGE.lstrip("/")
    published = bed.home / "public" / "g5kdeploy" / RUN_ID / "nixos.tar.xz"
    digest = hashlib.sha256(source.read_bytes()).hexdigest()
    assert published.read_bytes() == source.read_bytes()
    assert oct(published.stat().st_mode & 0o777) == oct(0o644)
    image = plan["image"]
    assert image["sha256"] == digest
    assert image["url"] == f"{PUBLIC}/nixos.tar.xz"
    assert image["path"] == f"~/public/g5kdeploy/{RUN_ID}/nixos.tar.xz"
    assert image["source"] == str(source)

    # The environment description: nxc's, with the image URL rewritten and the rest kept.
    description = bed.home / "public" / "g5kdeploy" / RUN_ID / "nixos.yaml"
    text = description.read_text()
    assert hashlib.sha256(text.encode()).hexdigest() == image["description_sha256"]
    env = yaml.safe_load(text)
    assert env["image"] == {"file": f"{PUBLIC}/nixos.tar.xz", "kind": "tar", "compression": "xz"}
    assert env["boot"]["kernel"] == "/boot/bzImage" and env["boot"]["initrd"] == "/boot/initrd"
    assert "deploy=eyJkZXBsb3ltZW50Ijp7fX0=" in env["boot"]["kernel_params"]
    assert env["filesystem"] == "ext4"
    assert plan["environment"] == image["description_url"] == f"{PUBLIC}/nixos.yaml"
    assert not (bed.home / "public" / "nixos.tar.xz").exists(), "nxc's shared ~/public/nixos.tar.xz is not used"

    # Boot: a Kadeploy deployment with exactly that URL and the user's key; every node OK.
    outcomes = method.boot(bed.context, bed.nodes, deadline=bed.clock.now() + 3 * DEPLOY_SECONDS)
    assert {node: outcome.ok for node, outcome in outcomes.items()} == dict.fromkeys(bed.nodes, True), outcomes
    deployments = bed.server.simulator.list_deployments("nancy", {}, 0, 50)[0]
    assert len(deployments) == 1
    assert deployments[0]["environment"] == plan["environment"]
    assert sorted(deployments[0]["nodes"]) == bed.nodes
    assert deployments[0]["key"].startswith("https://api.grid5000.fr/")

    expectation = method.expectation(bed.context)
    assert expectation.rebooted and expectation.kernel_options and expectation.exporter
    assert not expectation.marker
    assert expectation.toplevel[bed.nodes[0]].endswith("collector")
    assert expectation.toplevel[bed.nodes[2]].endswith("exporter")


def test_standin_image_boot_after_restart_uses_the_saved_plan(bed):
    """A rerun (a new process) boots the KO nodes from the recorded plan's environment, without planning."""
    plan = bed.method().plan(bed.context, bed.nodes)
    assert bed.context.record.deploy is not None
    bed.context.record.deploy.plan = plan
    fresh = bed.method()
    outcomes = fresh.boot(bed.context, bed.nodes[1:], deadline=bed.clock.now() + 3 * DEPLOY_SECONDS)
    assert all(outcome.ok for outcome in outcomes.values()), outcomes
    deployments = bed.server.simulator.list_deployments("nancy", {}, 0, 50)[0]
    assert [d["environment"] for d in deployments] == [f"{PUBLIC}/nixos.yaml"]
    assert sorted(deployments[0]["nodes"]) == bed.nodes[1:]
    assert fresh.expectation(bed.context).toplevel[bed.nodes[0]].endswith("collector")


def test_standin_image_missing_fails_the_plan_before_publishing(bed):
    bed.env["STANDIN_NO_IMAGE"] = "1"
    with pytest.raises(G5kError, match=f"image {STORE_IMAGE} not found"):
        bed.method().plan(bed.context, bed.nodes)
    assert not (bed.home / "public" / "g5kdeploy" / RUN_ID / "nixos.yaml").exists()
    assert bed.server.simulator.list_deployments("nancy", {}, 0, 50)[0] == []

"""The deploy plan in run.json: one typed model per method (and per nxc flavour), read back from what this agent
writes and from what agents wrote before plans were typed; a plan that no longer reads is forgotten, not fatal.
And the deploy phase picks the nxc method of the playbook's flavour."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any, cast

import pytest

from g5kdeploy.deploy.base import DeployContext
from g5kdeploy.deploy.nxc_image import NxcImageMethod
from g5kdeploy.deploy.nxc_kexec import NxcKexecMethod
from g5kdeploy.deploy.phase import method_for
from g5kdeploy.plans import ArtifactsPlan, KadeployPlan, NxcImagePlan, NxcKexecPlan
from g5kdeploy.playbook import Playbook, parse_playbook
from g5kdeploy.remote import SshRunner
from g5kdeploy.results import RUN_FILE, DeployRecord, NodeDeployState, RunRecord, RunStore
from g5kdeploy.testbeds.api import Api
from tests.deploy.common import KEY, ROOT

RUN_ID = "exp-20261127T150000-ab12"
NODES = ["gros-1.nancy.grid5000.fr", "gros-2.nancy.grid5000.fr"]
COLLECTOR = "/nix/store/dddddddddddddddddddddddddddddddd-nixos-system-collector"
EXPORTER = "/nix/store/eeeeeeeeeeeeeeeeeeeeeeeeeeeeeeee-nixos-system-exporter"
PUBLIC = f"http://public.nancy.grid5000.fr/~jdoe/g5kdeploy/{RUN_ID}"
PHASE = {"deadline_s": 1800, "retries": 2, "to_deploy": NODES}
NXC_COMMON = {
    "method": "nxc",
    "frontend": "fnancy.nancy.grid5000.fr",
    "nodes": NODES,
    "roles": {"collector": NODES[:1], "exporter": NODES[1:]},
    "composition": ROOT,
    "toplevels": {"collector": COLLECTOR, "exporter": EXPORTER},
    "closure_paths": 812,
    "closure_nar_size": 3_221_225_472,
    "missing_paths": [],
    "flake_lock": "9f" * 32,
}
DESCRIPTOR = {
    "ssh_key.pub": KEY,
    "deployment": {"172.16.64.1": {"role": "collector", "host": "collector1", "toplevel": COLLECTOR}},
    "composition": "composition",
    "user": "jdoe",
}
#: Plans as the agent wrote them into run.json while they were dicts: the method's keys, then the phase's.
KEXEC = {
    **NXC_COMMON,
    "flavour": "g5k-nfs-store",
    "kexec": {"kernel": "/home/jdoe/k/bzImage", "initrd": "/home/jdoe/k/initrd", "append": "deploy=x console=ttyS0"},
    "initrd_bytes": 4 << 20,
    "ram_needed_bytes": 2 * (4 << 20) + (1 << 30),
    "descriptor": DESCRIPTOR,
    "deploy_param": "kernel command line, base64, 412 characters",
    "deadlines": {"deploy_timeout": 1800, "settle_seconds": 5.0, "probe_timeout": 15.0},
    "plan_seconds": {"push": 1.2, "eval": 8.0, "cache_query": 0.4, "substitute": 30.1, "nxc_build": 3.3},
    **PHASE,
}
IMAGE = {
    **NXC_COMMON,
    "flavour": "g5k-image",
    "image": {
        "source": "/nix/store/ffffffffffffffffffffffffffffffff-nixos.tar.xz",
        "path": f"~/public/g5kdeploy/{RUN_ID}/nixos.tar.xz",
        "url": f"{PUBLIC}/nixos.tar.xz",
        "sha256": "ab" * 32,
    },
    "arch": "x86_64",
    "environment": f"{PUBLIC}/nixos.yaml",
    "descriptor": DESCRIPTOR,
    "deploy_param": "kernel command line, base64, 412 characters",
    "deadlines": {"deploy_timeout": 1800, "poll_seconds": 10.0},
    "plan_seconds": {"push": 1.2, "eval": 8.0, "descriptor": 0.1, "publish": 12.5},
    **PHASE,
}
KADEPLOY = {
    "method": "kadeploy",
    "environment": "http://public.nancy.grid5000.fr/~jdoe/statx.yaml",
    "nodes": NODES,
    "sites": {"nancy": NODES},
    "poll_seconds": 10.0,
    **PHASE,
}
ARTIFACTS = {
    "method": "artifacts",
    "nodes": NODES,
    "files": {"artifacts/statx-bench": "cd" * 32},
    "ebpf": "compiled against this machine's BTF",
    **PHASE,
}
PLAYBOOK = """
version: 2
name: exp
testbed: grid5000
reservation:
  site: nancy
  roles:
    collector: {nodes: 1, cluster: gros}
    exporter: {nodes: 1, cluster: gros}
  walltime: "1:00"
deploy: {method: nxc, flavour: g5k-nfs-store}
"""


def write_run(tmp_path: Path, plan: Any) -> RunStore:
    """A run.json whose deploy section holds ``plan`` as it is, with one verified node in its ledger."""
    store = RunStore(tmp_path / "results")
    record = RunRecord(
        run_id=RUN_ID, playbook_path="exp.yaml", playbook=parse_playbook(PLAYBOOK), testbed="grid5000", api_url=""
    )
    store.create(record)
    data = json.loads((store.directory(RUN_ID) / RUN_FILE).read_text())
    data["deploy"] = {"method": "nxc", "marker": "a1b2c3", "plan": plan, "nodes": {NODES[0]: {"state": "verified"}}}
    (store.directory(RUN_ID) / RUN_FILE).write_text(json.dumps(data))
    return store


@pytest.mark.parametrize(
    ("written", "model"),
    [(KEXEC, NxcKexecPlan), (IMAGE, NxcImagePlan), (KADEPLOY, KadeployPlan), (ARTIFACTS, ArtifactsPlan)],
    ids=["nxc-kexec", "nxc-image", "kadeploy", "artifacts"],
)
def test_a_plan_written_as_a_dict_loads_typed_and_is_saved_back_unchanged(tmp_path, written, model):
    store = write_run(tmp_path, written)
    record = store.load(RUN_ID)
    assert record.deploy is not None
    assert type(record.deploy.plan) is model
    store.save(record)
    saved = json.loads((store.directory(RUN_ID) / RUN_FILE).read_text())["deploy"]["plan"]
    assert saved == written


def test_the_typed_plans_carry_what_a_boot_after_a_restart_reads(tmp_path):
    kexec = write_run(tmp_path / "kexec", KEXEC).load(RUN_ID).deploy
    image = write_run(tmp_path / "image", IMAGE).load(RUN_ID).deploy
    assert kexec is not None and isinstance(kexec.plan, NxcKexecPlan)
    assert image is not None and isinstance(image.plan, NxcImagePlan)
    assert kexec.plan.kexec.append == "deploy=x console=ttyS0" and kexec.plan.initrd_bytes == 4 << 20
    assert kexec.plan.deadlines.settle_seconds == 5.0 and kexec.plan.toplevels["exporter"] == EXPORTER
    assert image.plan.image.url == f"{PUBLIC}/nixos.tar.xz" and image.plan.environment == f"{PUBLIC}/nixos.yaml"
    assert image.plan.descriptor["ssh_key.pub"] == KEY and image.plan.to_deploy == NODES


@pytest.mark.parametrize(
    "written",
    [
        {},
        {"method": "nxc", "flavour": "g5k-ramdisk", "nodes": NODES},
        {**KEXEC, "flavour": "g5k-image"},
        {"method": "teleport", "nodes": NODES},
        ["not", "a", "plan"],
    ],
    ids=["empty", "older-nxc", "mixed-flavours", "unknown-method", "not-a-mapping"],
)
def test_a_plan_that_does_not_read_is_forgotten_and_the_ledger_kept(tmp_path, written):
    record = write_run(tmp_path, written).load(RUN_ID)
    assert record.deploy is not None
    assert record.deploy.plan is None
    assert record.deploy.nodes[NODES[0]].state == "verified"


def test_a_new_deploy_record_has_no_plan_yet_and_saves_as_null(tmp_path):
    store = write_run(tmp_path, None)
    record = store.load(RUN_ID)
    record.deploy = DeployRecord(method="kadeploy", marker="m", nodes={NODES[0]: NodeDeployState()})
    store.save(record)
    assert json.loads((store.directory(RUN_ID) / RUN_FILE).read_text())["deploy"]["plan"] is None
    assert store.load(RUN_ID).deploy.plan is None


class _User:
    user = "jdoe"


def context(tmp_path: Path, flavour: str) -> DeployContext:
    key = tmp_path / "id_ed25519"
    key.write_text("not a real key: only its public half is read\n")
    key.with_name("id_ed25519.pub").write_text(KEY + "\n")
    playbook = parse_playbook(PLAYBOOK).model_dump()
    playbook["deploy"]["flavour"] = flavour
    playbook["ssh"]["key"] = str(key)
    store = RunStore(tmp_path / "results")
    record = RunRecord(
        run_id=RUN_ID,
        playbook_path="exp.yaml",
        playbook=Playbook.model_validate(playbook),
        testbed="grid5000",
        api_url="",
        roles={"collector": NODES[:1], "exporter": NODES[1:]},
    )
    store.create(record)
    return DeployContext(
        record=record,
        store=store,
        playbook=record.playbook,
        runner=cast(SshRunner, None),
        api=cast(Api, _User()),
        clock=cast(Any, None),
        workdirs={},
    )


@pytest.mark.parametrize(
    ("flavour", "method"),
    [("g5k-nfs-store", NxcKexecMethod), ("g5k-ramdisk", NxcKexecMethod), ("g5k-image", NxcImageMethod)],
)
def test_the_deploy_phase_picks_the_nxc_method_of_the_flavour(tmp_path, flavour, method):
    ctx = context(tmp_path, flavour)
    assert ctx.playbook.deploy is not None
    chosen = method_for(ctx.playbook.deploy, ctx)
    assert type(chosen) is method and chosen.name == "nxc"
    assert chosen.frontend.host == "fnancy.nancy.grid5000.fr"

"""NxcKexecMethod on real loopback sshd nodes, with stand-in nix, kexec and getent executables (tests/deploy/standins)
first on the remote PATH. One node also plays the frontend, with a home of its own where the stand-in nix puts
its store, as nxc's Grid'5000 setup does. nxc is the real nixos-compose 0.7.11, with a stand-in resolver for the
node names. Nothing here runs Nix or kexec for real."""

from __future__ import annotations

import json
import os
import sys
import time
import urllib.request
from pathlib import Path

import pytest

from g5kdeploy.clock import WallClock
from g5kdeploy.deploy import nxc_deployment
from g5kdeploy.deploy.base import DeployContext
from g5kdeploy.deploy.nxc_kexec import NxcKexecMethod
from g5kdeploy.errors import ConfigError, G5kError
from g5kdeploy.playbook import parse_playbook
from g5kdeploy.remote import SshRunner
from g5kdeploy.results import DeployRecord, RunRecord, RunStore
from g5kdeploy.testbeds.api import Api
from g5kdeploy.testbeds.loopback import start_nodes, stop_nodes
from g5kdeploy.tools import nix, nxc
from tests.deploy.common import CACHE_KEY, CACHE_URL, KERNEL, ROOT

STANDINS = Path(__file__).resolve().parent / "standins"
REPO = Path(__file__).resolve().parents[2]
NAMES = [f"gros-{i}.nancy.grid5000.fr" for i in range(1, 5)]
MARKER = "statx-20261127T150000-ab12-k9"
DOWN = 2.0
PLAYBOOK = f"""
version: 2
name: exp
testbed: grid5000
reservation:
  site: nancy
  roles:
    collector: {{nodes: 1, cluster: gros}}
    exporter: {{nodes: 3, cluster: gros}}
  walltime: "1:00"
deploy:
  method: nxc
  flavour: g5k-nfs-store
  binary_cache: {{url: "{CACHE_URL}", public_key: "{CACHE_KEY}"}}
"""


class Bed:
    def __init__(self, tmp_path: Path) -> None:
        self.loop = start_nodes(tmp_path / "loop", NAMES)
        self.runner = SshRunner(self.loop.ssh_config)
        self.log = tmp_path / "frontend.log"
        self.hosts = tmp_path / "hosts"
        self.hosts.write_text("".join(f"{node.name} {node.address}\n" for node in self.loop.nodes))
        self.home = tmp_path / "home"
        self.home.mkdir()
        self.workdirs = {node.name: node.workdir for node in self.loop.nodes}
        for node in self.loop.nodes:
            # The stand-in kexec -e stops and restarts the node's sshd through this file.
            (node.workdir / "sshd.pid").write_text(f"{node.pid}\n")
        self.env = {
            "PATH": f"{STANDINS}:{os.environ['PATH']}",
            "HOME": str(self.home),
            "STANDIN_PYTHON": sys.executable,
            "STANDIN_LOG": str(self.log),
            "STANDIN_ROOT": ROOT,
            "STANDIN_KERNEL": KERNEL,
            "STANDIN_DOWN": str(DOWN),
            "STANDIN_HOSTS": str(self.hosts),
        }
        record = RunRecord(
            run_id="exp-test",
            playbook_path="exp.yaml",
            playbook=parse_playbook(PLAYBOOK),
            testbed="grid5000",
            api_url="",
            roles={"collector": NAMES[:1], "exporter": NAMES[1:]},
            deploy=DeployRecord(method="nxc", marker=MARKER),
        )
        self.context = DeployContext(
            record=record,
            store=RunStore(tmp_path),
            playbook=parse_playbook(PLAYBOOK),
            runner=self.runner,
            api=Api.__new__(Api),  # never called by nxc
            clock=WallClock(),
            workdirs={name: str(path) for name, path in self.workdirs.items()},
        )
        self.flake = tmp_path / "flake"

    def method(self, cmdline_limit: int = nxc_deployment.CMDLINE_LIMIT, **env: str) -> NxcKexecMethod:
        return NxcKexecMethod(
            frontend=NAMES[0],
            runner=self.runner,
            directory=str(self.flake),
            env={**self.env, **env},
            settle_seconds=1.5,
            public_key_text="ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIStandinKey test@standin",
            # The frontend is a loopback node: its server must listen where the other nodes can reach it.
            http_bind=self.loop.nodes[0].address,
            cmdline_limit=cmdline_limit,
        )

    def close(self) -> None:
        self.runner.close()
        pids = [node.pid for node in self.loop.nodes]
        for path in self.workdirs.values():
            # sshds the stand-in kexec restarted.
            pids += [int(word) for word in (path / "sshd.pid").read_text().split() if word.isdigit()]
        stop_nodes(pids)

    def kexec_log(self, node: str) -> str:
        path = self.workdirs[node] / "kexec.log"
        return path.read_text() if path.exists() else ""


@pytest.fixture
def bed(tmp_path):
    testbed = Bed(tmp_path)
    yield testbed
    testbed.close()


def test_standin_plan_fails_fast_listing_missing_paths(bed):
    missing = "/nix/store/ffffffffffffffffffffffffffffffff-linux-6.12.30-modules"
    with pytest.raises(G5kError, match="lacks 1 path") as caught:
        bed.method(STANDIN_MISSING=missing).plan(bed.context, NAMES)
    assert missing in str(caught.value)
    commands = bed.log.read_text()
    # The query came before any substitution or nxc call, and nothing touched a node.
    assert "path-info" in commands
    assert " build " not in commands and "nxc" not in commands
    assert not any(bed.kexec_log(node) for node in NAMES)


def test_standin_plan_then_parallel_boot_of_four_nodes(bed):
    method = bed.method()
    plan = method.plan(bed.context, NAMES)
    assert (bed.flake / "flake.nix").is_file() and (bed.flake / "nxc" / "composition.nix").is_file()
    assert (bed.flake / "g5kdeploy" / "payload").is_dir()
    assert plan.method == "nxc" and plan.flavour == "g5k-nfs-store"
    assert plan.composition == ROOT
    assert plan.missing_paths == []
    assert plan.flake_lock.startswith("absent") != (REPO / "flake.lock").is_file()
    assert plan.closure_nar_size == 4096 + 123456789
    assert plan.toplevels["exporter"].endswith("nixos-system-exporter")
    # nxc's script sets the files through $KERNEL and $INITRD; the plan has the paths, in the user's own store.
    assert plan.kexec.kernel == str(bed.home / ".local/share/nix/root" / KERNEL.lstrip("/") / "bzImage")
    assert plan.initrd_bytes == 4 << 20 and plan.ram_needed_bytes == 2 * (4 << 20) + (1 << 30)
    assert f"nfs_store=nfs:/export{bed.home}/.local/share/nix/root/nix/store" in plan.kexec.append
    assert set(plan.plan_seconds) == {"push", "eval", "cache_query", "substitute", "nxc_build", "nxc_start"}
    commands = bed.log.read_text().splitlines()
    path_info = next(line for line in commands if "path-info" in line)
    assert f"--store {CACHE_URL}" in path_info and "narinfo-cache-negative-ttl 0" in path_info
    build = next(line for line in commands if line.startswith("nix") and " build " in line)
    assert "--max-jobs 0" in build and f"extra-trusted-public-keys {CACHE_KEY}" in build
    assert "--no-check-sigs" not in " ".join(commands)
    nxc_build = next(line for line in commands if line.startswith("nxc -d . build"))
    assert nxc_build.startswith("nxc -d . build -f g5k-nfs-store --nix-flags --max-jobs 0 ")
    assert nxc_build.endswith(" nxc/composition.nix")
    # nxc ran nix build, whose link names a /nix/store path that only exists in the user's store.
    assert (bed.flake / "build/composition::g5k-nfs-store").readlink() == Path(ROOT)
    start = next(line for line in commands if line.startswith("nxc -d . start"))
    assert "-r collector=1 -r exporter=3" in start and "no-launch" in start
    assert "-i .g5k-root-key.pub" in start and (bed.flake / ".g5k-root-key.pub").read_text().startswith("ssh-ed25519")
    assert (bed.flake / ".g5k-machines").read_text().split() == NAMES

    began = time.monotonic()
    outcomes = method.boot(bed.context, NAMES, deadline=time.time() + 30)
    elapsed = time.monotonic() - began
    assert {node: outcome.ok for node, outcome in outcomes.items()} == dict.fromkeys(NAMES, True), outcomes
    hosts = {
        NAMES[0]: "collector host collector1",
        **{name: f"exporter host exporter{i}" for i, name in enumerate(NAMES[1:], 1)},
    }
    for node in NAMES:
        loaded = bed.kexec_log(node)
        assert f"g5k.run={MARKER}" in loaded and "check_kernel_initrd" in loaded
        assert "down " in loaded, "kexec -e never ran"
        # What nxc's initrd needs: its own address in the descriptor, with the role the run gave the node.
        assert f"stage-1: role {hosts[node]} from base64" in loaded, loaded
        assert outcomes[node].log[0] == "syscall=kexec_load"
    # One node takes about 1 s (delay) + 2 s (down) + probing; four in series would take over 12 s.
    assert elapsed < 2 * (1 + DOWN) + 2, elapsed
    expectation = method.expectation(bed.context)
    assert expectation.marker and expectation.rebooted
    assert expectation.toplevel[NAMES[0]].endswith("collector")
    assert expectation.toplevel[NAMES[3]].endswith("exporter")


def test_standin_descriptor_too_long_for_the_command_line_is_served_from_the_frontend_during_boot(bed):
    """Above nxc's limit (above four nodes, nxc's own server dies with `nxc start --start-option no-launch`)
    the nodes fetch the descriptor from a server on the frontend that lives for the boot only."""
    method = bed.method(cmdline_limit=256)
    plan = method.plan(bed.context, NAMES)
    assert plan.deploy_param.startswith("HTTP from")
    outcomes = method.boot(bed.context, NAMES, deadline=time.time() + 30)
    assert all(outcome.ok for outcome in outcomes.values()), outcomes
    urls = set()
    for node in NAMES:
        loaded = bed.kexec_log(node)
        assert "from http" in loaded, loaded
        urls.add(next(word for word in loaded.split() if word.startswith("--append=deploy=")).split("=", 2)[2])
    (url,) = urls
    assert url.startswith(f"http://{bed.loop.nodes[0].address}:")
    served = json.loads((bed.workdirs[NAMES[1]] / "deployment.json").read_text())
    assert served["deployment"][bed.loop.nodes[1].address]["toplevel"].endswith("nixos-system-exporter")
    with pytest.raises(OSError):
        urllib.request.urlopen(url, timeout=2)


def test_standin_retrying_one_node_still_describes_every_node_of_the_run(bed):
    """nxc would give a role with no node in the machine file a host of its own and shift the others, and
    each node's /etc/hosts comes from the descriptor: a retry of one node plans for the whole run."""
    plan = bed.method().plan(bed.context, [NAMES[2]])
    assert plan.nodes == [NAMES[2]]
    assert (bed.flake / ".g5k-machines").read_text().split() == NAMES
    start = next(line for line in bed.log.read_text().splitlines() if line.startswith("nxc -d . start"))
    assert "-r collector=1 -r exporter=3" in start
    assert len(plan.descriptor["deployment"]) == len(NAMES)


def test_standin_a_role_the_composition_lacks_stops_the_plan_before_nxc_start(bed):
    bed.context.record.roles = {**bed.context.record.roles, "monitor": [NAMES[3]]}
    bed.context.record.roles["exporter"] = NAMES[1:3]
    with pytest.raises(ConfigError, match="role monitor is not in the composition"):
        bed.method().plan(bed.context, NAMES)
    assert not any(line.startswith("nxc -d . start") for line in bed.log.read_text().splitlines())


def test_standin_node_that_never_comes_back_fails_alone(bed):
    method = bed.method()
    method.plan(bed.context, NAMES)
    (bed.workdirs[NAMES[2]] / "never-back").touch()
    outcomes = method.boot(bed.context, NAMES, deadline=time.time() + 9)
    assert not outcomes[NAMES[2]].ok
    assert "no SSH within" in outcomes[NAMES[2]].reason and "after kexec" in outcomes[NAMES[2]].reason
    assert all(outcomes[node].ok for node in NAMES if node != NAMES[2]), outcomes


def test_standin_node_without_the_ram_for_the_initrd_is_refused_before_kexec(bed):
    """A 1 TiB initrd (sparse) needs more RAM than this machine has: every node fails before kexec -l, with
    what it needs and what it has, and none goes down."""
    method = bed.method(STANDIN_INITRD_BYTES=str(1 << 40))
    method.plan(bed.context, NAMES)
    outcomes = method.boot(bed.context, NAMES, deadline=time.time() + 30)
    for node in NAMES:
        assert not outcomes[node].ok
        assert "not enough RAM" in outcomes[node].reason and "needs 2049.0 GiB of RAM" in outcomes[node].reason
        assert bed.kexec_log(node) == ""


def test_standin_kernel_in_lockdown_loads_with_kexec_file_load(bed):
    method = bed.method()
    method.plan(bed.context, NAMES[:2])
    (bed.workdirs[NAMES[1]] / "kexec-load-refused").touch()
    outcomes = method.boot(bed.context, NAMES[:2], deadline=time.time() + 30)
    assert outcomes[NAMES[0]].ok and outcomes[NAMES[0]].log[0] == "syscall=kexec_load"
    assert outcomes[NAMES[1]].ok and outcomes[NAMES[1]].log[0] == "syscall=kexec_file_load", outcomes
    assert bed.kexec_log(NAMES[1]).startswith("-s ")


def test_standin_failed_kexec_load_fails_that_node_with_its_stderr(bed):
    method = bed.method()
    method.plan(bed.context, NAMES)
    (bed.workdirs[NAMES[1]] / "kexec-load-fails").touch()
    outcomes = method.boot(bed.context, NAMES, deadline=time.time() + 30)
    assert not outcomes[NAMES[1]].ok
    assert "kexec -l and kexec -s failed" in outcomes[NAMES[1]].reason
    assert "Cannot allocate memory" in outcomes[NAMES[1]].reason
    assert "down " not in bed.kexec_log(NAMES[1]), "a node whose load failed must not be kexec'd"
    assert all(outcomes[node].ok for node in NAMES if node != NAMES[1]), outcomes


def test_parsers():
    script = (
        "#!/usr/bin/env bash\n"
        '/run/current-system/sw/bin/kexec -l /k/bzImage --initrd=/k/initrd --append="deploy=x console=ttyS0"\n'
        "kexec -e\n"
    )
    assert nxc.parse_kexec_script(script) == nxc.KexecParams("/k/bzImage", "/k/initrd", "deploy=x console=ttyS0")
    # nxc 0.7.11's own script: kernel and initrd come from variables it sets first.
    script = (
        "#!/usr/bin/env bash\n: ${KERNEL:=/home/jdoe/k/bzImage}\n: ${INITRD:=/home/jdoe/k/initrd}\n"
        'kexec -l $KERNEL --initrd=$INITRD --append="deploy=x console=ttyS0"\nkexec -e\n'
    )
    parsed = nxc.parse_kexec_script(script)
    assert (parsed.kernel, parsed.initrd) == ("/home/jdoe/k/bzImage", "/home/jdoe/k/initrd")
    with pytest.raises(G5kError, match="variable"):
        nxc.parse_kexec_script('kexec -l $KERNEL --initrd=/i --append="deploy=x"\n')
    with pytest.raises(G5kError):
        nxc.parse_kexec_script("kexec -e\n")
    old = '[{"path": "/nix/store/a", "narSize": 3}, {"path": "/nix/store/b", "valid": false}]'
    new = '{"/nix/store/a": {"narSize": 3}, "/nix/store/b": null}'
    assert nix.parse_path_info(old) == nix.parse_path_info(new) == ({"/nix/store/a": 3}, ["/nix/store/b"])
    with pytest.raises(G5kError, match=r"composition\.nix"):
        nxc.composition_name("test/default.nix")

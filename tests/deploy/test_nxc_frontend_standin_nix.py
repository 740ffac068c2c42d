"""The agent's frontend steps ``nxc.nxc_build`` and ``nxc.nxc_prepare_kexec`` run on this machine, in a temporary
flake directory and home, by the real nxc 0.7.11 (the virtualenv's ``nxc`` script). ``nxc build`` runs the
stand-in nix (tests/deploy/standins/nix: no Nix build here), which keeps its store under
``~/.local/share/nix/root`` as nxc's Grid'5000 setup does; ``nxc start --start-option no-launch`` then runs for
real on that compose-info. Machines are loopback addresses, so nothing is resolved and nothing leaves the host."""

from __future__ import annotations

import os
import re
import shutil
import subprocess
import sys
import time
from collections.abc import Mapping, Sequence
from pathlib import Path

import pytest

from g5kdeploy.deploy import nxc_deployment
from g5kdeploy.deploy.nxc import ROOT_KEY_FILE
from g5kdeploy.playbook import Deploy
from g5kdeploy.remote import CommandResult
from g5kdeploy.tools import nxc
from g5kdeploy.tools.frontend import Frontend
from g5kdeploy.tools.nix import BinaryCacheRef
from tests.deploy.common import CACHE_KEY, CACHE_URL, KERNEL, KEY, ROOT

REPO = Path(__file__).resolve().parents[2]
STANDINS = Path(__file__).resolve().parent / "standins"
CACHE = BinaryCacheRef(url=CACHE_URL, public_key=CACHE_KEY)
COMPOSITION = Deploy(method="nxc").composition
FLAVOUR = "g5k-ramdisk"
# The machine file as NxcMethod writes it: roles alphabetically, each role's nodes in the run's order.
MACHINES = ["127.0.0.7", "127.0.0.3", "127.0.0.2", "127.0.0.9"]
MEMBERS = {"collector": MACHINES[:1], "exporter": MACHINES[1:]}


class LocalRunner:
    """``SshRunner.run``'s contract for a command on this machine, which plays the frontend."""

    def run(
        self, hosts: Sequence[str], command: str, *, timeout: float = 60.0, env: Mapping[str, str] | None = None
    ) -> dict[str, CommandResult]:
        began = time.monotonic()
        proc = subprocess.run(
            ["sh", "-c", command], env=env, capture_output=True, text=True, timeout=timeout, check=False
        )
        return {
            host: CommandResult(
                host=host,
                exit_code=proc.returncode,
                stdout=proc.stdout,
                stderr=proc.stderr,
                duration=time.monotonic() - began,
                timed_out=False,
                attempts=1,
                error=None,
            )
            for host in hosts
        }


@pytest.fixture
def frontend(tmp_path: Path) -> Frontend:
    flake = tmp_path / "flake"
    (flake / "nxc").mkdir(parents=True)
    for part in ("flake.nix", "nxc.json", COMPOSITION):
        shutil.copy(REPO / part, flake / part)
    (flake / ROOT_KEY_FILE).write_text(KEY + "\n")
    home = tmp_path / "home"
    home.mkdir()
    env = {
        # The virtualenv's real nxc first, then the stand-in nix it runs.
        "PATH": f"{Path(sys.executable).parent}:{STANDINS}:{os.environ['PATH']}",
        "HOME": str(home),
        "USER": "jdoe",
        "STANDIN_LOG": str(tmp_path / "frontend.log"),
        "STANDIN_ROOT": ROOT,
        "STANDIN_KERNEL": KERNEL,
    }
    return Frontend(runner=LocalRunner(), host="frontend", directory=str(flake), env=env)  # type: ignore[arg-type]


def test_standin_nix_build_then_real_nxc_start_no_launch_writes_what_the_agent_reads(frontend: Frontend) -> None:
    home = Path(frontend.env["HOME"])
    flake = Path(frontend.directory)

    info = nxc.nxc_build(frontend, FLAVOUR, COMPOSITION, CACHE, timeout=60)
    # The link names the logical store path; the agent read the file under the user's store root, as nxc does.
    assert (flake / f"build/composition::{FLAVOUR}").readlink() == Path(ROOT)
    assert not Path(ROOT).exists()
    assert info["flavour"] == {"name": FLAVOUR}
    roles_in_order = list(nxc.composition_roles(info))
    assert roles_in_order == ["collector", "exporter"]

    counts = {role: len(nodes) for role, nodes in MEMBERS.items()}
    kexec, written = nxc.nxc_prepare_kexec(frontend, FLAVOUR, MACHINES, counts, identity=ROOT_KEY_FILE, timeout=60)

    # nxc's script loads the kernel and initrd from the user's store, where the nodes find them over NFS.
    store = home / ".local/share/nix/root"
    assert kexec.kernel == str(store / KERNEL.lstrip("/") / "bzImage")
    assert Path(kexec.kernel).is_file() and Path(kexec.initrd).is_file()
    assert nxc_deployment.without_deploy(kexec.append) == "console=tty0 console=ttyS0,115200 check_kernel_initrd"

    # nxc placed every node where the run expects it, and its descriptor is exactly the one the agent writes
    # itself for g5k-image, down to the bytes of the base64 form on the kernel command line.
    placements = nxc_deployment.place(roles_in_order, MEMBERS, {node: node for node in MACHINES})
    nxc_deployment.check_placement(written, placements)
    own = nxc_deployment.descriptor(info, placements, ssh_key=KEY, user="jdoe")
    assert written == own
    deploy = re.search(r"(?<!\S)deploy=(\S+)", kexec.append)
    assert deploy and deploy[1] == nxc_deployment.cmdline_value(own)

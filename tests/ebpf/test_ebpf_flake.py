"""The playbook's ``ebpf.programs`` is what a Grid'5000 node runs: the nxc deploy pushes the flake with the
playbook's programs (their files and their list in nix/ebpf/programs.json), which nix/lib/programs.nix (ebpf_exporter's
``names``) and nix/ebpf/default.nix (the package) read.

The frontend is a loopback sshd node with the stand-in nix of tests/deploy (nothing here runs Nix for real but
``nix-instantiate --eval`` of the pushed files, which reads them offline).
"""

from __future__ import annotations

import json
import os
import shutil
import subprocess
from pathlib import Path

import pytest

from g5kdeploy.playbook import parse_playbook
from tests.deploy.test_nxc_standins import NAMES, PLAYBOOK, Bed

REPO = Path(__file__).resolve().parents[2]
OWN = Path(__file__).resolve().parent / "programs"
PROGRAMS = ["statx-override", "openat-count"]


@pytest.fixture
def bed(tmp_path):
    testbed = Bed(tmp_path)
    yield testbed
    testbed.close()


def nix_eval(path: Path) -> object:
    if shutil.which("nix-instantiate") is None:
        if os.environ.get("CI"):
            pytest.fail("CI is set and nix-instantiate is missing (apt-get install nix-bin)")
        pytest.skip("nix-instantiate is not installed (apt-get install nix-bin)")
    proc = subprocess.run(
        ["nix-instantiate", "--store", "dummy://", "--eval", "--strict", "--json", str(path)],
        check=False,
        capture_output=True,
        text=True,
        timeout=60,
    )
    assert proc.returncode == 0, proc.stderr
    return json.loads(proc.stdout)


def test_the_pushed_flake_runs_the_playbooks_programs(bed, tmp_path):
    programs = tmp_path / "my-programs"
    programs.mkdir()
    for source in [*(REPO / "nix" / "ebpf").glob("statx-override.*"), *OWN.glob("openat-count.*")]:
        shutil.copy(source, programs / source.name)
    playbook = parse_playbook(PLAYBOOK + f"ebpf:\n  programs: {json.dumps(PROGRAMS)}\n  directory: {programs}\n")
    bed.context.playbook = playbook
    bed.context.record.playbook = playbook

    bed.method().plan(bed.context, NAMES)

    pushed = bed.flake / "nix" / "ebpf"
    assert json.loads((pushed / "programs.json").read_text()) == PROGRAMS
    for name in PROGRAMS:
        for suffix in (".bpf.c", ".yaml"):
            assert (pushed / f"{name}{suffix}").read_bytes() == (programs / f"{name}{suffix}").read_bytes()
    # What the NixOS module gives ebpf_exporter (services.prometheus.exporters.ebpf.names), read from the push.
    assert nix_eval(bed.flake / "nix" / "lib" / "programs.nix") == PROGRAMS
    # The repository's own default list is untouched.
    assert json.loads((REPO / "nix" / "ebpf" / "programs.json").read_text()) == ["statx-override"]

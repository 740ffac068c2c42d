"""The playbook's kernel section is what the nxc deploy builds: the pushed flake carries it as nix/kernel.json with
the patches beside it, and nix/lib/kernel-description.nix (which nix/pkgs/kernel.nix builds from) reads it there.

The frontend is a loopback sshd node with the stand-in nix of tests/deploy; the pushed files are evaluated offline
with Debian's nix-instantiate.
"""

from __future__ import annotations

from pathlib import Path

import pytest

from g5kdeploy.playbook import parse_playbook
from tests.deploy.test_nxc_standins import NAMES, PLAYBOOK, Bed
from tests.nix.test_nix import nix_eval

REPO = Path(__file__).resolve().parents[2]
REV = "0123456789abcdef0123456789abcdef01234567"
SRI = "sha256-" + "A" * 43 + "="


@pytest.fixture
def bed(tmp_path):
    testbed = Bed(tmp_path)
    yield testbed
    testbed.close()


def test_the_pushed_flake_builds_the_playbooks_kernel(bed, tmp_path):
    experiment = tmp_path / "experiment"
    (experiment / "patches").mkdir(parents=True)
    patch = "--- a/fs/stat.c\n+++ b/fs/stat.c\n@@ -1 +1 @@\n-a\n+b\n"
    (experiment / "patches" / "statx.patch").write_text(patch)
    section = (
        f"kernel:\n  source: {{github: jdoe/linux, rev: {REV}, hash: '{SRI}', version: 6.13.2}}\n"
        "  patches: [patches/statx.patch]\n  config: {NET_SCHED: m}\n"
    )
    playbook = parse_playbook(PLAYBOOK + section)
    bed.context.playbook = playbook
    bed.context.record.playbook = playbook
    bed.context.record.playbook_path = str(experiment / "exp.yaml")

    bed.method().plan(bed.context, NAMES)

    pushed = bed.flake / "nix"
    description = nix_eval(
        f"let d = import {pushed}/lib/kernel-description.nix {{ }}; in"
        ' d // { patches = map (p: p.name + " " + toString p.patch) d.patches; }'
    )
    assert isinstance(description, dict)
    assert description["source"] == {
        "owner": "jdoe", "repo": "linux", "rev": REV, "hash": SRI, "version": "6.13.2",
    }  # fmt: skip
    assert description["config"] == {"NET_SCHED": "m"}
    [entry] = description["patches"]
    name, file = entry.split(" ")
    assert name == "statx" and Path(file).is_relative_to(pushed) and Path(file).read_text() == patch
    # The repository itself keeps no kernel.json: without one the kernel is nixpkgs' 6.12 branch.
    assert not (REPO / "nix" / "kernel.json").exists()

"""A bad kernel section: a clear error naming the field and the fix, exit code 2, no job submitted."""

from __future__ import annotations

import pytest

from tests.conftest import playbook_text

GOOD = playbook_text()
REV = "0123456789abcdef0123456789abcdef01234567"
SRI = "sha256-" + "A" * 43 + "="

CASES = {
    "source-without-rev": (
        f"kernel:\n  source: {{github: jdoe/linux, hash: '{SRI}', version: 6.13.2}}\n",
        "kernel.source.rev: missing: pin the source to a commit",
    ),
    "source-without-hash": (
        f"kernel:\n  source: {{github: jdoe/linux, rev: {REV}, version: 6.13.2}}\n",
        "kernel.source.hash: missing: give the SRI hash",
    ),
    "source-at-a-branch": (
        f"kernel:\n  source: {{github: jdoe/linux, rev: statx-fix, hash: '{SRI}', version: 6.13.2}}\n",
        "kernel.source.rev: 'statx-fix' is not a commit",
    ),
    "hash-not-sri": (
        f"kernel:\n  source: {{github: jdoe/linux, rev: {REV}, hash: 'sha256:abc', version: 6.13.2}}\n",
        "kernel.source.hash: 'sha256:abc' is not an SRI sha256",
    ),
    "missing-patch": (
        "kernel:\n  patches: [patches/statx.patch]\n",
        "kernel.patches[0]: patches/statx.patch is not a file next to the playbook",
    ),
    "contradicting-option": (
        "kernel:\n  config: {KPROBES: n}\n",
        "kernel.config.KPROBES: n contradicts nix/kernel-options.json",
    ),
}


@pytest.mark.parametrize("case", sorted(CASES))
def test_a_bad_kernel_section_is_refused_before_anything_is_submitted(case, g5k, sim, tmp_path):
    section, expected = CASES[case]
    book = tmp_path / "exp.yaml"
    book.write_text(GOOD + section)
    result = g5k("reserve", str(book))
    assert result.exit_code == 2, result.output
    assert expected in result.stderr
    assert "Traceback" not in result.output
    assert sim.simulator.jobs() == []


def test_a_good_kernel_section_is_submitted(g5k, sim, tmp_path):
    """The same playbooks with the fields right do reach OAR: the refusals above are the kernel section's."""
    (tmp_path / "patches").mkdir()
    (tmp_path / "patches/statx.patch").write_text("--- a/fs/stat.c\n+++ b/fs/stat.c\n")
    book = tmp_path / "exp.yaml"
    section = (
        f"kernel:\n  source: {{github: jdoe/linux, rev: {REV}, hash: '{SRI}', version: 6.13.2}}\n"
        "  patches: [patches/statx.patch]\n  config: {KPROBES: y, NET_SCHED: m}\n"
    )
    book.write_text(GOOD + section)
    result = g5k("reserve", str(book), "--json")
    assert result.exit_code == 0, result.output
    assert sim.simulator.jobs() != []

"""Your own eBPF programs: each is ``<name>.bpf.c`` + ``<name>.yaml`` and its name in ``ebpf.programs``, compiled with
clang and checked against its ebpf_exporter config before anything is reserved.

Compiles here are against this machine's BTF (``/sys/kernel/btf/vmlinux``), as on the local and Grid'5000 testbeds;
the VM testbed passes its kernel's ``vmlinux.h`` the same way (a header of our own stands in for it below). The
reserve tests run ``g5k reserve`` against the simulator (Grid'5000 testbed, nothing reaches a node).
"""

from __future__ import annotations

import os
import re
import shutil
from pathlib import Path

import pytest

from g5kdeploy import errors
from g5kdeploy.errors import ConfigError
from g5kdeploy.tools import bpf

REPO = Path(__file__).resolve().parents[2]
STATX = REPO / "nix" / "ebpf"
OWN = Path(__file__).resolve().parent / "programs"
#: Grid'5000 through the simulator; g5k-image needs no public key at preflight (the test's key is a fake).
PLAYBOOK = """version: 2
name: exp
testbed: grid5000
reservation:
  site: nancy
  roles:
    collector: {{nodes: 1, cluster: gros}}
    exporter: {{nodes: 1, cluster: gros}}
  walltime: "1:00"
  max_wait: "0:05"
deploy: {{method: nxc, flavour: g5k-image}}
ebpf:
  programs: [{programs}]
  directory: programs
"""


@pytest.fixture
def host_btf() -> None:
    missing = bpf.missing_tools()
    if missing or not bpf.KERNEL_BTF.exists():
        message = f"needs clang, bpftool, libbpf-dev and {bpf.KERNEL_BTF} (missing: {missing or 'the BTF'})"
        if os.environ.get("CI"):
            pytest.fail(f"CI is set and this test {message}")
        pytest.skip(message)


@pytest.fixture
def programs(tmp_path: Path) -> Path:
    """A playbook's own program directory: statx-override as shipped, plus openat-count."""
    directory = tmp_path / "programs"
    directory.mkdir()
    for source in [*STATX.glob("statx-override.*"), *OWN.glob("openat-count.*")]:
        shutil.copy(source, directory / source.name)
    return directory


def reserve(g5k, tmp_path: Path, names: str):
    book = tmp_path / "exp.yaml"
    book.write_text(PLAYBOOK.format(programs=names))
    # No flake.lock can be made here (no network): the programs' check, not the pinning, is under test.
    return g5k("reserve", str(book), "--allow-unlocked")


def test_a_second_program_is_its_two_files_and_its_name(host_btf, programs):
    checked = bpf.check_programs(["statx-override", "openat-count"], programs)
    assert checked.skipped is None
    assert list(checked.programs) == ["statx-override", "openat-count"]
    counts = checked.programs["openat-count"]["openat_calls_total"]
    assert (counts.key_size, counts.value_size, counts.max_entries) == (4, 8, 3)
    assert checked.programs["statx-override"]["statx_latency_seconds"].key_size == 8


def test_reserve_checks_both_programs_then_reserves(host_btf, programs, g5k, sim, tmp_path):
    result = reserve(g5k, tmp_path, "statx-override, openat-count")
    assert result.exit_code == 0, result.output
    assert "eBPF programs compiled and checked" in result.stderr
    assert "statx-override, openat-count" in result.stderr
    assert len(sim.simulator.jobs()) == 1
    assert g5k("release", "latest").exit_code == 0


def _drop_yaml(directory: Path) -> None:
    (directory / "openat-count.yaml").unlink()


def _rename_metric(directory: Path) -> None:
    config = directory / "openat-count.yaml"
    config.write_text(config.read_text().replace("name: openat_calls_total", "name: openat_total"))


def _widen_label(directory: Path) -> None:
    config = directory / "openat-count.yaml"
    config.write_text(config.read_text().replace("size: 4", "size: 8"))


def _break_source(directory: Path) -> None:
    source = directory / "openat-count.bpf.c"
    source.write_text(source.read_text().replace("__u64 *count;", "__u64 *count"))


def _label_without_size(directory: Path) -> None:
    config = directory / "openat-count.yaml"
    config.write_text(config.read_text().replace("          size: 4 # __u32 key = enum openat_mode\n", ""))


BAD = {
    "missing-yaml": (_drop_yaml, r"ebpf\.programs: openat-count has no openat-count\.yaml in .*programs"),
    "map-the-object-lacks": (
        _rename_metric,
        r"openat-count\.yaml: metrics\.counters\[0\]\.name: 'openat_total' names no map of openat-count\.bpf\.o "
        r"\(its maps: openat_calls_total\)",
    ),
    "label-size-against-key": (
        _widen_label,
        r"openat-count\.yaml: metrics\.counters\[0\]\.labels: map 'openat_calls_total' has 4-byte keys, "
        r"but the labels decode 8 \(mode 8\)",
    ),
    # clang's own line, with the file name and the line and column it points at.
    "compile-error": (_break_source, r"openat-count\.bpf\.c:\d+:\d+: error: expected ';'"),
    "label-without-size": (_label_without_size, r"openat-count: .*openat-count\.yaml: .*\.size: label 'mode' needs"),
}


@pytest.mark.parametrize("case", sorted(BAD))
def test_a_bad_program_is_refused_before_anything_is_reserved(case, host_btf, programs, g5k, sim, tmp_path):
    spoil, expected = BAD[case]
    spoil(programs)
    result = reserve(g5k, tmp_path, "statx-override, openat-count")
    assert result.exit_code == 2, result.output
    assert re.search(expected, " ".join(result.stderr.split())), result.stderr
    assert "Traceback" not in result.output
    assert sim.simulator.jobs() == []


def test_a_compile_error_shows_clang_errors_not_its_macro_notes(host_btf, programs):
    source = programs / "openat-count.bpf.c"
    # A helper header left out: clang's error comes from inside libbpf's macros, with a dozen notes after it.
    source.write_text(source.read_text().replace("#include <bpf/bpf_core_read.h>\n", ""))
    with pytest.raises(ConfigError) as caught:
        bpf.check_programs(["openat-count"], programs)
    message = str(caught.value)
    assert f"clang could not compile {source}" in message
    assert re.search(rf"{re.escape(str(source))}:\d+:\d+: error: .*BPF_CORE_READ", message)
    assert "note: expanded from macro" not in message
    assert re.search(r"^\d+ errors? generated\.$", message, re.M)


def test_the_kernel_header_given_is_the_one_compiled_against(host_btf, programs, tmp_path):
    """The VM testbed passes its kernel's vmlinux.h: a header without the kernel's types fails the compile."""
    header = tmp_path / "vm-kernel" / "vmlinux.h"
    header.parent.mkdir()
    header.write_text("/* a kernel header without BTF types */\n")
    with pytest.raises(ConfigError, match=r"unknown type name '__u32'"):
        bpf.check_programs(["openat-count"], programs, vmlinux_h=header)


def test_without_clang_the_files_and_configs_are_still_checked(programs, monkeypatch, tmp_path):
    monkeypatch.setenv("PATH", str(tmp_path / "empty"))
    checked = bpf.check_programs(["statx-override", "openat-count"], programs)
    assert checked.programs == {}
    assert checked.skipped is not None and "clang, bpftool not installed" in checked.skipped
    _label_without_size(programs)
    with pytest.raises(ConfigError, match="label 'mode' needs a size"):
        bpf.check_programs(["openat-count"], programs)
    # The VM testbed cannot deploy without them: there it is an error.
    with pytest.raises(errors.TestbedError, match="clang, bpftool not installed"):
        bpf.check_programs(["statx-override"], programs, vmlinux_h=tmp_path / "vmlinux.h", required=True)


def test_the_check_compiles_with_the_nix_packages_flags():
    """What passes the check before reserving must build on Grid'5000: the same clang flags as nix/ebpf/default.nix
    (less those only nixpkgs' wrapper needs)."""
    nix = (REPO / "nix" / "ebpf" / "default.nix").read_text()
    found = re.search(r"cflags = \[(.*?)\];", nix, re.S)
    assert found, "default.nix has no cflags list"
    nix_flags = [flag.replace("${targetArch}", "x86") for flag in re.findall(r'"((?:[^"\\]|\\.)*)"', found[1])]
    for flag in bpf.BPF_CFLAGS:
        assert flag in nix_flags, f"{flag} is not in nix/ebpf/default.nix's cflags"
    assert "-Werror" in bpf.BPF_CFLAGS

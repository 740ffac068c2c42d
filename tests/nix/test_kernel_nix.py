"""The playbook's kernel on the Nix side, evaluated with Debian's Nix 2.8 and stubs where nixpkgs would be: the
agent writes nix/kernel.json (and the patches beside it) from the playbook, nix/lib reads it, and
nix/pkgs/kernel.nix hands buildLinux (a source) or a nixpkgs branch's override what the talk gives them."""

from __future__ import annotations

import json
from pathlib import Path

from g5kdeploy.playbook import Kernel, KernelSource, parse_playbook
from g5kdeploy.tools.kernel import stage_nix_kernel
from tests.nix.test_nix import REPO, nix_eval

REV = "0123456789abcdef0123456789abcdef01234567"
HASH = "sha256-" + "A" * 43 + "="
# lib.mkForce / mkOverride as records of what they were given; lib.kernel's values as tags.
STUBS = """
  lib = {
    mkForce = v: { force = v; };
    mkOverride = priority: v: { inherit priority v; };
    kernel = { yes = "YES"; no = "NO"; module = "MOD"; freeform = v: "FREE:" + v; };
  };
  fetchFromGitHub = attrs: attrs // { fetcher = "fetchFromGitHub"; };
"""


def staged(tmp_path: Path, kernel: Kernel | None, patches: dict[str, str] | None = None) -> Path:
    """The nix directory of a pushed flake, as the deploy stages it for a playbook in tmp_path/exp."""
    experiment = tmp_path / "exp"
    experiment.mkdir(exist_ok=True)
    for name, text in (patches or {}).items():
        (experiment / name).parent.mkdir(parents=True, exist_ok=True)
        (experiment / name).write_text(text)
    nix_dir = tmp_path / "flake" / "nix"
    nix_dir.mkdir(parents=True)
    stage_nix_kernel(kernel, experiment / "exp.yaml", nix_dir)
    return nix_dir


def describe(nix_dir: Path) -> object:
    return nix_eval(
        f"let d = import ./nix/lib/kernel-description.nix {{ file = {nix_dir}/kernel.json; }}; in"
        " d // { patches = map (p: { inherit (p) name; patch = toString p.patch; }) d.patches; }"
    )


def kernel_args(nix_dir: Path) -> object:
    return nix_eval(
        f"let {STUBS} d = import ./nix/lib/kernel-description.nix {{ file = {nix_dir}/kernel.json; }};"
        " k = import ./nix/lib/kernel.nix { inherit lib fetchFromGitHub; description = d; }; in"
        " k // { args = k.args // { kernelPatches = map (p: p.name) k.args.kernelPatches; }; }"
    )


SOURCE = Kernel(
    source=KernelSource(github="jdoe/linux", rev=REV, hash=HASH, version="6.13.2", modDirVersion="6.13.2-g5k"),
    patches=["patches/fix-statx.patch", "other/fix-statx.patch"],
    config={"NET_SCHED": "y", "HZ": "1000", "BPF_SYSCALL": "y", "LOCALVERSION": "-g5k"},
)


def test_without_a_kernel_json_the_kernel_is_the_6_12_branch_as_before(tmp_path):
    assert nix_eval(f"import ./nix/lib/kernel-description.nix {{ file = {tmp_path}/absent.json; }}") == {
        "branch": "6.12",
        "source": None,
        "patches": [],
        "config": {},
    }
    # A playbook without a kernel section writes the same thing.
    assert describe(staged(tmp_path, None)) == {"branch": "6.12", "source": None, "patches": [], "config": {}}


def test_the_kernel_json_the_agent_writes_is_what_nix_reads(tmp_path):
    patches = {"patches/fix-statx.patch": "--- a/x\n+++ b/x\n", "other/fix-statx.patch": "--- a/y\n+++ b/y\n"}
    nix_dir = staged(tmp_path, SOURCE, patches)
    description = describe(nix_dir)
    assert isinstance(description, dict)
    assert description["source"] == {
        "owner": "jdoe", "repo": "linux", "rev": REV, "hash": HASH, "version": "6.13.2", "modDirVersion": "6.13.2-g5k",
    }  # fmt: skip
    assert description["config"] == SOURCE.config
    # In the playbook's order, two files of one name kept apart, each the playbook's file.
    names = [patch["name"] for patch in description["patches"]]
    assert names == ["fix-statx", "fix-statx"]
    files = [Path(patch["patch"]) for patch in description["patches"]]
    assert len(set(files)) == 2
    assert [file.read_text() for file in files] == list(patches.values())
    assert all(file.is_relative_to(nix_dir) for file in files)


def test_a_stale_patch_in_the_copied_tree_is_not_pushed(tmp_path):
    nix_dir = tmp_path / "flake" / "nix"
    (nix_dir / "kernel-patches").mkdir(parents=True)
    (nix_dir / "kernel-patches" / "000-old.patch").write_text("old")
    (tmp_path / "exp").mkdir()
    stage_nix_kernel(None, tmp_path / "exp" / "exp.yaml", nix_dir)
    assert not (nix_dir / "kernel-patches").exists()


def test_the_experiments_options_are_forced_and_win_over_the_playbooks(tmp_path):
    required = json.loads((REPO / "nix/kernel-options.json").read_text())
    result = kernel_args(staged(tmp_path, SOURCE, dict.fromkeys(SOURCE.patches, "")))
    assert isinstance(result, dict)
    config = result["args"]["structuredExtraConfig"]
    tags = {"y": "YES", "m": "MOD", "n": "NO"}
    for name, value in required.items():
        assert config[name] == {"force": tags.get(value, "FREE:" + value)}, name
    # The playbook's own: above nixpkgs' common config (100), below mkForce (50).
    assert config["NET_SCHED"] == {"priority": 60, "v": "YES"}
    assert config["HZ"] == {"priority": 60, "v": "FREE:1000"}
    assert config["LOCALVERSION"] == {"priority": 60, "v": "FREE:-g5k"}
    assert set(config) == set(required) | {"NET_SCHED", "HZ", "LOCALVERSION"}


def test_a_source_kernel_is_fetched_from_github_pinned(tmp_path):
    result = kernel_args(staged(tmp_path, SOURCE, dict.fromkeys(SOURCE.patches, "")))
    assert isinstance(result, dict)
    assert result["fromSource"] is True
    args = result["args"]
    assert args["src"] == {"owner": "jdoe", "repo": "linux", "rev": REV, "hash": HASH, "fetcher": "fetchFromGitHub"}
    assert (args["version"], args["modDirVersion"], args["extraMeta"]) == ("6.13.2", "6.13.2-g5k", {"branch": "6.13"})
    assert args["kernelPatches"] == ["fix-statx", "fix-statx"]


def test_a_branch_kernel_names_its_nixpkgs_attribute(tmp_path):
    result = kernel_args(staged(tmp_path, Kernel(branch="6.6")))
    assert isinstance(result, dict)
    assert (result["fromSource"], result["attribute"]) == (False, "linux_6_6")
    assert "src" not in result["args"] and "version" not in result["args"]


PACKAGE = """
let {stubs}
  pkg = import ./nix/pkgs/kernel.nix ({{
    inherit lib fetchFromGitHub;
    buildLinux = args: {{ built = args; }};
    linuxKernel.kernels.linux_6_6 = {{
      kernelPatches = [ {{ name = "bridge_stp_helper"; }} ];
      override = a: {{ overridden = a; }};
    }};
    description = import ./nix/lib/kernel-description.nix {{ file = {file}; }};
  }} // {extra});
  names = ps: map (p: p.name) ps;
in
  if pkg ? built then {{
    inherit (pkg.built) src version modDirVersion;
    kernelPatches = names pkg.built.kernelPatches;
    options = builtins.attrNames pkg.built.structuredExtraConfig;
    leaked = builtins.filter (n: pkg.built ? ${{n}}) [ "description" "linuxKernel" ];
  }} else {{
    kernelPatches = names pkg.overridden.kernelPatches;
    options = builtins.attrNames pkg.overridden.structuredExtraConfig;
  }}
"""


def test_the_package_builds_a_source_with_buildlinux_and_keeps_argsoverride(tmp_path):
    nix_dir = staged(tmp_path, SOURCE, dict.fromkeys(SOURCE.patches, ""))
    built = nix_eval(PACKAGE.format(stubs=STUBS, file=f"{nix_dir}/kernel.json", extra="{ }"))
    assert isinstance(built, dict)
    assert built["src"]["rev"] == REV and built["version"] == "6.13.2" and built["modDirVersion"] == "6.13.2-g5k"
    assert built["kernelPatches"] == ["fix-statx", "fix-statx"]
    assert "BPF_KPROBE_OVERRIDE" in built["options"] and "NET_SCHED" in built["options"]
    assert built["leaked"] == []
    # `.override { argsOverride = ...; }` still has the last word, as on any nixpkgs kernel.
    overridden = nix_eval(
        PACKAGE.format(stubs=STUBS, file=f"{nix_dir}/kernel.json", extra='{ argsOverride.version = "6.13.3"; }')
    )
    assert isinstance(overridden, dict) and overridden["version"] == "6.13.3"


def test_the_package_adds_the_patches_to_a_branchs_own(tmp_path):
    nix_dir = staged(tmp_path, Kernel(branch="6.6", patches=["a.patch"]), {"a.patch": ""})
    result = nix_eval(PACKAGE.format(stubs=STUBS, file=f"{nix_dir}/kernel.json", extra="{ }"))
    assert isinstance(result, dict)
    assert result["kernelPatches"] == ["bridge_stp_helper", "a"]
    assert "BPF_KPROBE_OVERRIDE" in result["options"]


def test_the_module_builds_the_branch_kernel_json_names(tmp_path):
    """g5k.kernel.version defaults to kernel.json's branch: the module and .#kernel build the same kernel."""
    module = nix_eval(
        "(import ./nix/modules/kernel.nix { config = { }; pkgs = { };"
        " lib = { mkForce = x: x; mkOption = o: o; types.str = null; }; }).options.g5k.kernel.version.default"
    )
    assert module == nix_eval("(import ./nix/lib/kernel-description.nix { }).branch")


def test_a_playbooks_kernel_section_round_trips(tmp_path):
    text = (
        "version: 2\nname: exp\ntestbed: grid5000\nreservation:\n  roles: {exporter: {nodes: 1}}\n"
        f"kernel:\n  source: {{github: jdoe/linux, rev: {REV}, hash: '{HASH}', version: 6.13.2}}\n"
        "  config: {NET_SCHED: m}\n"
    )
    kernel = parse_playbook(text).kernel
    description = describe(staged(tmp_path, kernel))
    assert isinstance(description, dict)
    assert description["source"]["version"] == "6.13.2" and "modDirVersion" not in description["source"]
    assert description["config"] == {"NET_SCHED": "m"}

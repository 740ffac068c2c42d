"""The Nix side, checked offline with Debian's Nix 2.8: every .nix file parses, and the pure parts (kernel
options, program list, composition roles, flake outputs and inputs, test script, the agent's package, the
exporter unit) evaluate to what the rest relies on, with stubs where nixpkgs would be; the eBPF build script
runs with the host's clang behind a stand-in for nixpkgs' clang wrapper. nixpkgs is not needed: nothing here
imports it. Skipped without nix-instantiate, except on CI (CI set)."""

from __future__ import annotations

import json
import os
import re
import shutil
import subprocess
import tomllib
from pathlib import Path

import pytest
import yaml
from packaging.requirements import Requirement

from g5kdeploy.deploy.nxc import FLAKE_PARTS
from g5kdeploy.playbook import Deploy

REPO = Path(__file__).resolve().parents[2]
NIX = shutil.which("nix-instantiate")
SKIP_DIRS = {".git", ".venv", "results", "build", "node_modules"}

if NIX is None and not os.environ.get("CI"):
    pytest.skip("nix-instantiate is not installed (apt-get install nix-bin)", allow_module_level=True)


def nix(*args: str) -> str:
    assert NIX is not None, "nix-instantiate is required on CI (Debian package nix-bin)"
    # dummy:// needs no daemon or store (so works without root); no build users either.
    env = {**os.environ, "NIX_CONFIG": "build-users-group =\nexperimental-features ="}
    proc = subprocess.run(
        [NIX, "--store", "dummy://", *args], check=False, cwd=REPO, env=env, capture_output=True, text=True, timeout=60
    )
    assert proc.returncode == 0, f"nix-instantiate {' '.join(args)}:\n{proc.stderr}"
    return proc.stdout


def nix_eval(expr: str) -> object:
    return json.loads(nix("--eval", "--strict", "--json", "-E", expr))


def nix_files() -> list[Path]:
    return sorted(p for p in REPO.rglob("*.nix") if not SKIP_DIRS.intersection(p.relative_to(REPO).parts))


def test_the_nix_side_is_there() -> None:
    names = {p.relative_to(REPO).as_posix() for p in nix_files()}
    expected = {"flake.nix", "nxc/composition.nix", "nix/experiment.nix", "nix/tests/statx.nix"}
    expected |= {f"nix/modules/{m}.nix" for m in ("kernel", "ebpf", "benchmark", "collector")}
    assert expected <= names


@pytest.mark.parametrize("path", nix_files(), ids=lambda p: p.relative_to(REPO).as_posix())
def test_parses(path: Path) -> None:
    nix("--parse", str(path))


def test_kernel_options_evaluate_to_the_json() -> None:
    expected = json.loads((REPO / "nix/kernel-options.json").read_text())
    assert nix_eval("import ./nix/lib/kernel-options.nix { }") == expected
    # Without FUNCTION_TRACER (hence KPROBES_ON_FTRACE) the override is silently dropped.
    for option in ("FUNCTION_ERROR_INJECTION", "BPF_KPROBE_OVERRIDE", "FUNCTION_TRACER", "KPROBES_ON_FTRACE"):
        assert expected.get(option) == "y", option
    stub = '{ yes = "Y"; no = "N"; module = "M"; freeform = v: "F" + v; }'
    mapped = nix_eval(f"import ./nix/lib/kernel-options.nix {{ kernel = {stub}; }}")
    assert mapped == {k: {"y": "Y", "m": "M", "n": "N"}.get(v, "F" + v) for k, v in expected.items()}


def test_programs() -> None:
    assert nix_eval("import ./nix/lib/programs.nix") == ["statx-override"]


def test_composition_roles_are_the_playbook_roles() -> None:
    playbook = yaml.safe_load((REPO / "playbooks/statx.yaml").read_text())
    roles = nix_eval("builtins.attrNames (import ./nxc/composition.nix { }).roles")
    assert sorted(roles) == sorted(playbook["reservation"]["roles"])
    assert sorted(roles) == nix_eval("builtins.attrNames (import ./nix/experiment.nix { }).roles")


def test_nxc_json_names_the_composition_the_agent_deploys() -> None:
    """nxc reads nxc.json from the directory it runs in (the flake's): a plain `nxc build` by hand and the
    agent must build the same composition."""
    nxc_json = json.loads((REPO / "nxc.json").read_text())
    assert nxc_json["composition"] == Deploy(method="nxc").composition
    assert (REPO / nxc_json["composition"]).is_file()
    assert nxc_json["default_flavour"] == Deploy(method="nxc").flavour
    assert "nxc.json" in FLAKE_PARTS


def test_test_script_is_the_shared_file_with_the_nix_constants() -> None:
    script = nix_eval("(import ./nxc/composition.nix { }).testScript")
    assert script == nix_eval("(import ./nix/tests/statx.nix).testScript")
    shared = (REPO / "nix/tests/statx-test-script.py").read_text()
    prelude, _, rest = script.partition("# ruff: noqa: F821\n")
    assert "# ruff: noqa: F821\n" + rest == shared
    constants: dict[str, object] = {}
    exec(compile(prelude, "prelude", "exec"), constants)
    assert constants["KERNEL_OPTIONS"] == json.loads((REPO / "nix/kernel-options.json").read_text())
    assert constants["PROGRAMS"] == ["statx-override"]
    assert constants["TARGET"] == "/tmp/g5k-statx-target"
    compile(script, "testScript", "exec")


def test_test_script_expects_what_the_ebpf_program_fakes() -> None:
    source = (REPO / "nix/ebpf/statx-override.bpf.c").read_text()
    script = (REPO / "nix/tests/statx-test-script.py").read_text()
    for c_name, py_name in (("FAKE_SIZE", "OVERRIDE_SIZE"), ("FAKE_INO", "OVERRIDE_INO")):
        c_value = re.search(rf"#define {c_name} (\d+)", source)
        py_value = re.search(rf"^{py_name} = (\d+)", script, re.M)
        assert c_value and py_value and c_value[1] == py_value[1], c_name


def test_flake_outputs() -> None:
    stubs = (
        "let flake = (import ./flake.nix).outputs { self = { }; nixpkgs = { legacyPackages.x86_64-linux = { }; };"
        ' nxc.lib.compose = _: { "composition::g5k-nfs-store" = null; }; }; in '
    )
    outputs = nix_eval(
        stubs + "{ packages = builtins.attrNames flake.packages.x86_64-linux;"
        " modules = builtins.mapAttrs (_: builtins.pathExists) flake.nixosModules;"
        " checks = builtins.attrNames flake.checks.x86_64-linux; }"
    )
    assert set(outputs["packages"]) >= {"statx-bench", "statx-override", "g5kdeploy", "composition::g5k-nfs-store"}
    modules = ("kernel", "ebpf", "benchmark", "collector", "g5k-nightly")
    assert outputs["modules"] == dict.fromkeys(modules, True)
    assert outputs["checks"] == ["statx"]


#: The python3Packages attributes of nixpkgs 25.05 that nix/pkgs/g5kdeploy.nix may take as arguments, each
#: looked up in nixpkgs' source (pkgs/development/python-modules/<name>). nixpkgs has no execo,
#: python-grid5000 or ruptures: those are packaged inline.
NIXPKGS_PYTHON_ATTRS = {
    *("setuptools", "setuptools-scm", "wheel", "cython", "numpy", "scipy", "ipython", "requests", "pyyaml"),
    *("fabric", "tenacity", "structlog", "typer", "rich", "pydantic", "flask", "werkzeug", "matplotlib"),
    *("holidays", "psutil"),
}
PACKAGE_BUILDERS = {"lib", "buildPythonApplication", "buildPythonPackage", "fetchPypi"}
# Every nixpkgs argument is a stub { pname = <its name>; }; the builders return their attribute sets.
PACKAGE_STUB = """
let
  package = import ./nix/pkgs/g5kdeploy.nix;
  args = builtins.functionArgs package;
  stubs = builtins.mapAttrs (name: _: { pname = name; }) args;
  drv = package (stubs // {
    lib = { fileset = { toSource = _: "source"; unions = xs: xs; }; licenses.mit = "mit"; };
    buildPythonApplication = attrs: attrs;
    buildPythonPackage = attrs: attrs;
    fetchPypi = attrs: attrs;
  });
  describe = d: {
    inherit (d) pname;
    version = d.version or null;
    dependencies = map (x: x.pname) (d.dependencies or [ ]);
  };
in { args = builtins.attrNames args; dependencies = map describe drv.dependencies; }
"""


def normalised(name: str) -> str:
    return re.sub(r"[-_.]+", "-", name).lower()


def test_the_agents_nix_package_has_every_dependency_of_pyproject_from_nixpkgs_or_inline() -> None:
    """A dependency missing here installs fine and fails at the first import on the frontend; an argument that
    nixpkgs lacks fails the evaluation of .#g5kdeploy and of the nightly module."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = {Requirement(dep) for dep in pyproject["project"]["dependencies"]}
    package = nix_eval(PACKAGE_STUB)
    assert isinstance(package, dict)
    unknown = set(package["args"]) - PACKAGE_BUILDERS - NIXPKGS_PYTHON_ATTRS
    assert not unknown, f"not python3Packages attributes of nixpkgs: {sorted(unknown)} (package them inline)"
    dependencies = {normalised(d["pname"]): d for d in package["dependencies"]}
    assert set(dependencies) == {normalised(req.name) for req in wanted}
    for req in wanted:
        version = dependencies[normalised(req.name)]["version"]
        # The inline ones pin a version; it must be one pyproject accepts.
        assert version is None or req.specifier.contains(version), (req, version)
    assert dependencies["ruptures"]["version"] is not None, "ruptures is not in nixpkgs: it must be inline"
    assert set(dependencies["ruptures"]["dependencies"]) == {"numpy", "scipy"}


def exporter_unit() -> dict[str, object]:
    unit = nix_eval(
        "(import ./nix/modules/ebpf.nix {"
        ' lib = { mkForce = x: x; concatStringsSep = builtins.concatStringsSep; getExe = _: "ebpf_exporter"; };'
        ' config = { services.prometheus.exporters.ebpf = { names = [ ]; listenAddress = "::"; port = 9435; };'
        '   boot.kernelPackages.kernel = null; g5k.statx.targetPath = "/tmp/t"; };'
        ' pkgs = { callPackage = _: _: "/payload"; prometheus-ebpf-exporter = null; bpftools = null; };'
        " }).systemd.services.prometheus-ebpf-exporter.serviceConfig"
    )
    assert isinstance(unit, dict)
    return unit


#: What systemd takes out of a unit's capability bounding set with each protection (systemd.exec(5)) that the
#: nixpkgs exporters module turns on by default (mkDefault true) unless the unit turns it off.
DROPPED_BY = {
    "ProtectKernelLogs": {"CAP_SYSLOG"},
    "ProtectKernelModules": {"CAP_SYS_MODULE"},
    "ProtectClock": {"CAP_SYS_TIME", "CAP_WAKE_ALARM"},
}


def test_the_exporter_unit_asks_only_for_capabilities_systemd_leaves_it() -> None:
    unit = exporter_unit()
    caps = unit["CapabilityBoundingSet"]
    assert isinstance(caps, list) and unit["AmbientCapabilities"] == caps
    dropped = set().union(*(lost for option, lost in DROPPED_BY.items() if unit.get(option, True) is not False))
    assert not dropped & set(caps), f"systemd drops {sorted(dropped & set(caps))} from this unit"
    # ebpf_exporter reads /proc/kallsyms, which needs CAP_SYSLOG, for these decoders only.
    programs = json.loads((REPO / "nix/ebpf/programs.json").read_text())
    configs = [yaml.safe_load((REPO / f"nix/ebpf/{name}.yaml").read_text()) for name in programs]
    decoders = {
        decoder["name"]
        for config in configs
        for kind in config["metrics"].values()
        for metric in kind
        for label in metric["labels"]
        for decoder in label["decoders"]
    }
    assert "CAP_SYSLOG" in caps or not decoders & {"ksym", "kstack"}


def test_nxc_follows_our_nixpkgs() -> None:
    """One nixpkgs in the lock: nxc's own input would be fetched and evaluated beside ours."""
    inputs = nix_eval("(import ./flake.nix).inputs")
    assert isinstance(inputs, dict)
    assert inputs["nxc"]["inputs"]["nixpkgs"]["follows"] == "nixpkgs"


# nixpkgs' clang wrapper puts these in every compile (cc-wrapper: nix-support/cc-cflags, with gccForLibs).
WRAPPER_FLAGS = "--gcc-toolchain=/usr -B/usr/lib -L/usr/lib"
EBPF_STUB = """
let
  escapeShellArg = s: "'" + builtins.replaceStrings [ "'" ] [ "'\\\\''" ] s + "'";
  drv = import ./nix/ebpf {
    lib = {
      inherit escapeShellArg;
      escapeShellArgs = xs: builtins.concatStringsSep " " (map escapeShellArg xs);
      concatMap = f: xs: builtins.concatLists (map f xs);
      getDev = x: x;
      assertMsg = cond: msg: cond || builtins.throw msg;
      fileset = { toSource = _: "source"; unions = xs: xs; };
      licenses.gpl2Only = null;
      platforms.linux = null;
    };
    stdenv = { hostPlatform = { isx86_64 = true; isAarch64 = false; }; mkDerivation = attrs: attrs; };
    clang = null; llvm = null; bpftools = null; libbpf = "/usr"; kernel.dev = "@KERNEL_DEV@";
  };
in drv.buildPhase
"""


def test_the_ebpf_programs_compile_under_a_standin_for_nixpkgs_clang_wrapper(tmp_path: Path) -> None:
    """The wrapper's flags mean nothing for -target bpf; clang says so, and -Werror must not make that fatal."""
    clang = shutil.which("clang")
    btf = Path("/sys/kernel/btf/vmlinux")
    if not (clang and shutil.which("bpftool") and shutil.which("llvm-strip") and btf.exists()):
        if os.environ.get("CI"):
            pytest.fail("clang, bpftool, llvm-strip and /sys/kernel/btf/vmlinux are required on CI")
        pytest.skip("clang, bpftool, llvm-strip or the kernel's BTF is missing")
    (tmp_path / "kernel").mkdir()
    shutil.copy(btf, tmp_path / "kernel/vmlinux")
    build_phase = nix_eval(EBPF_STUB.replace("@KERNEL_DEV@", str(tmp_path / "kernel")))
    assert isinstance(build_phase, str)
    wrapper = tmp_path / "bin/clang"
    wrapper.parent.mkdir()
    wrapper.write_text(f'#!/bin/sh\nexec {clang} {WRAPPER_FLAGS} "$@"\n')
    wrapper.chmod(0o755)
    build = tmp_path / "build"
    shutil.copytree(REPO / "nix/ebpf", build)
    proc = subprocess.run(
        ["bash", "-c", "set -euo pipefail\nrunHook() { :; }\n" + build_phase],
        check=False,
        cwd=build,
        env={**os.environ, "PATH": f"{wrapper.parent}:{os.environ['PATH']}"},
        capture_output=True,
        text=True,
        timeout=120,
    )
    assert proc.returncode == 0, proc.stderr[-2000:]
    programs = json.loads((REPO / "nix/ebpf/programs.json").read_text())
    assert all((build / f"{name}.bpf.o").stat().st_size > 0 for name in programs)


def test_dashboard_queries_the_programs_metrics() -> None:
    config = yaml.safe_load((REPO / "nix/ebpf/statx-override.yaml").read_text())
    maps = {m["name"] for kind in config["metrics"].values() for m in kind}
    dashboard = json.loads((REPO / "nix/grafana/statx.json").read_text())
    exprs = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    used = set(re.findall(r"ebpf_exporter_(\w+?)(?:_bucket)?\b", exprs))
    assert used and used <= maps, (used, maps)

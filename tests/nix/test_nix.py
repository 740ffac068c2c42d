"""The Nix side, checked offline with Debian's Nix 2.8: every .nix file parses, and the pure parts (kernel
options, program list, composition roles, flake outputs, test script) evaluate to what the rest relies on.
nixpkgs is not needed: nothing here imports it. Skipped without nix-instantiate, except on CI (CI set)."""

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


def test_the_agents_nix_package_has_every_dependency_of_pyproject() -> None:
    """A dependency missing here installs fine and fails at the first import on the frontend."""
    pyproject = tomllib.loads((REPO / "pyproject.toml").read_text())
    wanted = {re.split(r"[<>=!~ ;\[]", dep)[0].lower() for dep in pyproject["project"]["dependencies"]}
    package = (REPO / "nix/pkgs/g5kdeploy.nix").read_text()
    listed = re.search(r"\n  dependencies = \[([^\]]*)\]", package)
    assert listed, "nix/pkgs/g5kdeploy.nix has no dependencies list"
    assert {name.lower() for name in listed[1].split()} == wanted


def test_dashboard_queries_the_programs_metrics() -> None:
    config = yaml.safe_load((REPO / "nix/ebpf/statx-override.yaml").read_text())
    maps = {m["name"] for kind in config["metrics"].values() for m in kind}
    dashboard = json.loads((REPO / "nix/grafana/statx.json").read_text())
    exprs = " ".join(t["expr"] for panel in dashboard["panels"] for t in panel["targets"])
    used = set(re.findall(r"ebpf_exporter_(\w+?)(?:_bucket)?\b", exprs))
    assert used and used <= maps, (used, maps)

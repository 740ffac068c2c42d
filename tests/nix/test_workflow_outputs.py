"""The flake's outputs for the talk's workflow, evaluated by Debian's nix-instantiate with stubs for nixpkgs: the
dev shell's toolchain and the VM test's interactive driver with the SSH backdoor knob on (the check keeps it off)."""

from __future__ import annotations

from tests.nix.test_nix import nix_eval

# Just enough of nixpkgs: each function hands back what it was given, so the test sees how the flake calls it.
STUBS = """
let
  pkgs = {
    callPackage = path: _: baseNameOf path;
    python3Packages.callPackage = path: _: baseNameOf path;
    mkShell = args: args;
    llvmPackages = { clang-unwrapped = "clang-unwrapped"; libllvm = "libllvm"; };
    bpftools = "bpftools";
    libbpf = "libbpf";
    testers.runNixOSTest = test: { inherit test; driverInteractive = { interactive = test; }; };
  };
  flake = (import ./flake.nix).outputs {
    self = { };
    nixpkgs.legacyPackages.x86_64-linux = pkgs;
    nxc.lib.compose = _: { };
  };
in
"""


def test_the_dev_shell_has_the_toolchain_the_bench_inputs_and_the_agent() -> None:
    shell = nix_eval(STUBS + "flake.devShells.x86_64-linux.default")
    assert shell["inputsFrom"] == ["statx-bench.nix"]
    assert shell["packages"] == ["clang-unwrapped", "libllvm", "bpftools", "libbpf", "g5kdeploy.nix"]


def test_the_interactive_driver_has_the_ssh_backdoor_and_the_check_does_not() -> None:
    outputs = nix_eval(
        STUBS + "{ interactive = flake.packages.x86_64-linux.statx-interactive.interactive;"
        " check = flake.checks.x86_64-linux.statx.test; }"
    )
    assert outputs["interactive"]["sshBackdoor"] == {"enable": True}
    [imported] = outputs["interactive"]["imports"]
    assert imported.endswith("-statx.nix")
    assert isinstance(outputs["check"], str) and outputs["check"].endswith("statx.nix")

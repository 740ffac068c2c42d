"""``g5k vmtest``: the NixOS VM test's command line, and a clear refusal where Nix cannot run it.

Building the VM test needs Nix with network access and KVM, which this machine lacks: the command lines are
checked, and a Nix found too old is a stand-in script printing an old version (named so below).
"""

from __future__ import annotations

import os
import stat

from typer.testing import CliRunner

from g5kdeploy.cli import app


def g5k(*args: str, path: str | None = None):
    env = {"PATH": path} if path is not None else None
    return CliRunner().invoke(app, list(args), env=env)


def test_the_interactive_driver_is_built_with_the_backdoor_and_says_how_to_reach_each_machine():
    shown = g5k("vmtest", "--interactive", "--dry-run")
    assert shown.exit_code == 0, shown.output
    lines = shown.stdout.splitlines()
    assert lines[0].endswith("nix --extra-experimental-features nix-command flakes build -L --print-out-paths "
                             ".#statx-interactive")  # fmt: skip
    assert lines[1:] == ["collector: ssh -o User=root vsock/3", "exporter: ssh -o User=root vsock/4"]
    plain = g5k("vmtest", "--dry-run")
    assert plain.stdout.strip().endswith("build -L --print-out-paths .#checks.x86_64-linux.statx")


def test_without_nix_it_says_what_to_install(tmp_path):
    result = g5k("vmtest", path=str(tmp_path))
    assert result.exit_code == 2
    assert "there is no `nix` on PATH" in result.output and "install Nix 2.4 or later" in result.output
    assert "Traceback" not in result.output


def test_a_nix_too_old_for_flakes_is_named_with_its_version_standin_nix(tmp_path):
    nix = tmp_path / "nix"
    nix.write_text("#!/bin/sh\necho 'nix (Nix) 2.3.16'\n")
    nix.chmod(nix.stat().st_mode | stat.S_IXUSR)
    result = g5k("vmtest", path=f"{tmp_path}:{os.environ['PATH']}")
    assert result.exit_code == 2
    assert "needs Nix 2.4 or later (flakes); this one is 2.3.16" in result.output

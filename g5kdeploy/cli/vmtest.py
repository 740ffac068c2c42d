"""``g5k vmtest [--interactive]``: the flake's NixOS VM test, or its interactive driver with the SSH backdoor."""

from __future__ import annotations

import os
import sys
import tempfile
from pathlib import Path
from typing import Annotated

import typer

from g5kdeploy.cli.common import handle_errors, settings
from g5kdeploy.errors import G5kError
from g5kdeploy.process import stream
from g5kdeploy.tools.nix import FLAKE_ROOT, VMTEST_TIMEOUT, require_nix, vmtest_access, vmtest_argv


def register(app: typer.Typer) -> None:
    app.command("vmtest")(vmtest_command)


@handle_errors
def vmtest_command(
    ctx: typer.Context,
    interactive: Annotated[
        bool, typer.Option("--interactive", help="Build the driver with the SSH backdoor and start it.")
    ] = False,
    dry_run: Annotated[
        bool, typer.Option("--dry-run", help="Print the nix command and the access lines only.")
    ] = False,
) -> None:
    """Build and run the NixOS VM test (checks.x86_64-linux.statx); needs Nix 2.4+ with network access and KVM."""
    state = settings(ctx)
    argv = vmtest_argv(interactive=interactive)
    if dry_run:
        state.out.print(f"cd {FLAKE_ROOT} && {' '.join(argv)}", highlight=False, markup=False)
        for line in vmtest_access() if interactive else []:
            state.out.print(line, highlight=False, markup=False)
        return
    require_nix()
    lines: list[str] = []

    def show(line: str) -> None:
        lines.append(line)
        state.err.print(line, highlight=False, markup=False)

    with tempfile.TemporaryDirectory(prefix="g5k-vmtest-") as scratch:
        stream(argv, timeout=VMTEST_TIMEOUT, what="build the NixOS VM test", log_path=Path(scratch) / "nix.log",
               on_line=show, cwd=FLAKE_ROOT)  # fmt: skip
    out = next((line.strip() for line in reversed(lines) if line.strip().startswith("/nix/store/")), None)
    if not interactive:
        state.out.print(f"the VM test passed: {out or 'built'}", highlight=False, markup=False)
        return
    if out is None:
        raise G5kError("nix build printed no store path for the interactive driver")
    state.out.print("Interactive driver: run start_all(), then from another terminal:", highlight=False)
    for line in vmtest_access():
        state.out.print(f"  {line}", highlight=False, markup=False)
    sys.stdout.flush()
    driver = f"{out}/bin/nixos-test-driver"
    os.execv(driver, [driver])

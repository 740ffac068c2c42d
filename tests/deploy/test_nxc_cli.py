"""Every nxc command line the agent builds, and every one nix/README.md shows, parsed by the real nixos-compose
0.7.11 CLI (a click group with chain=True) in-process, from the flake directory (the repository root). Each
command's callback is replaced by a recorder, so the parse is nxc's own and nothing runs Nix."""

from __future__ import annotations

import importlib
import re
import shlex
from collections.abc import Callable
from pathlib import Path
from typing import Any

import pytest
from click.testing import CliRunner
from nixos_compose.cli import nxc

from g5kdeploy.deploy.nxc import ROOT_KEY_FILE
from g5kdeploy.playbook import KEXEC_FLAVOURS, Deploy
from g5kdeploy.tools import nxc as nxc_tool
from g5kdeploy.tools.nix import BinaryCacheRef
from tests.deploy.common import CACHE_KEY, CACHE_URL

REPO = Path(__file__).resolve().parents[2]
CACHE = BinaryCacheRef(url=CACHE_URL, public_key=CACHE_KEY)
COMPOSITION = Deploy(method="nxc").composition
ROLES = {"collector": 1, "exporter": 3}

Parse = Callable[[list[str]], dict[str, dict[str, Any]]]

# nxc 0.7.11's start declares -s twice (--ssh, then --setup); click warns and the first one wins.
pytestmark = pytest.mark.filterwarnings("ignore:The parameter -s is used more than once:UserWarning")


@pytest.fixture
def parse(monkeypatch: pytest.MonkeyPatch) -> Parse:
    """``nxc ARGS`` through the real CLI: {command: the parameters nxc would call it with}, in order; a refused
    command line fails the test with nxc's own message."""
    monkeypatch.chdir(REPO)
    calls: dict[str, dict[str, Any]] = {}

    def recorder(name: str) -> Callable[..., None]:
        def record(**params: Any) -> None:
            calls[name] = params

        return record

    for name in nxc.list_commands(None):
        command = importlib.import_module(f"nixos_compose.commands.cmd_{name}").cli
        monkeypatch.setattr(command, "callback", recorder(name))

    def run(args: list[str]) -> dict[str, dict[str, Any]]:
        calls.clear()
        result = CliRunner().invoke(nxc, args, catch_exceptions=False)
        assert result.exit_code == 0, f"nxc {shlex.join(args)}:\n{result.output}"
        return dict(calls)

    return run


def nxc_args(command: str) -> list[str]:
    argv = shlex.split(command, comments=True)
    assert argv[0] == "nxc", command
    return argv[1:]


@pytest.mark.parametrize("flavour", [*KEXEC_FLAVOURS, nxc_tool.IMAGE_FLAVOUR])
def test_the_real_nxc_reads_the_agents_build_command_as_meant(parse: Parse, flavour: str) -> None:
    commands = parse(nxc_args(nxc_tool.nxc_build_command(flavour, COMPOSITION, CACHE)))
    assert list(commands) == ["build"]
    build = commands["build"]
    assert build["flavour"] == flavour
    assert build["composition_file"] == str(REPO / COMPOSITION)
    # nxc splits --nix-flags on whitespace and puts the words on nix build's command line as they are.
    assert build["nix_flags"].split() == [
        *("--max-jobs", "0"),
        *("--option", "extra-substituters", CACHE_URL),
        *("--option", "extra-trusted-public-keys", CACHE_KEY),
    ]


@pytest.mark.parametrize("identity", [ROOT_KEY_FILE, None])
@pytest.mark.parametrize("flavour", KEXEC_FLAVOURS)
def test_the_real_nxc_reads_the_agents_start_command_as_meant(parse: Parse, flavour: str, identity: str | None) -> None:
    commands = parse(nxc_args(nxc_tool.nxc_start_command(flavour, ".g5k-machines", ROLES, identity)))
    assert list(commands) == ["start"]
    start = commands["start"]
    assert start["flavour"] == flavour
    assert start["machine_file"] == str(REPO / ".g5k-machines")
    assert start["role_distribution"] == ("collector=1", "exporter=3")
    assert start["identity_file"] == identity
    assert start["start_option"] == ("no-launch",)
    assert start["composition"] is None and start["roles_distribution_file"] is None


def test_the_real_nxc_refuses_an_option_after_the_composition_file() -> None:
    """What every nxc plan did before: the chained group ends build's options at the composition file."""
    args = ["-d", ".", "build", "-f", "g5k-nfs-store", COMPOSITION, "--nix-flags", "--max-jobs 0"]
    result = CliRunner().invoke(nxc, args)
    assert result.exit_code == 2
    assert "No such option '--nix-flags'" in result.output


def readme_nxc_lines() -> list[str]:
    text = (REPO / "nix/README.md").read_text()
    blocks = re.findall(r"```bash\n(.*?)```", text, re.DOTALL)
    return [line for block in blocks for line in block.splitlines() if line.startswith("nxc ")]


def test_the_nix_readme_shows_nxc_build_start_and_driver() -> None:
    shown = {nxc_args(line)[2] for line in readme_nxc_lines()}
    assert shown == {"build", "start", "driver"}


@pytest.mark.parametrize("line", readme_nxc_lines())
def test_the_real_nxc_reads_the_nix_readmes_command_lines(parse: Parse, line: str) -> None:
    commands = parse(nxc_args(line))
    assert len(commands) == 1, commands
    if "build" in commands:
        assert commands["build"]["composition_file"] == str(REPO / COMPOSITION)

"""An nxc deploy to Grid'5000 of a flake whose inputs no committed flake.lock pins is refused before anything is
reserved, with how to lock it, unless ``--allow-unlocked`` says to go ahead."""

from __future__ import annotations

import subprocess

import pytest
from typer.testing import CliRunner

from g5kdeploy import Experiment
from g5kdeploy.cli import app
from g5kdeploy.errors import ConfigError
from g5kdeploy.playbook import load_playbook
from g5kdeploy.reserve.phase import check_pinned
from g5kdeploy.tools.nix import FLAKE_ROOT

PLAYBOOK = """\
version: 2
name: exp
testbed: grid5000
reservation:
  site: nancy
  roles:
    collector: {nodes: 1, cluster: gros}
    exporter: {nodes: 2, cluster: gros}
  walltime: "1:00"
deploy:
  method: nxc
"""
UNLOCKED = not (FLAKE_ROOT / "flake.lock").is_file()


@pytest.fixture
def book(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("G5K_RESULTS_DIR", str(tmp_path / "results"))
    # Nowhere to reserve: a reservation that got past the lock check fails in its own preflight.
    monkeypatch.setenv("G5K_API_URL", "http://127.0.0.1:9/")
    monkeypatch.setenv("G5K_USERNAME", "alice")
    monkeypatch.setenv("G5K_PASSWORD", "not-a-real-one")
    path = tmp_path / "exp.yaml"
    path.write_text(PLAYBOOK)
    return path


def _git(root, *args):
    subprocess.run(["git", "-C", str(root), *args], check=True, capture_output=True)


@pytest.mark.skipif(not UNLOCKED, reason="this checkout has a flake.lock")
@pytest.mark.parametrize("command", ["run", "reserve"])
def test_unlocked_flake_is_refused_naming_the_fix_and_nothing_is_reserved(book, tmp_path, command):
    result = CliRunner().invoke(app, [command, str(book)])
    assert result.exit_code == 2, result.output
    assert "has no flake.lock" in result.output
    assert "nix flake lock" in result.output and "--allow-unlocked" in result.output
    assert "Traceback" not in result.output
    # Refused before the reserve phase: no job in any run's ledger.
    ledgers = list((tmp_path / "results").glob("*/run.json"))
    assert all('"uid"' not in ledger.read_text() and '"reserve"' not in ledger.read_text() for ledger in ledgers)


@pytest.mark.skipif(not UNLOCKED, reason="this checkout has a flake.lock")
def test_allow_unlocked_goes_on_to_reserve(book):
    result = CliRunner().invoke(app, ["reserve", str(book), "--allow-unlocked"])
    assert "flake.lock" not in result.output
    # Past the check, the reserve phase itself ran: its preflight looked for the user's SSH key (none here).
    assert "no SSH key" in result.output, result.output


@pytest.mark.skipif(not UNLOCKED, reason="this checkout has a flake.lock")
def test_the_library_refuses_too_unless_allowed(book):
    with pytest.raises(ConfigError, match=r"no flake\.lock"):
        Experiment(book, results_dir=book.parent / "results").reserve()
    check_pinned(load_playbook(book), allow_unlocked=True)


def test_a_lock_git_does_not_track_does_not_count(book, tmp_path):
    root = tmp_path / "flake"
    root.mkdir()
    (root / "flake.nix").write_text("{ outputs = _: { }; }\n")
    (root / "flake.lock").write_text('{"nodes": {}, "root": "root", "version": 7}\n')
    _git(root, "init", "-q")
    playbook = load_playbook(book)
    with pytest.raises(ConfigError, match="not tracked by git") as refused:
        check_pinned(playbook, allow_unlocked=False, root=root)
    assert "git add flake.lock" in (refused.value.hint or "")
    _git(root, "add", "flake.nix", "flake.lock")
    check_pinned(playbook, allow_unlocked=False, root=root)


def test_other_testbeds_and_methods_are_not_held_to_a_lock(book, tmp_path):
    empty = tmp_path / "nothing"
    empty.mkdir()
    local = load_playbook(book).model_copy(update={"testbed": "local"})
    check_pinned(local, allow_unlocked=False, root=empty)
    with pytest.raises(ConfigError, match=r"deploy\.method nxc"):
        check_pinned(load_playbook(book), allow_unlocked=False, root=empty)

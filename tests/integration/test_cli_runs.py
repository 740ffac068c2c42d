"""Naming runs (``latest``, an id's start), showing whole ids, shell completion, and commands on runs without nodes."""

from __future__ import annotations

import os
import re
import subprocess
import sys
from datetime import UTC, datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from g5kdeploy.cli import app
from g5kdeploy.playbook import parse_playbook
from g5kdeploy.results import RunRecord, RunStore, new_run_id, utc_now

#: 63 characters, the longest playbook name: its run ids are 84 characters long.
LONG_NAME = "an-experiment-whose-name-is-as-long-as-a-playbook-name-may-be-x"
G5K = Path(sys.executable).with_name("g5k")


def make_runs(results: Path, count: int, *, released: bool = False) -> list[str]:
    """Runs of the local testbed that never reached the testbed (no API needed to show them)."""
    store = RunStore(results)
    book = parse_playbook(
        f"version: 2\nname: {LONG_NAME}\ntestbed: local\nreservation:\n  roles: {{n: {{nodes: 1}}}}\n"
    )
    ids = []
    for second in range(count):
        run_id = new_run_id(LONG_NAME, datetime(2026, 12, 1, 0, 0, second, tzinfo=UTC))
        record = RunRecord(run_id=run_id, playbook_path="exp.yaml", playbook=book, testbed="local", api_url="-")
        record.released_at = utc_now() if released else None
        store.create(record)
        ids.append(run_id)
    return ids


def g5k(results: Path, *args: str, columns: int = 80):
    return CliRunner().invoke(app, ["--results-dir", str(results), *args], env={"COLUMNS": str(columns)})


@pytest.mark.parametrize("command", ["check", "init", "ssh", "exec", "sites", "clusters", "nodes"])
def test_help_of_the_commands_that_reach_nodes_and_discover(command):
    result = CliRunner().invoke(app, [command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output and "<str>" not in result.output
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert "{" not in usage and not re.search(r"\[[a-z]+\]", usage), usage


def test_status_never_cuts_a_run_id_even_in_a_narrow_terminal(tmp_path):
    ids = make_runs(tmp_path, 2)
    assert len(ids[0]) == 84
    result = g5k(tmp_path, "status", columns=40)
    assert result.exit_code == 0, result.output
    assert [line for line in result.stdout.splitlines() if not line.startswith(" ")] == ids


def test_a_run_is_named_by_latest_or_the_start_of_exactly_one_id(tmp_path):
    first, second = make_runs(tmp_path, 2)
    assert g5k(tmp_path, "status", "latest").stdout.splitlines()[0] == second
    assert g5k(tmp_path, "status", first[:-3]).stdout.splitlines()[0] == first
    ambiguous = g5k(tmp_path, "status", first[:-8])
    assert ambiguous.exit_code == 2
    assert f"names 2 runs: {first}, {second}" in ambiguous.stderr
    assert "give more of the run id" in ambiguous.stderr
    none = g5k(tmp_path / "empty", "status", "latest")
    assert none.exit_code == 2 and "no run 'latest'" in none.stderr


@pytest.mark.parametrize("command", [["exec", "latest", "--", "true"], ["ssh", "latest", "--print"]], ids=" ".join)
def test_a_released_run_has_no_nodes_to_reach(command, tmp_path):
    [run_id] = make_runs(tmp_path, 1, released=True)
    result = g5k(tmp_path, *command)
    assert result.exit_code == 2
    assert f"run {run_id} was released" in result.stderr
    assert f"g5k run --resume {run_id}" in result.stderr


def test_a_run_not_reserved_yet_says_how_to_reserve_it(tmp_path):
    [run_id] = make_runs(tmp_path, 1)
    result = g5k(tmp_path, "exec", run_id, "--", "true")
    assert result.exit_code == 2
    assert f"run {run_id} has no nodes yet" in result.stderr and f"g5k reserve --run {run_id}" in result.stderr


def _complete(*words: str) -> list[str]:
    """What bash completion offers for the last of ``words``, from the installed g5k."""
    env = {
        **os.environ,
        "_G5K_COMPLETE": "complete_bash",
        "COMP_WORDS": " ".join(words),
        "COMP_CWORD": str(len(words) - 1),
    }
    done = subprocess.run([str(G5K)], env=env, capture_output=True, text=True, timeout=60, check=False)
    assert done.returncode == 0, done.stderr
    return done.stdout.split()


def test_shell_completion_completes_commands_and_options():
    assert _complete("g5k", "sta") == ["status"]
    assert {"ssh", "sites"} <= set(_complete("g5k", "s"))
    assert {"--role", "--nodes", "--timeout", "--json"} <= set(_complete("g5k", "exec", "--"))


def test_completion_can_be_shown_and_installed():
    shown = subprocess.run(
        [str(G5K), "--show-completion", "bash"], capture_output=True, text=True, timeout=60, check=False
    )
    assert shown.returncode == 0, shown.stderr
    assert "_G5K_COMPLETE=complete_bash" in shown.stdout
    assert "--install-completion" in CliRunner().invoke(app, ["--help"], env={"COLUMNS": "120"}).stdout

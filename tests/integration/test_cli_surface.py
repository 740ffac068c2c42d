"""What the user reads: help, run names, status of failed runs, global options anywhere, JSON logs."""

from __future__ import annotations

import json
import re
import subprocess
import sys

import pytest
from typer.testing import CliRunner

from g5kdeploy.cli import app
from g5kdeploy.collect.manifest import write_manifest
from tests.conftest import playbook_text, write_playbook
from tests.integration.test_reserve import hog

COMMANDS = [
    ["run"], ["reserve"], ["deploy"], ["bench"], ["collect"], ["verify"], ["release"], ["status"],
    ["snapshot", "serve"], ["nightly", "plan"], ["nightly", "run"], ["nightly", "check"], ["nightly", "install"],
    ["vm", "kernel"],
]  # fmt: skip


@pytest.mark.parametrize("command", COMMANDS, ids=" ".join)
def test_help_shows_flags_without_a_value_and_arguments_in_capitals(command):
    result = CliRunner().invoke(app, [*command, "--help"], env={"COLUMNS": "120"})
    assert result.exit_code == 0, result.output
    assert "<bool>" not in result.output and "<str>" not in result.output
    usage = next(line for line in result.output.splitlines() if "Usage:" in line)
    assert "{" not in usage and not re.search(r"\[[a-z]+\]", usage), usage


def test_g5k_sim_serve_is_the_simulator_program_itself(tmp_path):
    """`g5k sim serve` replaces itself with the simulator: its help and its refusals are the program's own."""
    g5k = [sys.executable, "-c", "from g5kdeploy.cli import main; main()"]
    shown = subprocess.run([*g5k, "sim", "serve", "--help"], capture_output=True, text=True, timeout=60, check=False)
    assert shown.returncode == 0, shown.stderr
    assert "--background-load" in shown.stdout and "--speed" in shown.stdout
    refused = subprocess.run(
        [*g5k, "sim", "serve", "--host", "192.0.2.1"], capture_output=True, text=True, timeout=60, check=False
    )
    assert refused.returncode == 2 and "--allow-remote" in refused.stderr


def test_a_missing_argument_is_named_in_capitals():
    result = CliRunner().invoke(app, ["verify"])
    assert result.exit_code == 2
    assert "Missing argument 'RUN'" in result.output


def _failed_reservation(g5k, sim, tmp_path, name: str = "exp") -> str:
    hog(sim, hours=10)
    book = write_playbook(
        tmp_path, playbook_text(extra="  start_deadline: '0:30'\n").replace("name: exp", f"name: {name}"), name=name
    )
    result = g5k("reserve", str(book))
    assert result.exit_code == 1, result.output
    [run_id] = [line.split()[1] for line in result.stderr.splitlines() if line.startswith("run ")]
    return run_id


def test_status_of_a_failed_reservation_shows_the_phase_and_its_error_and_whole_ids(g5k, sim, tmp_path):
    name = "a-playbook-name-long-enough-to-make-its-run-ids-long"
    run_id = _failed_reservation(g5k, sim, tmp_path, name=name)
    result = g5k("status")
    assert result.exit_code == 0
    assert run_id in result.stdout.splitlines(), result.stdout
    assert "reserve:failed, released" in result.stdout
    assert "start_deadline" in result.stdout
    [row] = json.loads(g5k("status", "--json").stdout)
    assert row["failed_phase"] == "reserve" and "start_deadline" in row["error"] and row["released"]


def test_runs_are_named_by_id_prefix_or_latest(g5k, sim, tmp_path):
    run_id = _failed_reservation(g5k, sim, tmp_path)
    for name in (run_id, "latest", run_id[: len(run_id) - 3]):
        result = g5k("status", name, "--json")
        assert result.exit_code == 0, result.output
        assert json.loads(result.stdout)[0]["run_id"] == run_id
    unknown = g5k("status", "nope")
    assert unknown.exit_code == 2 and "no run 'nope'" in unknown.stderr


def test_global_options_are_accepted_after_the_subcommand(g5k, sim, tmp_path):
    run_id = _failed_reservation(g5k, sim, tmp_path)
    elsewhere = tmp_path / "elsewhere"
    assert "no runs in" in g5k("status", "--results-dir", str(elsewhere)).stdout
    found = g5k("status", run_id, "--json", f"--results-dir={tmp_path / 'results'}", "-v")
    assert found.exit_code == 0, found.output


def test_log_json_makes_every_stderr_line_a_json_object(g5k, sim, tmp_path):
    hog(sim, hours=10)
    book = write_playbook(tmp_path, playbook_text(extra="  start_deadline: '0:30'\n"))
    for result in (g5k("reserve", str(book), "--log-json"), g5k("status", "nope", "--log-json")):
        lines = [line for line in result.stderr.splitlines() if line.strip()]
        assert lines
        for line in lines:
            assert isinstance(json.loads(line), dict), line


def test_verify_speaks_json(g5k, sim, tmp_path):
    run_id = _failed_reservation(g5k, sim, tmp_path)
    run_dir = tmp_path / "results" / run_id
    (run_dir / "notes.txt").write_text("kept\n")
    write_manifest(run_dir, agent_version="test")
    good = g5k("verify", run_id, "--json")
    assert good.exit_code == 0 and json.loads(good.stdout) == {"run_dir": str(run_dir), "ok": True, "problems": []}
    (run_dir / "notes.txt").write_text("changed\n")
    bad = g5k("verify", run_id, "--json")
    assert bad.exit_code == 1
    assert [p.split(" (")[0] for p in json.loads(bad.stdout)["problems"]] == ["changed: notes.txt"]


def test_release_all_says_when_nothing_is_left(g5k, sim, tmp_path):
    _failed_reservation(g5k, sim, tmp_path)
    result = g5k("release", "--all")
    assert result.exit_code == 0
    assert "nothing to release" in result.stdout


def test_the_cli_starts_without_the_plotting_and_statistics_libraries():
    """Every g5k command paid a second for matplotlib, numpy, scipy and ruptures: they load where they are used."""
    probe = "import sys, g5kdeploy.cli; print(sorted({m.split('.')[0] for m in sys.modules}))"
    loaded = subprocess.run([sys.executable, "-c", probe], capture_output=True, text=True, timeout=60, check=True)
    assert not {"matplotlib", "ruptures", "scipy"} & set(json.loads(loaded.stdout.replace("'", '"')))

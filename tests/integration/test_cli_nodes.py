"""``g5k exec`` and ``g5k ssh`` on a run of the local testbed: real sshd nodes on loopback, reached by name or role."""

from __future__ import annotations

import json
import os
import shlex
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from g5kdeploy.cli import app
from tests.conftest import REPO

PLAYBOOK = """version: 2
name: nodes
testbed: local
reservation:
  site: nancy
  roles:
    server: {nodes: 1, cluster: gros}
    client: {nodes: 2, cluster: gros}
  walltime: "1:00"
  max_wait: "0:05"
"""


class Run:
    """A reserved local run, and the CLI pointed at its results directory."""

    def __init__(self, directory: Path) -> None:
        self.results = directory / "results"
        self.env = {"HOME": str(directory), "G5K_RESULTS_DIR": str(self.results)}
        book = directory / "nodes.yaml"
        book.write_text(PLAYBOOK)
        reserved = self("reserve", str(book), "--json")
        assert reserved.exit_code == 0, reserved.output
        summary = json.loads(reserved.stdout)
        self.id: str = summary["run_id"]
        self.server: str = summary["roles"]["server"][0]
        self.clients: list[str] = summary["roles"]["client"]

    def __call__(self, *args: str):
        unset = dict.fromkeys(("G5K_API_URL", "G5K_USERNAME", "G5K_PASSWORD"))
        return CliRunner().invoke(app, list(args), env={**unset, **self.env}, catch_exceptions=False)


@pytest.fixture(scope="module")
def run(tmp_path_factory):
    reserved = Run(tmp_path_factory.mktemp("nodes"))
    yield reserved
    released = reserved("release", reserved.id)
    assert released.exit_code == 0, released.output


def short(node: str) -> str:
    return node.split(".")[0]


def test_exec_runs_on_every_node_and_prefixes_each_line_with_the_node(run):
    result = run("exec", run.id, "--", 'echo "$G5K_NODE"; echo second line')
    assert result.exit_code == 0, result.output
    lines = result.stdout.splitlines()
    for node in [run.server, *run.clients]:
        assert f"{short(node)}: {node}" in lines
        assert f"{short(node)}: second line" in lines
    assert len(lines) == 6


def test_exec_selects_nodes_by_role_and_by_short_name(run):
    by_role = run("exec", run.id, "--role", "client", "--", "echo $G5K_NODE")
    assert by_role.exit_code == 0, by_role.output
    assert sorted(by_role.stdout.splitlines()) == sorted(f"{short(node)}: {node}" for node in run.clients)
    by_name = run("exec", run.id, "--nodes", f"{short(run.server)},{run.clients[1]}", "--", "echo $G5K_NODE")
    assert by_name.exit_code == 0, by_name.output
    assert sorted(by_name.stdout.splitlines()) == sorted(
        f"{short(node)}: {node}" for node in (run.server, run.clients[1])
    )


def test_exec_exits_1_naming_the_nodes_that_failed_and_shows_the_others_output(run):
    broken = run.clients[0]
    command = f'if [ "$G5K_NODE" = {broken} ]; then echo broken >&2; exit 3; fi; echo fine'
    result = run("exec", run.id, "--", command)
    assert result.exit_code == 1
    assert f"{short(broken)}: broken" in result.stderr
    assert f"the command failed on 1 of 3 nodes: {short(broken)} (exit 3)" in result.stderr
    assert sorted(result.stdout.splitlines()) == sorted(f"{short(n)}: fine" for n in (run.server, run.clients[1]))


def test_exec_time_out_ends_the_command_and_names_the_node(run):
    slow = run.clients[1]
    result = run("exec", run.id, "--timeout", "1", "--", f'if [ "$G5K_NODE" = {slow} ]; then sleep 60; fi; echo done')
    assert result.exit_code == 1
    assert f"{short(slow)} (timed out after 1 s)" in result.stderr
    assert f"{short(run.server)}: done" in result.stdout.splitlines()


def test_exec_json_has_one_object_per_node(run):
    result = run("exec", run.id, "--json", "--", 'echo out; echo err >&2; [ "$G5K_NODE" != ' + run.server + " ]")
    assert result.exit_code == 1
    objects = {entry["node"]: entry for entry in json.loads(result.stdout)}
    assert sorted(objects) == sorted([run.server, *run.clients])
    assert objects[run.server]["exit_code"] == 1 and not objects[run.server]["ok"]
    client = objects[run.clients[0]]
    assert (client["ok"], client["exit_code"], client["stdout"], client["stderr"]) == (True, 0, "out\n", "err\n")
    assert client["duration"] >= 0 and client["timed_out"] is False


def test_an_unknown_role_or_node_lists_the_run_s(run):
    for args in (["exec", run.id, "--role", "db", "--", "true"], ["exec", run.id, "--nodes", "gros-999", "--", "true"]):
        result = run(*args)
        assert result.exit_code == 2, result.output
        assert "server" in result.stderr and "client" in result.stderr
    unknown = run("ssh", run.id, "db", "--print")
    assert unknown.exit_code == 2
    assert "no node or role 'db'" in unknown.stderr
    assert f"server: {run.server}" in unknown.stderr and short(run.clients[0]) in unknown.stderr


def test_ssh_print_goes_through_the_run_s_ssh_config_to_a_node_or_a_role_s_first(run):
    config = str(run.results / run.id / "testbed" / "nodes" / "ssh_config")
    for target, node in ((None, run.server), ("client", run.clients[0]), (short(run.clients[1]), run.clients[1])):
        result = run("ssh", run.id, *([target] if target else []), "--print")
        assert result.exit_code == 0, result.output
        assert shlex.split(result.stdout) == ["ssh", "-F", config, "-t", node]


def test_ssh_replaces_itself_with_ssh_and_exits_with_the_command_s_status(run):
    """The exec path for real: the g5k process becomes ssh, whose output and exit status are the command's."""
    env = {name: value for name, value in os.environ.items() if not name.startswith("G5K_")}
    done = subprocess.run(
        [sys.executable, "-m", "g5kdeploy", "ssh", "latest", "client", "--command", "echo $G5K_NODE; exit 7"],
        env={**env, **run.env},
        cwd=REPO,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert done.returncode == 7, done.stderr
    assert done.stdout == f"{run.clients[0]}\n"

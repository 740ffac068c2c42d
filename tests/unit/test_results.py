"""The run record as the user meets it: typed when read back, and a damaged one named instead of a traceback."""

from __future__ import annotations

import json

import pytest
from typer.testing import CliRunner

from g5kdeploy.cli import app
from g5kdeploy.errors import ConfigError
from g5kdeploy.playbook import parse_playbook
from g5kdeploy.results import JobEntry, JobPart, RunRecord, RunStore

PLAYBOOK = """
version: 2
name: exp
testbed: local
reservation:
  roles:
    collector: {nodes: 1}
    exporter: {nodes: 2}
  walltime: "0:30"
"""


def _record(run_id: str) -> RunRecord:
    return RunRecord(
        run_id=run_id,
        playbook_path="exp.yaml",
        playbook=parse_playbook(PLAYBOOK),
        testbed="local",
        api_url="",
        jobs=[JobEntry(site="local", name=run_id, resources="nodes=3", walltime=1800,
                       parts=[JobPart(roles=[("collector", 1), ("exporter", 2)])])],
    )  # fmt: skip


def test_a_run_reads_back_with_its_playbook_and_job_parts_typed(tmp_path):
    store = RunStore(tmp_path)
    store.create(_record("exp-1"))
    again = store.load("exp-1")
    assert again.playbook.reservation.roles["exporter"].nodes == 2
    assert again.jobs[0].parts[0].roles == [("collector", 1), ("exporter", 2)]


def test_a_damaged_run_is_named_and_does_not_hide_the_other_runs(tmp_path):
    store = RunStore(tmp_path)
    store.create(_record("exp-1"))
    store.create(_record("exp-2"))
    path = tmp_path / "exp-1" / "run.json"
    data = json.loads(path.read_text())
    del data["playbook"]["reservation"]
    path.write_text(json.dumps(data))
    with pytest.raises(ConfigError, match=r"exp-1/run.json is damaged .*playbook.reservation"):
        store.load("exp-1")
    assert [record.run_id for record in store.all()] == ["exp-2"]
    shown = CliRunner().invoke(app, ["--results-dir", str(tmp_path), "status", "exp-1"])
    assert shown.exit_code == 2 and "playbook.reservation" in shown.output and "Traceback" not in shown.output

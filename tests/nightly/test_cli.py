"""``g5k nightly check`` and ``g5k nightly plan`` as a user runs them: exit codes, files, JSON."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

import pytest
from typer.testing import CliRunner

from g5kdeploy.cli import app
from g5kdeploy.playbook import PARIS, load_playbook
from g5kdeploy.results import RunRecord, RunStore
from tests.conftest import USER
from tests.nightly.synthetic import write_history

REPO = Path(__file__).resolve().parents[2]
STATX = REPO / "playbooks" / "statx.yaml"
STATX_LOCAL = REPO / "playbooks" / "statx-local.yaml"
PUBLIC_KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIGV4YW1wbGUga2V5IG9ubHkgZm9yIHRlc3Rz jdoe@laptop"


def g5k(*args: str):
    return CliRunner().invoke(app, list(args))


def test_check_exits_3_on_a_regression_and_names_the_run(tmp_path):
    ids = write_history(tmp_path, 30, seed=11, scale_from={21: {("p50_ns", 2, "on"): 1.10}})
    result = g5k("--results-dir", str(tmp_path), "nightly", "check", str(STATX), "--json")
    assert result.exit_code == 3, result.output
    report = json.loads(result.stdout)
    [change] = [change for change in report["changes"] if change["kind"] == "regression"]
    assert change["run_id"] == ids[20] and change["metric"] == "p50_ns"
    assert Path(report["files"]["markdown"]).exists() and Path(report["files"]["p50_ns"]).exists()


def test_check_exits_0_on_noise_and_2_on_a_bad_playbook(tmp_path):
    write_history(tmp_path, 20, seed=3)
    assert g5k("--results-dir", str(tmp_path), "nightly", "check", str(STATX)).exit_code == 0
    bad = tmp_path / "bad.yaml"
    bad.write_text(STATX.read_text().replace("threshold: 0.05", "threshold: -1"))
    result = g5k("--results-dir", str(tmp_path), "nightly", "check", str(bad))
    assert result.exit_code == 2 and "nightly.threshold" in result.stderr


@pytest.mark.parametrize("runs", [0, 1, 5])
def test_check_with_too_little_history_says_so_and_exits_4(tmp_path, runs):
    # Before the sixth night nothing can be checked: that is not a pass, and CI must be able to tell.
    write_history(tmp_path, runs, seed=2)
    result = g5k("--results-dir", str(tmp_path), "nightly", "check", str(STATX))
    assert result.exit_code == 4, result.output
    assert f"not enough history ({runs} of 6 needed)" in result.stdout
    assert "no change" not in result.stdout
    markdown = (tmp_path / "nightly" / "statx" / "nightly.md").read_text()
    assert f"Not enough history ({runs} of 6 needed)" in markdown and "exit code 4" in markdown

    as_json = g5k("--results-dir", str(tmp_path), "nightly", "check", str(STATX), "--json")
    assert as_json.exit_code == 4
    report = json.loads(as_json.stdout)
    assert report["exit_code"] == 4
    assert report["history"] == {
        "enough": False,
        "runs": runs,
        "needed": 6,
        "message": f"not enough history ({runs} of 6 needed)",
    }


def test_check_with_enough_history_on_old_hardware_only_names_the_new_series(tmp_path):
    # Eight nights on gros, then two on grisou: gros is checked (exit 0), grisou is too new to be.
    write_history(tmp_path, 10, seed=6, cluster_from={9: "grisou"})
    result = g5k("--results-dir", str(tmp_path), "nightly", "check", str(STATX), "--json")
    assert result.exit_code == 0, result.output
    report = json.loads(result.stdout)
    assert report["history"]["enough"] is True and report["history"]["runs"] == 8
    short = {check["key"]["hardware"]: check["note"] for check in report["series"] if not check["checked"]}
    assert short == {"grisou": "not enough history (2 of 6 needed)"}
    text = g5k("--results-dir", str(tmp_path), "nightly", "check", str(STATX))
    assert text.exit_code == 0
    assert "not enough history on grisou · config aaaaaaaaaaaa for 12 series (2 of 6 needed)" in text.stdout
    assert "no change over 10 runs" in text.stdout


def test_plan_prints_the_oar_request_the_night_would_submit(agent_env, sim, tmp_path):
    (Path(agent_env["HOME"]) / ".ssh" / "id_ed25519.pub").write_text(PUBLIC_KEY + "\n")
    book = tmp_path / "statx.yaml"
    book.write_text(
        STATX.read_text().replace(
            '  walltime: "1:00"\n  # Give up',
            '  walltime: "1:00"\n  project: lab\n  types: [night]\n  job_name: statx-nightly\n  # Give up',
        )
    )
    result = g5k("nightly", "plan", str(book), "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    slot = plan["slot"]
    start, end = datetime.fromisoformat(slot["start"]), datetime.fromisoformat(slot["end"])
    assert start.utcoffset() is not None and (end - start).total_seconds() == 3600
    [job] = plan["jobs"]
    assert job["site"] == "nancy"
    body = job["body"]
    assert body["resources"] == "{cluster='gros'}/nodes=3,walltime=1:00:00"
    assert body["reservation"] == start.astimezone(PARIS).strftime("%Y-%m-%d %H:%M:%S")
    # The default queue is OAR's own default: the reserve phase leaves it out of the body.
    assert (body["name"], body.get("queue"), body["project"], body["types"]) == (
        "statx-nightly",
        None,
        "lab",
        ["night"],
    )
    # The kexec flavour's job installs the user's key for root on every node, then holds them for the walltime.
    assert PUBLIC_KEY in body["command"] and body["command"].endswith("sleep 3600")

    text = g5k("nightly", "plan", str(book))
    assert text.exit_code == 0, text.output
    lines = text.stdout.splitlines()
    assert lines[0].startswith("slot: ")
    assert "OAR request on nancy:" in lines
    assert "  resources: {cluster='gros'}/nodes=3,walltime=1:00:00" in lines
    assert f"  reservation: {body['reservation']} (Europe/Paris)" in lines
    assert "  walltime: 1:00:00" in lines
    assert "  types: night" in lines and "  queue: default" in lines and "  name: statx-nightly" in lines
    # Planning reads the API and submits nothing.
    assert [job for job in sim.simulator.jobs() if job["user"] == USER] == []


def test_plan_on_the_local_testbed_starts_at_once_without_a_policy_slot(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable in ("G5K_API_URL", "G5K_USERNAME", "G5K_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    # Two hours a night against one for an ordinary run: the night's job takes the nightly walltime.
    book = tmp_path / "statx-local.yaml"
    book.write_text(STATX_LOCAL.read_text().replace('  walltime: "1:00"\n  keep: 60', '  walltime: "2:00"\n  keep: 60'))
    result = g5k("--results-dir", str(tmp_path / "results"), "nightly", "plan", str(book), "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    assert plan["slot"] is None and plan["usage_policy"] is False
    assert plan["notes"] == ["the local testbed has no usage policy: the run starts at once, one run a day"]
    [job] = plan["jobs"]
    assert job["body"]["resources"] == "{cluster='gros'}/nodes=3,walltime=2:00:00"
    assert "reservation" not in job["body"] and job["body"]["command"] == "sleep 7200"

    text = g5k("--results-dir", str(tmp_path / "results"), "nightly", "plan", str(book))
    assert text.exit_code == 0, text.output
    assert "the local testbed has no usage policy: the run starts at once, one run a day" in text.stdout
    assert "slot" not in text.stdout and "window" not in text.stdout
    assert "  reservation: none, the job starts at once" in text.stdout.splitlines()
    # Nothing left behind: no run in the results directory.
    assert not (tmp_path / "results").exists() or not any((tmp_path / "results").iterdir())

    # Once today's run exists, `nightly run` attaches to it: plan says so rather than promise a new job.
    today = datetime.now(PARIS).date().isoformat()
    RunStore(tmp_path / "results").create(
        RunRecord(run_id="statx-local-today", playbook_path=str(book), playbook=load_playbook(book),
                  testbed="local", api_url="local simulator", nightly_slot=today)
    )  # fmt: skip
    again = g5k("--results-dir", str(tmp_path / "results"), "nightly", "plan", str(book))
    assert "the night's run statx-local-today exists: g5k nightly run attaches to it, submits nothing" in again.stdout

"""``g5k nightly check`` and ``g5k nightly plan`` as a user runs them: exit codes, files, JSON."""

from __future__ import annotations

import json
from datetime import datetime
from pathlib import Path

from typer.testing import CliRunner

from g5kdeploy.cli import app
from tests.nightly.synthetic import write_history

STATX = Path(__file__).resolve().parents[2] / "playbooks" / "statx.yaml"


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


def test_plan_prints_the_slot_with_utc_offsets_and_the_reservation():
    result = g5k("nightly", "plan", str(STATX), "--json")
    assert result.exit_code == 0, result.output
    plan = json.loads(result.stdout)
    start, end = datetime.fromisoformat(plan["start"]), datetime.fromisoformat(plan["end"])
    assert start.utcoffset() is not None and (end - start).total_seconds() == 3600
    assert plan["oar"]["reservation"] == start.strftime("%Y-%m-%d %H:%M:%S")

"""A workload that is not statx-bench, end to end on the loopback testbed: the shipped fio example."""

from __future__ import annotations

import csv
import json
import shutil
from pathlib import Path

import pytest
from typer.testing import CliRunner

from g5kdeploy.cli import app

FIO_PLAYBOOK = Path(__file__).resolve().parents[2] / "playbooks" / "fio-local.yaml"


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    for variable in ("G5K_API_URL", "G5K_USERNAME", "G5K_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("G5K_RESULTS_DIR", str(tmp_path / "results"))
    yield tmp_path / "results"
    CliRunner().invoke(app, ["release", "--all"])


@pytest.mark.skipif(shutil.which("fio") is None, reason="fio is not installed (bash scripts/setup.sh installs it)")
def test_the_fio_example_runs_end_to_end_with_its_metrics_per_combination(env):
    result = CliRunner().invoke(app, ["run", str(FIO_PLAYBOOK), "--json"])
    assert result.exit_code == 0, result.output
    outcome = json.loads(result.stdout)
    assert outcome["phases"] == {"reserve": "done", "deploy": "done", "bench": "done", "collect": "done"}
    run_dir = env / outcome["run_id"]
    rows = list(csv.DictReader((run_dir / "bench.csv").open()))
    # (read, 4k), (randread, 4k), (randread, 64k) on 2 nodes, twice.
    assert len(rows) == 3 * 2 * 2
    assert {(row["rw"], row["bs"]) for row in rows} == {("read", "4k"), ("randread", "4k"), ("randread", "64k")}
    assert all(float(row["iops"]) > 0 and float(row["bw_kib_s"]) > 0 and float(row["clat_mean_ns"]) > 0 for row in rows)
    assert CliRunner().invoke(app, ["verify", outcome["run_id"]]).exit_code == 0

"""The collect phase on a copy of a real run left by ``scripts/run-local.sh``, when there is one."""

from __future__ import annotations

import shutil
import stat
from pathlib import Path

import pytest

from g5kdeploy.collect import load_results, verify_manifest, write_manifest, write_report
from g5kdeploy.collect.plots import plot_ebpf, plot_latency, plot_throughput
from tests.collect.conftest import assert_png

RESULTS = Path(__file__).resolve().parents[2] / "results"


def _latest_real_run() -> Path | None:
    runs = sorted(RESULTS.glob("*/bench/*/*.json")) if RESULTS.is_dir() else []
    return max((path.parents[2] for path in runs), key=lambda path: path.name, default=None)


def _regular_only(directory: str, names: list[str]) -> list[str]:
    # Sockets (an sshd's or a ControlMaster's, if a run is live) cannot be copied.
    return [name for name in names if not stat.S_ISREG(mode := Path(directory, name).lstat().st_mode)
            and not stat.S_ISDIR(mode) and not stat.S_ISLNK(mode)]  # fmt: skip


def test_collect_on_a_real_run(tmp_path):
    source = _latest_real_run()
    if source is None:
        pytest.skip("no finished run under results/ (run scripts/run-local.sh)")
    run_dir = tmp_path / source.name
    shutil.copytree(source, run_dir, symlinks=True, ignore=_regular_only)
    results = load_results(run_dir)
    assert results and all(result.buckets for result in results)
    plots = [*plot_latency(results, run_dir / "plots"), plot_throughput(results, run_dir / "plots")]
    if (ebpf := plot_ebpf(results, run_dir / "plots")) is not None:
        plots.append(ebpf)
    for path in plots:
        assert_png(path)
    markdown, _ = write_report(run_dir, plots=plots, exports={"bench.csv": run_dir / "bench.csv"}, node_facts={})
    text = markdown.read_text()
    assert results[0].node in text and "## Key numbers" in text
    write_manifest(run_dir, agent_version="test")
    assert verify_manifest(run_dir) == []

"""The run's report and manifest, (re)written from what its directory holds.

The collect phase writes them once its data is in; releasing the run writes them again, so the archived
report and manifest describe the finished run (jobs over, every phase's outcome), not the moment of collect.
"""

from __future__ import annotations

from pathlib import Path

from g5kdeploy.collect.data import BenchResult
from g5kdeploy.collect.files import read_json
from g5kdeploy.collect.manifest import write_manifest
from g5kdeploy.collect.report import write_report

#: The order plots appear in the report: per-thread latency, throughput, then the eBPF counters.
_PLOT_ORDER = ("latency", "throughput", "ebpf")


def finalize_report(
    run_dir: Path,
    *,
    agent_version: str,
    results: list[BenchResult] | None = None,
    problems: list[str] | None = None,
) -> tuple[Path, Path]:
    """Write ``report.md``/``report.html`` from the run directory, then ``manifest.json`` (last, as it must be).

    ``results`` are the run's bench results when the caller has them already (and ``problems`` met reading
    them). Returns the Markdown report's and the manifest's paths.
    """
    plots = sorted((run_dir / "plots").glob("*.png"), key=_plot_rank)
    exports = {path.stem: path for path in sorted((run_dir / "exports").glob("*.csv"))}
    facts = {
        path.name.removesuffix(".json"): found
        for path in sorted((run_dir / "nodes").glob("*.json"))
        if (found := read_json(path)) is not None
    }
    report, _ = write_report(
        run_dir, plots=plots, exports=exports, node_facts=facts, results=results, problems=problems
    )
    return report, write_manifest(run_dir, agent_version=agent_version)


def _plot_rank(path: Path) -> tuple[int, str]:
    rank = next((i for i, prefix in enumerate(_PLOT_ORDER) if path.name.startswith(prefix)), len(_PLOT_ORDER))
    return rank, path.name

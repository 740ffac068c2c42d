"""The collect phase: plots, reports and the manifest of a finished (or partial) run directory.

Everything reads the run directory only (``run.json``, ``bench/``), never the testbed, so it can run again
at any time, on a copy, after the nodes are gone. Plots need matplotlib, which is imported only when a plot
function is first used: writing or verifying a manifest does not pay for it.
"""

from __future__ import annotations

from importlib import import_module
from typing import Any

from g5kdeploy.collect.data import BenchResult, load_results
from g5kdeploy.collect.manifest import verify_manifest, write_manifest
from g5kdeploy.collect.report import write_report

__all__ = [
    "BenchResult",
    "load_results",
    "plot_ebpf",
    "plot_latency",
    "plot_throughput",
    "verify_manifest",
    "write_manifest",
    "write_report",
]
_PLOTS = frozenset({"plot_ebpf", "plot_latency", "plot_throughput"})


def __getattr__(name: str) -> Any:
    if name in _PLOTS:
        return getattr(import_module("g5kdeploy.collect.plots"), name)
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

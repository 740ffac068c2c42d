"""g5kdeploy: reserve, deploy, bench and collect a kernel + eBPF experiment on Grid'5000, reproducibly.

From Python, :class:`~g5kdeploy.experiment.Experiment` drives one run phase by phase (``from g5kdeploy import
Experiment``).
"""

from __future__ import annotations

# Not typing's: importing typing costs ``g5k`` milliseconds before its signal handlers are in (type checkers know
# the name either way).
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

    from g5kdeploy.experiment import Experiment

    __version__: str

__all__ = ["Experiment", "__version__"]


def __getattr__(name: str) -> Any:
    # Looked up on first use, not at import: ``g5k`` must install its signal handlers as early as it can, and
    # Experiment brings in every phase.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("g5kdeploy")
        except PackageNotFoundError:  # running from a source tree that was never installed
            return "0.0.0+unknown"
    if name == "Experiment":
        from g5kdeploy.experiment import Experiment

        return Experiment
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

"""g5kdeploy: reserve, deploy, bench and collect a kernel + eBPF experiment on Grid'5000, reproducibly."""

from __future__ import annotations

__all__ = ["__version__"]


def __getattr__(name: str) -> str:
    # Looked up on first use, not at import: ``g5k`` must install its signal handlers as early as it can.
    if name == "__version__":
        from importlib.metadata import PackageNotFoundError, version

        try:
            return version("g5kdeploy")
        except PackageNotFoundError:  # running from a source tree that was never installed
            return "0.0.0+unknown"
    raise AttributeError(f"module {__name__!r} has no attribute {name!r}")

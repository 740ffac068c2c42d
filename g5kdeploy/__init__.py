"""g5kdeploy: reserve, deploy, bench and collect a kernel + eBPF experiment on Grid'5000, reproducibly."""

from importlib.metadata import PackageNotFoundError, version

try:
    __version__ = version("g5kdeploy")
except PackageNotFoundError:  # running from a source tree that was never installed
    __version__ = "0.0.0+unknown"

__all__ = ["__version__"]

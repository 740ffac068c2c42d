"""The benchmark payload that runs on the nodes: ``statx-bench``, a C program timing ``statx(2)``.

It ships as C source (package data) and is compiled where it runs, because the nodes' kernel and libc are
those of the deployed image, not of the machine that drives the experiment.
"""

from __future__ import annotations

from g5kdeploy.payload.build import BINARY_NAME, CFLAGS, SOURCE, build_statx_bench

__all__ = ["BINARY_NAME", "CFLAGS", "SOURCE", "build_statx_bench"]

"""The benchmark payload that runs on the nodes: ``statx-bench``, a C program timing ``statx(2)``.

It ships as C source (package data) and is compiled where it runs, because the nodes' kernel and libc are
those of the deployed image, not of the machine that drives the experiment.
"""

from __future__ import annotations

from g5kdeploy.payload.build import BINARY_NAME, CFLAGS, SOURCE, build_statx_bench

#: The path whose statx(2) answer the eBPF program overrides: TARGET_PATH's default in statx-override.bpf.c.
STATX_TARGET = "/tmp/g5k-statx-target"
#: What NixOS' tmpfiles rule (nix/modules/benchmark.nix) puts in it.
STATX_TARGET_TEXT = "g5kdeploy statx target"

__all__ = ["BINARY_NAME", "CFLAGS", "SOURCE", "STATX_TARGET", "STATX_TARGET_TEXT", "build_statx_bench"]

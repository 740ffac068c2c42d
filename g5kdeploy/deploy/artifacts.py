"""The local testbed's deploy: no Nix, no reboot; the experiment's files compiled here and pushed.

``statx-bench`` is built with ``cc``; the eBPF object is compiled with clang against a ``vmlinux.h`` from
this machine's BTF when clang and bpftool are installed (it cannot attach on loopback nodes, which share the
host's kernel, but the artifact is the real one). Every node gets the same files under ``artifacts/`` in its
working directory, with a sha256 manifest checked there; verification checks the sums once more.
"""

from __future__ import annotations

import hashlib
import shlex
import shutil
import subprocess
from pathlib import Path
from typing import Any

from g5kdeploy.deploy.base import BootOutcome, DeployContext, Expectation
from g5kdeploy.errors import TestbedError
from g5kdeploy.log import get_logger
from g5kdeploy.payload import build_statx_bench

log = get_logger(__name__)
EBPF_DIR = Path(__file__).resolve().parents[2] / "nix" / "ebpf"
KERNEL_BTF = Path("/sys/kernel/btf/vmlinux")
REMOTE_DIR = "artifacts"
#: The path whose statx(2) answer the eBPF program overrides: TARGET_PATH's default in statx-override.bpf.c.
STATX_TARGET = "/tmp/g5k-statx-target"
#: What NixOS' tmpfiles rule (nix/modules/benchmark.nix) puts in it.
STATX_TARGET_TEXT = "g5kdeploy statx target"
COMPILE_TIMEOUT = 120
BPF_CFLAGS = ["-O2", "-g", "-Wall", "-target", "bpf", "-D__TARGET_ARCH_x86"]


def _sha256(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def build_ebpf(out_dir: Path) -> tuple[list[Path], str | None]:
    """The eBPF objects and their exporter configs, or no files and why they were skipped."""
    missing = [tool for tool in ("clang", "bpftool") if shutil.which(tool) is None]
    if missing or not KERNEL_BTF.exists():
        why = f"{', '.join(missing)} not installed" if missing else f"no kernel BTF at {KERNEL_BTF}"
        return [], f"eBPF object not built: {why} (apt-get install clang bpftool libbpf-dev)"
    vmlinux = out_dir / "vmlinux.h"
    with vmlinux.open("w") as header:
        _run(["bpftool", "btf", "dump", "file", str(KERNEL_BTF), "format", "c"], stdout=header)
    files: list[Path] = []
    for source in sorted(EBPF_DIR.glob("*.bpf.c")):
        name = source.name.removesuffix(".bpf.c")
        obj = out_dir / f"{name}.bpf.o"
        _run(["clang", *BPF_CFLAGS, f"-I{out_dir}", "-c", str(source), "-o", str(obj)])
        config = out_dir / f"{name}.yaml"
        shutil.copyfile(EBPF_DIR / f"{name}.yaml", config)
        files += [obj, config]
    vmlinux.unlink()
    return files, None


def _run(argv: list[str], **kwargs: Any) -> None:
    kwargs.setdefault("stdout", subprocess.PIPE)
    result = subprocess.run(argv, check=False, stderr=subprocess.PIPE, text=True, timeout=COMPILE_TIMEOUT, **kwargs)
    if result.returncode != 0:
        tail = "\n".join(result.stderr.strip().splitlines()[-15:])
        raise TestbedError(f"{argv[0]} failed (exit {result.returncode}):\n{tail}")


class ArtifactsMethod:
    name = "artifacts"
    bench_binary = f"./{REMOTE_DIR}/statx-bench"
    ebpf_toggle: dict[str, str] | None = None

    def __init__(self) -> None:
        self._files: dict[str, str] = {}

    def plan(self, context: DeployContext, nodes: list[str]) -> dict[str, Any]:
        out_dir = context.run_dir / REMOTE_DIR
        out_dir.mkdir(parents=True, exist_ok=True)
        binary = build_statx_bench(context.run_dir / "build")
        shutil.copy2(binary, out_dir / binary.name)
        ebpf_files, skipped = build_ebpf(out_dir)
        if skipped:
            log.warning("artifacts", note=skipped)
        self._files = {f"{REMOTE_DIR}/{path.name}": _sha256(path) for path in [out_dir / binary.name, *ebpf_files]}
        return {
            "method": self.name,
            "nodes": nodes,
            "files": self._files,
            "ebpf": skipped or "compiled against this machine's BTF",
        }

    def boot(self, context: DeployContext, nodes: list[str], *, deadline: float) -> dict[str, BootOutcome]:
        outcomes: dict[str, BootOutcome] = {}
        for workdir in sorted({context.workdirs[node] for node in nodes}):
            group = [node for node in nodes if context.workdirs[node] == workdir]
            timeout = max(1.0, deadline - context.clock.now())
            sent = context.runner.put_tree(
                group, context.run_dir / REMOTE_DIR, f"{workdir}/{REMOTE_DIR}", timeout=timeout
            )
            for node in group:
                result = sent[node]
                outcomes[node] = BootOutcome(ok=result.ok, reason=None if result.ok else result.error)
        # As NixOS' tmpfiles rule does on Grid'5000: the override's target exists, so its statx succeeds.
        ready = [node for node in nodes if outcomes[node].ok]
        target = shlex.quote(STATX_TARGET)
        made = context.runner.run(
            ready,
            f"test -e {target} || printf '%s' {shlex.quote(STATX_TARGET_TEXT)} > {target}",
            timeout=max(1.0, deadline - context.clock.now()),
        )
        for node in ready:
            if not made[node].ok:
                outcomes[node] = BootOutcome(
                    ok=False, reason=f"cannot create {STATX_TARGET}: {made[node].error or made[node].stderr.strip()}"
                )
        return outcomes

    def expectation(self, context: DeployContext) -> Expectation:  # noqa: ARG002 - the same for every run
        return Expectation(files=dict(self._files))

"""The local and VM testbeds' deploy: no Nix, no reboot; the experiment's files compiled here and pushed.

``statx-bench`` is built with ``cc``; each eBPF program of the playbook (``<name>.bpf.c`` and its ebpf_exporter
config ``<name>.yaml``) is compiled with clang against a ``vmlinux.h``: the experiment kernel's on the VM
testbed, this machine's BTF on the loopback testbed (whose nodes share the host's kernel, so the program
cannot attach there, but the artifact is the real one). Every node gets the same files under ``artifacts/``
in its working directory, with a sha256 manifest checked there; verification checks the sums once more.

On the VM testbed the guests then load and attach the programs, as ebpf_exporter does, through our stand-in for
it (``payload/ebpf_exporter_standin.py``, pushed like any artifact): a program the verifier refuses fails its
node with the verifier's last lines. The stand-in keeps running; the sweep attaches and detaches the programs
through it (SIGUSR1, SIGUSR2) and its counters last the whole run.
"""

from __future__ import annotations

import shlex
import shutil
import sys
from pathlib import Path

from g5kdeploy.deploy.base import BootOutcome, DeployContext, Expectation
from g5kdeploy.errors import TestbedError
from g5kdeploy.files import sha256_file
from g5kdeploy.log import get_logger
from g5kdeploy.payload import STATX_TARGET, STATX_TARGET_TEXT, build_statx_bench
from g5kdeploy.plans import ArtifactsPlan
from g5kdeploy.playbook import BUILTIN_ARTIFACTS, Playbook, artifact_path
from g5kdeploy.tools import bpf

log = get_logger(__name__)
REMOTE_DIR = "artifacts"
STANDIN = Path(__file__).resolve().parents[1] / "payload" / "ebpf_exporter_standin.py"
#: In the node's working directory: the stand-in's PID, its attached/detached state, its log.
EXPORTER_PID, EXPORTER_STATE, EXPORTER_LOG = "ebpf-exporter.pid", "ebpf-exporter.state", "ebpf-exporter.log"
GUEST_EXPORTER_PORT = 9435
#: Tenths of a second the stand-in gets to load and attach (Python from 9p and the verifier, under TCG).
ATTACH_TENTHS = 1200


#: What libbpf or the verifier says when the kernel lacks an option the program needs, and that option. Kconfig
#: checks catch an option that the configuration dropped; this names one that was never asked for.
MISSING_OPTION_SIGNS = (
    ("unknown func bpf_override_return", "BPF_KPROBE_OVERRIDE"),
    ("kernel BTF is missing", "DEBUG_INFO_BTF"),
    ("failed to create kprobe", "KPROBES and KPROBE_EVENTS"),
    ("unknown func bpf_probe_write_user", "BPF_EVENTS"),
)


def missing_option(lines: tuple[str, ...]) -> str | None:
    """The kernel option whose absence the loader's messages show, if they show one."""
    text = "\n".join(lines)
    return next((option for sign, option in MISSING_OPTION_SIGNS if sign in text), None)


def build_ebpf(
    out_dir: Path, sources: Path, programs: list[str], *, vmlinux_h: Path | None
) -> tuple[list[Path], str | None]:
    """The eBPF objects and their exporter configs, or no files and why they were skipped: the reserve phase's
    check compiled the same programs the same way (:mod:`g5kdeploy.tools.bpf`).

    With ``vmlinux_h`` (the kernel the programs will run on) a failure is an error; without it the host's BTF
    stands in, and missing tools only skip the build.
    """
    missing = bpf.missing_tools()
    if vmlinux_h is None and (missing or not bpf.KERNEL_BTF.exists()):
        why = f"{', '.join(missing)} not installed" if missing else f"no kernel BTF at {bpf.KERNEL_BTF}"
        return [], f"eBPF object not built: {why} ({bpf.INSTALL_HINT})"
    if missing:
        raise TestbedError(f"{', '.join(missing)} not installed", hint=bpf.INSTALL_HINT)
    header = bpf.write_vmlinux_h(out_dir, vmlinux_h=vmlinux_h)
    files: list[Path] = []
    try:
        for program in bpf.find_programs(programs, sources):
            files.append(bpf.compile_program(program, out_dir, out_dir / f"{program.name}.bpf.o"))
            files.append(Path(shutil.copyfile(program.config, out_dir / program.config.name)))
    finally:
        header.unlink(missing_ok=True)
    return files, None


def exporter_start_command(programs: list[str], python: str) -> str:
    """Start (or restart) the eBPF exporter stand-in in the node's working directory and wait until attached."""
    pid, state, log_file = EXPORTER_PID, EXPORTER_STATE, EXPORTER_LOG
    standin = f"{REMOTE_DIR}/{STANDIN.name}"
    argv = [
        python, standin, "--config.dir", REMOTE_DIR, "--config.names", ",".join(programs),
        "--web.listen-address", f"0.0.0.0:{GUEST_EXPORTER_PORT}", "--state-file", state, "--pid-file", pid,
    ]  # fmt: skip
    return f"""cd "$G5K_NODE_DIR" || exit 1
if [ -f {pid} ]; then
  old=$(cat {pid}); kill "$old" 2>/dev/null; i=0
  while kill -0 "$old" 2>/dev/null; do i=$((i+1)); [ $i -gt 300 ] && exit 5; sleep 0.1; done
fi
rm -f {state}
setsid {shlex.join(argv)} > {log_file} 2>&1 < /dev/null &
child=$!
i=0
while [ "$(cat {state} 2>/dev/null)" != attached ]; do
  if ! kill -0 "$child" 2>/dev/null; then tail -n 25 {log_file} >&2; exit 3; fi
  i=$((i+1)); if [ $i -gt {ATTACH_TENTHS} ]; then echo "not attached within {ATTACH_TENTHS // 10} s" >&2; exit 4; fi
  sleep 0.1
done"""


def exporter_toggle() -> dict[str, str]:
    """The sweep's eBPF switch on the VM testbed: attach or detach through the running stand-in, then wait."""

    def switch(signal_name: str, state: str) -> str:
        return (
            f'(kill -{signal_name} "$(cat {EXPORTER_PID})" && i=0 && '
            f'while [ "$(cat {EXPORTER_STATE})" != {state} ]; do i=$((i+1)); '
            f'if [ $i -gt {ATTACH_TENTHS} ]; then echo "eBPF programs not {state}" >&2; exit 1; fi; sleep 0.1; done)'
        )

    return {"on": switch("USR1", "attached"), "off": switch("USR2", "detached")}


def stage_artifacts(playbook: Playbook, playbook_path: Path, run_dir: Path, out_dir: Path) -> list[Path]:
    """The workload's artifacts in ``out_dir``: statx-bench built here, the others copied from the playbook's side."""
    out_dir.mkdir(parents=True, exist_ok=True)
    staged: list[Path] = []
    for name in playbook.bench.workload.artifacts if playbook.bench else []:
        source = (
            build_statx_bench(run_dir / "build") if name in BUILTIN_ARTIFACTS else artifact_path(playbook_path, name)
        )
        target = out_dir / Path(name).name
        shutil.copy2(source, target)
        staged.append(target)
    return staged


class ArtifactsMethod:
    name = "artifacts"
    pushes_artifacts = True
    system_artifacts: tuple[str, ...] = ()

    def __init__(self) -> None:
        self._files: dict[str, str] = {}
        self.ebpf_toggle: dict[str, str] | None = None

    def plan(self, context: DeployContext, nodes: list[str]) -> ArtifactsPlan:
        out_dir = context.run_dir / REMOTE_DIR
        out_dir.mkdir(parents=True, exist_ok=True)
        shipped = stage_artifacts(context.playbook, Path(context.record.playbook_path), context.run_dir, out_dir)
        ebpf = context.playbook.ebpf
        kernel = context.kernel
        ebpf_files, skipped = build_ebpf(
            out_dir,
            ebpf.source_dir(Path(context.record.playbook_path)),
            ebpf.programs,
            vmlinux_h=kernel.vmlinux_h if kernel else None,
        )
        if skipped:
            log.warning("artifacts", note=skipped)
        shipped += ebpf_files
        if kernel is not None:
            shutil.copyfile(STANDIN, out_dir / STANDIN.name)
            shipped.append(out_dir / STANDIN.name)
            self.ebpf_toggle = exporter_toggle()
        self._files = {f"{REMOTE_DIR}/{path.name}": sha256_file(path) for path in shipped}
        return ArtifactsPlan(
            nodes=nodes,
            files=self._files,
            ebpf=skipped
            or (
                f"compiled against the VM kernel {kernel.release}; loaded on {', '.join(context.ebpf_nodes)} by our "
                "stand-in for ebpf_exporter"
                if kernel
                else "compiled against this machine's BTF"
            ),
        )

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
        if context.kernel is not None:
            self._start_exporters(context, [n for n in nodes if outcomes[n].ok and n in context.ebpf_nodes], outcomes)
        return outcomes

    def _start_exporters(self, context: DeployContext, nodes: list[str], outcomes: dict[str, BootOutcome]) -> None:
        command = exporter_start_command(context.playbook.ebpf.programs, sys.executable)
        started = context.runner.run(nodes, command, timeout=ATTACH_TENTHS / 10 + 60)
        for node in nodes:
            result = started[node]
            if result.ok:
                continue
            lines = tuple(result.stderr.strip().splitlines()[-25:])
            why = " | ".join(lines[-4:]) or result.error or f"exit code {result.exit_code}"
            if option := missing_option(lines):
                why += f" (the VM kernel lacks CONFIG_{option}: keep it in nix/kernel-options.json)"
            # Exit 3: the stand-in stopped (the verifier or libbpf refused): the same program on the same kernel
            # is refused again, so the node is not retried; a time-out (4) or a lost connection may be retried.
            outcomes[node] = BootOutcome(
                ok=False, reason=f"the eBPF programs did not load and attach (stand-in for ebpf_exporter): {why}",
                log=lines, retriable=result.exit_code != 3,
            )  # fmt: skip

    def expectation(self, context: DeployContext) -> Expectation:
        if context.kernel is None:
            return Expectation(files=dict(self._files))
        return Expectation(
            files=dict(self._files), kernel_options=True, exporter=True, ebpf_nodes=frozenset(context.ebpf_nodes)
        )

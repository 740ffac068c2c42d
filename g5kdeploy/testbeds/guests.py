"""VM nodes: one QEMU guest per node, booted by virtme-ng on the experiment's kernel, reached over real SSH.

virtme-ng (``vng``) boots a kernel image with the host's root file system shared read-only over 9p, so the
guest runs the host's own OpenSSH ``sshd``, node exporter, Python and the bench binary. Each guest gets:

- user-mode networking isolated from everything but its port forwards (``restrict=on``): the guest's sshd
  (22), node exporter (9100) and eBPF exporter (9435) are forwarded from the node's own loopback address
  (127.0.x.y) on the run's ports, so ``ssh_config``, Prometheus and the remote layer reach it exactly as they
  reach a loopback node;
- its node directory (host keys, sshd config, working directory, logs) writable, everything else read-only;
- ``guest-init.sh`` as the command virtme-ng runs: it starts the node exporter and then becomes sshd, so the
  guest lives as long as QEMU does.

A guest is up when its sshd answers the SSH banner through the forward; one that does not within the boot
deadline fails with the tail of its console log. Guests are stopped by PID: ``vng`` and the QEMU it started.
"""

from __future__ import annotations

import os
import shlex
import shutil
import sys
from dataclasses import dataclass
from pathlib import Path
from typing import Literal

from g5kdeploy.errors import DeadlineExceeded, TestbedError
from g5kdeploy.log import get_logger
from g5kdeploy.payload import STATX_TARGET, STATX_TARGET_TEXT
from g5kdeploy.process import is_running, log_size, spawn_daemon, stop_pid
from g5kdeploy.results import GuestPorts
from g5kdeploy.tools.kernel import BuiltKernel
from g5kdeploy.tools.prometheus import log_tail
from g5kdeploy.waiting import wait_until

log = get_logger(__name__)

GUEST_SSH_PORT = 22
GUEST_NODE_EXPORTER_PORT = 9100
GUEST_EBPF_EXPORTER_PORT = 9435
VNG_MARK = "vng"
INSTALL_HINT = "pip install 'g5kdeploy[vm]' (virtme-ng) and apt-get install qemu-system-x86"
#: Wall seconds for the KVM probe's guest to print its first kernel line.
KVM_PROBE_TIMEOUT = 20.0
Accelerator = Literal["kvm", "tcg"]


@dataclass(frozen=True)
class AcceleratorChoice:
    accelerator: Accelerator
    reason: str


def require_vng() -> Path:
    """The ``vng`` of the agent's environment (beside its Python), else the one on PATH."""
    beside = Path(sys.executable).parent / "vng"
    found = beside if beside.exists() else (Path(which) if (which := shutil.which("vng")) else None)
    if found is None or shutil.which("qemu-system-x86_64") is None:
        raise TestbedError("the VM testbed needs virtme-ng (vng) and qemu-system-x86_64", hint=INSTALL_HINT)
    return found


def choose_accelerator(kernel: BuiltKernel, scratch: Path) -> AcceleratorChoice:
    """KVM when it really runs an ordinary guest, else TCG (QEMU's emulator), with the reason.

    A ``/dev/kvm`` can exist and still not run ordinary guests (a nested PVM one aborts or hangs), so KVM is
    tried only where the CPU has VT-x/AMD-V, and kept only if a probe guest prints its first kernel line in time.
    """
    cpu = Path("/proc/cpuinfo").read_text()
    flags = {flag for line in cpu.splitlines() if line.startswith("flags") for flag in line.split(":", 1)[1].split()}
    if not flags & {"vmx", "svm"}:
        return AcceleratorChoice("tcg", "the CPU shows no vmx or svm flag")
    if not os.access("/dev/kvm", os.R_OK | os.W_OK):
        return AcceleratorChoice("tcg", "/dev/kvm is missing or not writable")
    if Path("/sys/module/kvm_pvm").exists():
        return AcceleratorChoice("tcg", "/dev/kvm is nested PVM, which runs no ordinary guest")
    if _kvm_boots(kernel, scratch):
        return AcceleratorChoice("kvm", "a probe guest booted under KVM")
    return AcceleratorChoice("tcg", f"a probe guest printed nothing under KVM within {KVM_PROBE_TIMEOUT:.0f} s")


def _kvm_boots(kernel: BuiltKernel, scratch: Path) -> bool:
    scratch.mkdir(parents=True, exist_ok=True)
    console = scratch / "kvm-probe.log"
    argv = [
        "qemu-system-x86_64", "-accel", "kvm", "-cpu", "host", "-m", "256", "-nographic", "-no-reboot",
        "-kernel", str(kernel.bzimage), "-append", "console=ttyS0 panic=-1",
    ]  # fmt: skip
    pid = spawn_daemon(argv, log_path=console)

    def verdict() -> Literal["booted", "exited"] | None:
        if "Linux version" in log_tail(console):
            return "booted"
        return None if is_running(pid) else "exited"

    try:
        what = "the KVM probe guest's first kernel line"
        return wait_until(verdict, timeout=KVM_PROBE_TIMEOUT, what=what, interval=0.1) == "booted"
    except DeadlineExceeded:
        return False
    finally:
        stop_pid(pid, expect="qemu-system")


def write_guest_files(node_dir: Path, *, name: str, sshd_config: str, node_exporter_args: list[str]) -> Path:
    """The guest's sshd config (listening inside the guest) and the init script virtme-ng runs; returns it."""
    config = node_dir / "sshd_config.guest"
    config.write_text(sshd_config)
    exporter = shutil.which("prometheus-node-exporter") or "/usr/bin/prometheus-node-exporter"
    script = node_dir / "guest-init.sh"
    target = shlex.quote(STATX_TARGET)
    script.write_text(
        "#!/bin/sh\n"
        f"# The VM node {name}: what virtme-ng runs once the guest is up. Its output is the console log.\n"
        "mkdir -p /run/sshd\n"
        # virtme-ng's guest locks root's password ("!"), and sshd without PAM refuses a locked account even
        # for a key: unlock it (no password) in the guest's own copy of /etc/shadow.
        "sed 's/^root:[^:]*:/root:*:/' /etc/shadow > /run/shadow.g5k && cat /run/shadow.g5k > /etc/shadow\n"
        # The node's own files, as a real node has them on its local disk rather than the host's over 9p (whose
        # every statx is a round trip to the host, a hundred times a local one): its /etc/hostname, and the
        # override's target, which NixOS' tmpfiles rule makes at boot. Removed first, so no host copy lies below.
        f"rm -f /etc/hostname && echo {shlex.quote(name.split('.')[0])} > /etc/hostname\n"
        f"rm -f {target} && printf '%s' {shlex.quote(STATX_TARGET_TEXT)} > {target}\n"
        f"{shlex.join([exporter, *node_exporter_args])} >> {shlex.quote(str(node_dir / 'node-exporter.log'))} 2>&1 &\n"
        "echo g5kdeploy: guest up, starting sshd\n"
        f"exec /usr/sbin/sshd -D -e -f {shlex.quote(str(config))}\n"
    )
    return script


def spawn_guest(
    vng: Path,
    kernel: BuiltKernel,
    node_dir: Path,
    *,
    name: str,
    address: str,
    ports: GuestPorts,
    memory_mib: int,
    accelerator: Accelerator,
    init_script: Path,
) -> int:
    """Start one guest (``vng`` and its QEMU, in a session of their own); returns vng's PID."""
    forwards = ",".join(
        f"hostfwd=tcp:{address}:{host}-:{guest}"
        for host, guest in (
            (ports.ssh, GUEST_SSH_PORT),
            (ports.node_exporter, GUEST_NODE_EXPORTER_PORT),
            (ports.ebpf_exporter, GUEST_EBPF_EXPORTER_PORT),
        )
    )
    argv = [
        str(vng), "--run", str(kernel.bzimage), "--name", name.split(".")[0], "--cpus", "1",
        "--memory", f"{memory_mib}M", "--rwdir", str(node_dir), "--verbose",
        "--append", "virtme.dhcp net.ifnames=0",
        "--qemu-opt=-device", "--qemu-opt=virtio-net-pci,netdev=g5k",
        # restrict=on: the guest reaches nothing but what is forwarded to it (no route to any other address).
        "--qemu-opt=-netdev", f"--qemu-opt=user,id=g5k,restrict=on,{forwards}",
        "--exec", f"sh {shlex.quote(str(init_script))}",
    ]  # fmt: skip
    if accelerator == "tcg":
        argv.insert(3, "--disable-kvm")
    env = dict(os.environ)
    # vng runs its helpers (virtme-ng-init's tools) from its own bin directory.
    env["PATH"] = f"{vng.parent}{os.pathsep}{env.get('PATH', '')}"
    return spawn_daemon(argv, log_path=node_dir / "console.log", env=env)


def console_tail(node_dir: Path, *, offset: int = 0, lines: int = 25) -> str:
    text = log_tail(node_dir / "console.log", offset=offset, size=20_000)
    return "\n".join(text.replace("\r", "").splitlines()[-lines:])


def console_offset(node_dir: Path) -> int:
    return log_size(node_dir / "console.log")


def stop_guests(pids: list[int], *, timeout: float = 20.0) -> None:
    """Stop each guest that is still ours: vng, and the QEMU (and anything else) it started."""
    for pid in pids:
        stop_pid(pid, expect=VNG_MARK, timeout=timeout)

"""The VM testbed: the local testbed's simulator and loopback collector, with QEMU guests as experiment nodes.

Reservation works as on the local testbed (the embedded simulator assigns real Grid'5000 node names). The
playbook's VM roles (default: every role but the collector) boot, one QEMU guest per node, on the
experiment's own kernel: Debian's Linux source with the playbook's ``kernel.patches``, configured with its
``kernel.config`` and ``nix/kernel-options.json``, and built once into the user's cache
(:mod:`g5kdeploy.tools.kernel`), before any job is submitted. The guests run the host's userland (virtme-ng),
are reached over real SSH through port forwards on their own loopback addresses, and the eBPF program really
attaches in them: the bench's ``ebpf: on`` is real here.
"""

from __future__ import annotations

from pathlib import Path

from g5kdeploy.clock import Clock
from g5kdeploy.log import get_logger
from g5kdeploy.playbook import Playbook, Vm
from g5kdeploy.results import LocalTestbedRecord, RunRecord, RunStore
from g5kdeploy.testbeds.guests import choose_accelerator, require_vng
from g5kdeploy.testbeds.local import LocalTestbed
from g5kdeploy.testbeds.loopback import GuestSetup
from g5kdeploy.testbeds.monitoring import node_exporter_flags
from g5kdeploy.tools.kernel import BuiltKernel, OnProgress, debian_source, ensure_kernel

log = get_logger(__name__)


class VmTestbed(LocalTestbed):
    def __init__(self, *, clock: Clock | None = None) -> None:
        super().__init__(clock=clock)
        self._kernel: BuiltKernel | None = None

    def preflight(
        self, playbook: Playbook, *, on_progress: OnProgress | None = None, playbook_path: Path | None = None
    ) -> None:
        """Everything the VM nodes need, checked and built (the kernel, once) before any job exists."""
        super().preflight(playbook, on_progress=on_progress)
        require_vng()
        debian_source()
        if playbook.kernel and playbook.kernel.patches and playbook_path is None:
            # The patches lie next to the playbook: experiment_kernel builds with them once the run knows where.
            return
        self._kernel = ensure_kernel(kernel=playbook.kernel, playbook_path=playbook_path, on_progress=on_progress)

    def experiment_kernel(self, record: RunRecord) -> BuiltKernel | None:
        if self._kernel is None:
            # Another command of the run (g5k deploy, a resume): the same inputs find the same cache entry.
            self._kernel = ensure_kernel(kernel=record.playbook.kernel, playbook_path=Path(record.playbook_path))
        return self._kernel

    def ebpf_nodes(self, record: RunRecord) -> list[str]:
        """The run's nodes that are QEMU guests on the experiment's kernel."""
        playbook = record.playbook
        return sorted({node for role in playbook.vm_roles for node in record.roles.get(role, [])})

    def ebpf_unavailable(self, record: RunRecord) -> str | None:
        if record.ebpf_toggle is None:
            return "no eBPF toggle yet: run g5k deploy first, which loads the program on the VM nodes"
        return None

    def _guests(self, record: RunRecord, store: RunStore) -> GuestSetup | None:
        playbook = record.playbook
        vm = playbook.vm or Vm()
        kernel = self.experiment_kernel(record)
        assert kernel is not None
        local = record.local or LocalTestbedRecord()
        if local.accelerator is None:
            choice = choose_accelerator(kernel, store.directory(record.run_id) / "testbed")
            local.accelerator = f"{choice.accelerator}: {choice.reason}"
            log.info("VM accelerator", accelerator=choice.accelerator, reason=choice.reason)
        local.kernel_dir = str(kernel.directory)
        record.local = local
        store.save(record)
        return GuestSetup(
            names=frozenset(self.ebpf_nodes(record)),
            vng=require_vng(),
            kernel=kernel,
            accelerator="kvm" if local.accelerator.startswith("kvm") else "tcg",
            memory_mib=vm.memory,
            boot_timeout=float(vm.boot_timeout),
            node_exporter_args=tuple(node_exporter_flags()),
        )

"""What a deploy method promises, and what the deploy phase gives it to work with."""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path
from typing import Protocol

from g5kdeploy.clock import Clock
from g5kdeploy.plans import DeployPlan
from g5kdeploy.playbook import Playbook
from g5kdeploy.remote import SshRunner
from g5kdeploy.results import RunRecord, RunStore
from g5kdeploy.testbeds.api import Api
from g5kdeploy.tools.kernel import BuiltKernel

#: The eBPF exporter's systemd unit on NixOS nodes (nix/modules/ebpf.nix); starting it attaches the program.
EXPORTER_UNIT = "prometheus-ebpf-exporter"
EXPORTER_PORT = 9435
NIXOS_EBPF_TOGGLE = {"on": f"systemctl start {EXPORTER_UNIT}", "off": f"systemctl stop {EXPORTER_UNIT}"}


@dataclass
class DeployContext:
    """Everything a method may touch. ``deadline`` is in the API clock's time."""

    record: RunRecord
    store: RunStore
    playbook: Playbook
    runner: SshRunner
    api: Api
    clock: Clock
    workdirs: dict[str, str]
    #: The experiment's kernel when the testbed builds it (VM testbed), and the nodes that run it.
    kernel: BuiltKernel | None = None
    ebpf_nodes: list[str] = field(default_factory=list)

    @property
    def run_dir(self) -> Path:
        return self.store.directory(self.record.run_id)


@dataclass(frozen=True)
class Expectation:
    """What verification checks on a node after the method is done with it."""

    #: The node rebooted: its boot id changed and the run's marker is on its kernel command line.
    rebooted: bool = False
    #: The marker can be checked (kexec passes it; a Kadeploy image's command line is fixed).
    marker: bool = False
    #: /proc/config.gz carries every option of kernel-options.json.
    kernel_options: bool = False
    #: node → expected target of /run/current-system.
    toplevel: dict[str, str] = field(default_factory=dict)
    #: ebpf_exporter answers with our metrics and its program attached.
    exporter: bool = False
    #: remote path (relative to the node's working directory) → sha256.
    files: dict[str, str] = field(default_factory=dict)
    #: The nodes ``kernel_options`` and ``exporter`` are about (None: every node).
    ebpf_nodes: frozenset[str] | None = None


@dataclass(frozen=True)
class BootOutcome:
    ok: bool
    reason: str | None = None
    log: tuple[str, ...] = ()
    #: False when trying again cannot help (the verifier refused the program): the node is not retried.
    retriable: bool = True
    #: The Kadeploy deployment that worked on the node (``site/uid``), where one did.
    deployment: str | None = None


class DeployMethod(Protocol):
    name: str
    #: The method pushes every artifact of the workload (into the working directory's artifacts/).
    pushes_artifacts: bool
    #: Artifacts the deployed system itself provides on PATH (the NixOS closure's statx-bench).
    system_artifacts: tuple[str, ...]
    #: The commands that switch the eBPF program on and off, or None where there is none.
    ebpf_toggle: dict[str, str] | None

    def plan(self, context: DeployContext, nodes: list[str]) -> DeployPlan:
        """Prepare what every node needs (build, cache check) and say what will happen; acts on no node."""
        ...

    def boot(self, context: DeployContext, nodes: list[str], *, deadline: float) -> dict[str, BootOutcome]:
        """Bring ``nodes`` onto the new system, all in parallel; one outcome per node."""
        ...

    def expectation(self, context: DeployContext) -> Expectation: ...

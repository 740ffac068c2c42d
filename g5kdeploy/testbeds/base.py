"""The two testbeds behind one interface: the real Grid'5000 and the local testbed.

Both hand the phases the same :class:`~g5kdeploy.testbeds.api.Api` (python-grid5000 over HTTP) and a clock
in the API's time; the phases never ask which one they have.
"""

from __future__ import annotations

from dataclasses import dataclass
from pathlib import Path
from typing import Protocol

from g5kdeploy.clock import Clock
from g5kdeploy.playbook import Playbook
from g5kdeploy.results import NodeAccess, RunRecord, RunStore
from g5kdeploy.testbeds.api import Api
from g5kdeploy.tools.kernel import BuiltKernel, OnProgress


@dataclass(frozen=True)
class PrometheusEndpoint:
    """Where the collector's Prometheus listens, as seen from the collector node, and where it keeps its TSDB."""

    node: str
    address: str
    port: int
    data_dir: str

    @property
    def url(self) -> str:
        return f"http://{self.address}:{self.port}"


class Testbed(Protocol):
    clock: Clock
    usage_policy: bool

    def preflight(
        self, playbook: Playbook, *, on_progress: OnProgress | None = None, playbook_path: Path | None = None
    ) -> None:
        """Fail now, before any job exists, on what would make the nodes unusable later (keys, sshd), and
        prepare what takes long (the VM testbed's kernel, with the patches next to ``playbook_path``), reporting
        progress."""
        ...

    def job_command(self, playbook: Playbook, walltime: int) -> str:
        """The OAR job's command: it holds the nodes for the walltime (and prepares them if needed)."""
        ...

    def open(self, record: RunRecord, store: RunStore) -> Api:
        """Make the API reachable for ``record`` (starting what the testbed needs) and return it."""
        ...

    def access(self, record: RunRecord, store: RunStore) -> NodeAccess:
        """Make the run's nodes reachable over SSH (starting them, on the local testbed) and say how."""
        ...

    def prometheus(self, record: RunRecord, store: RunStore) -> PrometheusEndpoint:
        """The collector's Prometheus (started here on the local testbed, by NixOS on Grid'5000)."""
        ...

    def experiment_kernel(self, record: RunRecord) -> BuiltKernel | None:
        """The kernel the testbed builds for the experiment's nodes (VM testbed), else None."""
        ...

    def ebpf_nodes(self, record: RunRecord) -> list[str]:
        """The nodes that run that kernel (and so the eBPF program), when the testbed builds one."""
        ...

    def ebpf_unavailable(self, record: RunRecord) -> str | None:
        """Why the eBPF program cannot be switched on here, or None when it can."""
        ...

    def connect(self, record: RunRecord) -> Api | None:
        """The API if it can be reached without starting anything (for ``g5k status``), else None."""
        ...

    def running_daemons(self, record: RunRecord) -> list[int]:
        """The PIDs of processes this testbed started for ``record`` that are still alive (local daemons)."""
        ...

    def close(self, record: RunRecord, store: RunStore) -> None:
        """Stop every process :meth:`open` and :meth:`access` started for ``record``; called by every release."""
        ...

"""Grid'5000 itself: the public API (or whatever ``G5K_API_URL`` names) with the user's credentials."""

from __future__ import annotations

import getpass
import os
from collections.abc import Mapping
from pathlib import Path

from g5kdeploy.clock import Clock, WallClock
from g5kdeploy.credentials import inside_grid5000, resolve_endpoint
from g5kdeploy.errors import CredentialsError
from g5kdeploy.files import atomic_write_text
from g5kdeploy.playbook import Collect, Playbook
from g5kdeploy.results import NodeAccess, RunRecord, RunStore
from g5kdeploy.testbeds.api import Api
from g5kdeploy.testbeds.base import PrometheusEndpoint
from g5kdeploy.testbeds.g5k_ssh import find_key, grid5000_ssh_config, public_key, root_key_command
from g5kdeploy.tools.kernel import BuiltKernel, OnProgress

NIXOS_PROMETHEUS_DATA = "/var/lib/prometheus2/data"
#: nix/modules/collector.nix: where the collector's NixOS Prometheus listens unless the playbook says otherwise.
NIXOS_PROMETHEUS_PORT = 9090


class Grid5000Testbed:
    #: Grid'5000's usage policy applies: long automated runs belong to nights and weekends.
    usage_policy = True

    def __init__(self, *, env: Mapping[str, str] | None = None, clock: Clock | None = None) -> None:
        self._env = env
        self.clock: Clock = clock or WallClock()

    def preflight(
        self,
        playbook: Playbook,
        *,
        on_progress: OnProgress | None = None,  # noqa: ARG002 - nothing long to prepare here
        playbook_path: Path | None = None,  # noqa: ARG002 - nor anything next to the playbook to read
    ) -> None:
        key = find_key(playbook.ssh.key, self._home())
        if playbook.deploy and playbook.deploy.kexec:
            public_key(key)

    def job_command(self, playbook: Playbook, walltime: int) -> str:
        if playbook.deploy and playbook.deploy.kexec:
            return root_key_command(public_key(find_key(playbook.ssh.key, self._home())), walltime)
        return f"sleep {walltime}"

    def _home(self) -> Path:
        env = os.environ if self._env is None else self._env
        return Path(env.get("HOME", str(Path.home())))

    def open(self, record: RunRecord, store: RunStore) -> Api:  # noqa: ARG002 - nothing to start
        endpoint = resolve_endpoint(env=self._env)
        return Api(endpoint)

    def access(self, record: RunRecord, store: RunStore) -> NodeAccess:
        nodes = sorted({node for nodes in record.roles.values() for node in nodes})
        playbook = record.playbook
        endpoint = resolve_endpoint(env=self._env)
        directory = store.directory(record.run_id) / "ssh"
        config = directory / "ssh_config"
        text = grid5000_ssh_config(
            nodes,
            login=endpoint.username or getpass.getuser(),
            key=find_key(playbook.ssh.key, self._home()),
            known_hosts=directory / "known_hosts",
            inside=inside_grid5000(),
        )
        atomic_write_text(config, text)
        # /tmp on a node is wiped when the node is redeployed or rebooted at the end of the job.
        workdir = f"/tmp/g5kdeploy-{record.run_id}"
        record.access = NodeAccess(
            ssh_config=str(config), workdirs=dict.fromkeys(nodes, workdir), known_hosts=str(directory / "known_hosts")
        )
        store.save(record)
        return record.access

    def prometheus(self, record: RunRecord, store: RunStore) -> PrometheusEndpoint:  # noqa: ARG002
        playbook = record.playbook
        collect = playbook.collect or Collect()
        node = record.roles[collect.role][0]
        # nix/modules/collector.nix: the NixOS Prometheus module's state directory.
        return PrometheusEndpoint(
            node=node, address="127.0.0.1", port=collect.port or NIXOS_PROMETHEUS_PORT, data_dir=NIXOS_PROMETHEUS_DATA
        )

    def experiment_kernel(self, record: RunRecord) -> BuiltKernel | None:  # noqa: ARG002 - built by Nix
        return None

    def ebpf_nodes(self, record: RunRecord) -> list[str]:  # noqa: ARG002
        return []

    def ebpf_unavailable(self, record: RunRecord) -> str | None:
        if record.ebpf_toggle is None:
            return "no eBPF toggle yet: run g5k deploy first, which installs the program and its commands"
        return None

    def connect(self, record: RunRecord) -> Api | None:  # noqa: ARG002 - same API for every run
        try:
            return Api(resolve_endpoint(env=self._env), attempts=1)
        except CredentialsError:
            return None

    def running_daemons(self, record: RunRecord) -> list[int]:  # noqa: ARG002 - nothing runs here
        return []

    def close(self, record: RunRecord, store: RunStore) -> None:
        """Nothing of ours runs outside the jobs, which the release phase deletes."""

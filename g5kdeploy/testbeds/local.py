"""The local testbed: the Grid'5000 API simulator, started per run as a daemon on loopback, and one real
sshd per node it assigns.

The simulator keeps its state in the run directory, so every later command of the run (``g5k status``,
``g5k release``, or a rerun after a crash) talks to the same jobs, and a simulator, node or monitoring daemon
found dead is restarted on the same state. The record holds the current URL and every PID, so release stops
them all by PID whatever state the simulator is in.
Its login is the local user and any password: it listens on 127.0.0.1 only and guards nothing.
"""

from __future__ import annotations

import getpass
import sys
from pathlib import Path

from g5kdeploy.clock import Clock, WallClock
from g5kdeploy.credentials import Endpoint
from g5kdeploy.log import get_logger
from g5kdeploy.playbook import Playbook
from g5kdeploy.process import is_running, log_size, spawn_daemon, stop_pid, wait_for_line
from g5kdeploy.results import LocalTestbedRecord, NodeAccess, RunRecord, RunStore
from g5kdeploy.testbeds.api import Api
from g5kdeploy.testbeds.base import PrometheusEndpoint
from g5kdeploy.testbeds.guests import VNG_MARK, stop_guests
from g5kdeploy.testbeds.loopback import SSHD_MARK, GuestSetup, forget_keys, require_sshd, start_nodes, stop_nodes
from g5kdeploy.testbeds.monitoring import EBPF_EXPORTER_PORT, start_monitoring, stop_monitoring
from g5kdeploy.tools.kernel import BuiltKernel, OnProgress

log = get_logger(__name__)
SIMULATOR_MARK = "g5kdeploy"
STARTUP_TIMEOUT = 30.0


class LocalTestbed:
    #: Nobody else uses the local testbed: no day/night policy.
    usage_policy = False

    def __init__(self, *, clock: Clock | None = None) -> None:
        # The simulator runs at speed 1 from the wall clock, so both agree on the time.
        self.clock: Clock = clock or WallClock()

    def preflight(
        self,
        playbook: Playbook,  # noqa: ARG002 - the loopback nodes only need sshd
        *,
        on_progress: OnProgress | None = None,  # noqa: ARG002 - nothing long to prepare here
        playbook_path: Path | None = None,  # noqa: ARG002 - nor anything next to the playbook to read
    ) -> None:
        require_sshd()

    def job_command(self, playbook: Playbook, walltime: int) -> str:  # noqa: ARG002 - nothing to prepare
        return f"sleep {walltime}"

    def open(self, record: RunRecord, store: RunStore) -> Api:
        api = self.connect(record)
        if api is None:
            self._start_simulator(record, store)
            api = self.connect(record)
        assert api is not None
        return api

    def connect(self, record: RunRecord) -> Api | None:
        local = record.local
        if not (local and local.simulator_pid and local.simulator_url):
            return None
        if not is_running(local.simulator_pid, expect=SIMULATOR_MARK):
            return None
        return Api(
            Endpoint(url=local.simulator_url, username=getpass.getuser() or "g5k", password="local"),
            timeout=30.0,
            attempts=3,
            retry_wait_max=2.0,
            submit_settle=0.5,
        )

    def _start_simulator(self, record: RunRecord, store: RunStore) -> None:
        directory = store.directory(record.run_id) / "testbed"
        state = directory / "simulator-state.json"
        log_path = directory / "simulator.log"
        # The simulator's own entry point: it loads none of the agent (whose execo forks a helper process).
        argv = [sys.executable, "-m", "g5kdeploy.simulator", "--port", "0", "--state", str(state)]
        # The log is appended to by every simulator of the run: this one's URL is in what it writes.
        offset = log_size(log_path)
        pid = spawn_daemon(argv, log_path=log_path)
        local = record.local or LocalTestbedRecord()
        restarted = local.simulator_pid is not None
        local.simulator_pid, local.simulator_url, local.simulator_state = pid, None, str(state)
        record.local = local
        store.save(record)
        url = wait_for_line(log_path, "http://", pid=pid, timeout=STARTUP_TIMEOUT, offset=offset)
        local.simulator_url = url
        store.save(record)
        log.info("simulator restarted" if restarted else "simulator started", url=url, pid=pid)

    def access(self, record: RunRecord, store: RunStore) -> NodeAccess:
        """One real sshd per node, under the node's Grid'5000 name; restarted if they were stopped."""
        names = sorted({node for nodes in record.roles.values() for node in nodes})
        local = record.local or LocalTestbedRecord()
        if record.access and self._nodes_alive(local, names):
            self._ensure_monitoring(record, store)
            return record.access
        stop_guests(list(local.guest_pids.values()))
        stop_nodes(local.sshd_pids.values())
        started = start_nodes(self._nodes_dir(record, store), names, guests=self._guests(record, store))
        local.sshd_pids = {node.name: node.pid for node in started.nodes if not node.guest}
        local.guest_pids = {node.name: node.pid for node in started.nodes if node.guest}
        local.addresses = {node.name: node.address for node in started.nodes}
        local.guest_ports = started.guest_ports
        record.local = local
        record.access = NodeAccess(
            ssh_config=str(started.ssh_config),
            workdirs={node.name: str(node.workdir) for node in started.nodes},
            known_hosts=str(started.known_hosts),
        )
        store.save(record)
        log.info("local nodes up", nodes=len(started.nodes), ssh_config=str(started.ssh_config))
        self._ensure_monitoring(record, store)
        return record.access

    @staticmethod
    def _nodes_alive(local: LocalTestbedRecord, names: list[str]) -> bool:
        if sorted([*local.sshd_pids, *local.guest_pids]) != names:
            return False
        return all(is_running(pid, expect=SSHD_MARK) for pid in local.sshd_pids.values()) and all(
            is_running(pid, expect=VNG_MARK) for pid in local.guest_pids.values()
        )

    def _guests(self, record: RunRecord, store: RunStore) -> GuestSetup | None:  # noqa: ARG002 - none here
        """Which nodes boot as QEMU guests: none on the loopback testbed."""
        return None

    def prometheus(self, record: RunRecord, store: RunStore) -> PrometheusEndpoint:
        """A real Prometheus on the collector's address; :meth:`access` starts it with the nodes."""
        self.access(record, store)
        endpoint = self._endpoint(record, store)
        assert endpoint is not None, "the playbook has no collect section"
        return endpoint

    def _endpoint(self, record: RunRecord, store: RunStore) -> PrometheusEndpoint | None:
        collect = record.playbook.collect
        local = record.local
        if collect is None or local is None or local.prometheus_port is None:
            return None
        collector = record.roles[collect.role][0]
        return PrometheusEndpoint(
            collector,
            local.addresses[collector],
            local.prometheus_port,
            str(self._monitoring_dir(record, store) / "prometheus-data"),
        )

    def _ensure_monitoring(self, record: RunRecord, store: RunStore) -> None:
        """Prometheus on the collector and a node exporter on every node, so the whole run is scraped."""
        collect = record.playbook.collect
        local = record.local
        if collect is None or local is None:
            return
        if local.monitoring_pids and all(is_running(pid) for pid in local.monitoring_pids):
            return
        stop_monitoring(local.monitoring_pids)
        local.monitoring_pids = []
        collector = record.roles[collect.role][0]
        guests = sorted(local.guest_pids)
        others = [
            (name, address)
            for name, address in sorted(local.addresses.items())
            if name != collector and name not in local.guest_pids
        ]
        guest_nodes = [(name, local.addresses[name]) for name in guests]
        ports = local.guest_ports
        # A restart keeps the ports the run had, so what was recorded (and scraped) stays valid.
        started = start_monitoring(
            self._monitoring_dir(record, store),
            collector=(collector, local.addresses[collector]),
            exporters=others,
            port=local.prometheus_port or collect.port,
            exporter_port=ports.node_exporter if ports else local.exporter_port,
            remote_exporters=guest_nodes,
            ebpf_targets=guest_nodes,
            ebpf_port=ports.ebpf_exporter if ports else EBPF_EXPORTER_PORT,
        )
        local.monitoring_pids = started.pids
        local.prometheus_port, local.exporter_port = started.port, started.exporter_port
        store.save(record)
        log.info("local monitoring up", prometheus=started.prometheus_url, exporters=len(started.exporter_pids))

    @staticmethod
    def _monitoring_dir(record: RunRecord, store: RunStore) -> Path:
        return store.directory(record.run_id) / "testbed" / "monitoring"

    @staticmethod
    def _nodes_dir(record: RunRecord, store: RunStore) -> Path:
        return store.directory(record.run_id) / "testbed" / "nodes"

    def experiment_kernel(self, record: RunRecord) -> BuiltKernel | None:  # noqa: ARG002 - the host's
        return None

    def ebpf_nodes(self, record: RunRecord) -> list[str]:  # noqa: ARG002
        return []

    def ebpf_unavailable(self, record: RunRecord) -> str | None:  # noqa: ARG002 - the same for every run
        return "the local testbed runs the host's kernel: no custom kernel, no kprobe override"

    def close(self, record: RunRecord, store: RunStore) -> None:
        """Stop every daemon of the run by PID (whichever are still alive) and wait until each has exited."""
        self.stop_nodes(record, store)
        local = record.local
        if local and local.simulator_pid:
            if stop_pid(local.simulator_pid, expect=SIMULATOR_MARK):
                log.info("simulator stopped", pid=local.simulator_pid)
            local.simulator_pid = None
            store.save(record)

    def stop_nodes(self, record: RunRecord, store: RunStore) -> None:
        """Stop the run's monitoring, guests and sshd nodes, whatever state the simulator and the jobs are in."""
        local = record.local
        if local and local.monitoring_pids:
            stop_monitoring(local.monitoring_pids)
            local.monitoring_pids = []
            store.save(record)
        if local and local.guest_pids:
            stop_guests(list(local.guest_pids.values()))
            log.info("VM nodes stopped", nodes=len(local.guest_pids))
            local.guest_pids = {}
            store.save(record)
        if local and local.sshd_pids:
            stop_nodes(local.sshd_pids.values())
            log.info("local nodes stopped", nodes=len(local.sshd_pids))
            local.sshd_pids = {}
            store.save(record)
        forget_keys(self._nodes_dir(record, store))

    def running_daemons(self, record: RunRecord) -> list[int]:
        """The PIDs of this run's daemons that are still alive."""
        local = record.local
        if local is None:
            return []
        pids = [*local.sshd_pids.values(), *local.guest_pids.values(), *local.monitoring_pids]
        if local.simulator_pid:
            pids.append(local.simulator_pid)
        return [pid for pid in pids if is_running(pid)]

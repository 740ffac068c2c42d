"""The local testbed: the Grid'5000 API simulator, started per run as a daemon on loopback, and one real
sshd per node it assigns.

The simulator keeps its state in the run directory, so every later command of the run (``g5k status``,
``g5k release``, or a rerun after a crash) talks to the same jobs; it is stopped by PID at release.
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
from g5kdeploy.process import is_running, spawn_daemon, stop_pid, wait_for_line
from g5kdeploy.results import LocalTestbedRecord, NodeAccess, RunRecord, RunStore
from g5kdeploy.testbeds.api import Api
from g5kdeploy.testbeds.base import PrometheusEndpoint
from g5kdeploy.testbeds.loopback import forget_keys, require_sshd, start_nodes, stop_nodes
from g5kdeploy.testbeds.monitoring import start_monitoring, stop_monitoring

log = get_logger(__name__)
SIMULATOR_MARK = "g5kdeploy"
STARTUP_TIMEOUT = 30.0


class LocalTestbed:
    #: Nobody else uses the local testbed: no day/night policy.
    usage_policy = False

    def __init__(self, *, clock: Clock | None = None) -> None:
        # The simulator runs at speed 1 from the wall clock, so both agree on the time.
        self.clock: Clock = clock or WallClock()

    def preflight(self, playbook: Playbook) -> None:  # noqa: ARG002 - every local run needs the same
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
        argv = [sys.executable, "-m", "g5kdeploy", "sim", "serve", "--port", "0", "--state", str(state)]
        pid = spawn_daemon(argv, log_path=log_path)
        record.local = LocalTestbedRecord(simulator_pid=pid, simulator_state=str(state))
        store.save(record)
        url = wait_for_line(log_path, "http://", pid=pid, timeout=STARTUP_TIMEOUT)
        record.local.simulator_url = url
        store.save(record)
        log.info("simulator started", url=url, pid=pid)

    def access(self, record: RunRecord, store: RunStore) -> NodeAccess:
        """One real sshd per node, under the node's Grid'5000 name; restarted if they were stopped."""
        names = sorted({node for nodes in record.roles.values() for node in nodes})
        local = record.local or LocalTestbedRecord()
        pids = local.sshd_pids
        if record.access and sorted(pids) == names and all(is_running(pid, expect="sshd") for pid in pids.values()):
            self._ensure_monitoring(record, store)
            return record.access
        if pids:
            stop_nodes(pids.values())
        started = start_nodes(self._nodes_dir(record, store), names)
        local.sshd_pids = {node.name: node.pid for node in started.nodes}
        local.addresses = {node.name: node.address for node in started.nodes}
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

    def prometheus(self, record: RunRecord, store: RunStore) -> PrometheusEndpoint:
        """A real Prometheus on the collector's address; :meth:`access` starts it with the nodes."""
        self.access(record, store)
        endpoint = self._endpoint(record, store)
        assert endpoint is not None, "the playbook has no collect section"
        return endpoint

    def _endpoint(self, record: RunRecord, store: RunStore) -> PrometheusEndpoint | None:
        collect = Playbook.model_validate(record.playbook).collect
        if collect is None or record.local is None:
            return None
        collector = record.roles[collect.role][0]
        directory = store.directory(record.run_id) / "testbed" / "monitoring"
        address = record.local.addresses[collector]
        return PrometheusEndpoint(collector, address, collect.port, str(directory / "prometheus-data"))

    def _ensure_monitoring(self, record: RunRecord, store: RunStore) -> None:
        """Prometheus on the collector and a node exporter on every node, so the whole run is scraped."""
        endpoint = self._endpoint(record, store)
        local = record.local
        if endpoint is None or local is None:
            return
        if local.monitoring_pids and all(is_running(pid) for pid in local.monitoring_pids):
            return
        stop_monitoring(local.monitoring_pids)
        others = [(name, address) for name, address in sorted(local.addresses.items()) if name != endpoint.node]
        started = start_monitoring(
            Path(endpoint.data_dir).parent, collector=(endpoint.node, endpoint.address), exporters=others,
            port=endpoint.port,
        )  # fmt: skip
        local.monitoring_pids = [started.prometheus_pid, *started.exporter_pids.values()]
        store.save(record)
        log.info("local monitoring up", prometheus=started.prometheus_url, exporters=len(started.exporter_pids))

    @staticmethod
    def _nodes_dir(record: RunRecord, store: RunStore) -> Path:
        return store.directory(record.run_id) / "testbed" / "nodes"

    def ebpf_unavailable(self, record: RunRecord) -> str | None:  # noqa: ARG002 - the same for every run
        return "the local testbed runs the host's kernel: no custom kernel, no kprobe override"

    def close(self, record: RunRecord, store: RunStore) -> None:
        if record.local and record.local.monitoring_pids:
            stop_monitoring(record.local.monitoring_pids)
            record.local.monitoring_pids = []
            store.save(record)
        if record.local and record.local.sshd_pids:
            stop_nodes(record.local.sshd_pids.values())
            log.info("local nodes stopped", nodes=len(record.local.sshd_pids))
            record.local.sshd_pids = {}
            store.save(record)
        forget_keys(self._nodes_dir(record, store))
        if record.local and record.local.simulator_pid:
            if stop_pid(record.local.simulator_pid, expect=SIMULATOR_MARK):
                log.info("simulator stopped", pid=record.local.simulator_pid)
            record.local.simulator_pid = None
            store.save(record)

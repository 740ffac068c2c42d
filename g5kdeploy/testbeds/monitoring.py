"""The local testbed's monitoring: real node exporters and one Prometheus, each on its node's loopback address.

Every node (the collector included) gets one ``prometheus-node-exporter`` on ``<address>:<exporter_port>``; the
collector gets a Prometheus on ``<collector address>:<port>`` with the admin API (for snapshots), scraping job
``node`` (every exporter, labelled ``node=<name>``) and, when asked, job ``ebpf`` (ebpf_exporter, port 9435).
All of them are started detached and stopped by PID, like the sshd nodes; files live in ``directory``::

    prometheus.yml  prometheus.log  prometheus-data/  node-exporter-<node>.log
"""

from __future__ import annotations

import ipaddress
import time
from collections.abc import Iterable, Sequence
from dataclasses import dataclass
from pathlib import Path

from g5kdeploy.errors import TestbedError
from g5kdeploy.log import get_logger
from g5kdeploy.process import port_free, spawn_daemon
from g5kdeploy.results import atomic_write_text
from g5kdeploy.tools.prometheus import (
    PortTakenError,
    prometheus_config,
    require_binary,
    stop_program,
    wait_http_ready,
)

log = get_logger(__name__)

EBPF_EXPORTER_PORT = 9435
MONITORING_PROGRAMS = frozenset({"prometheus", "prometheus-node-exporter", "node_exporter"})
#: Cheap collectors that work unprivileged in a container; the defaults include slow or noisy ones.
NODE_EXPORTER_COLLECTORS = ("cpu", "meminfo", "loadavg", "stat")


@dataclass(frozen=True)
class Monitoring:
    prometheus_pid: int
    prometheus_url: str
    data_dir: Path
    exporter_pids: dict[str, int]  # node name -> pid

    @property
    def pids(self) -> list[int]:
        return [self.prometheus_pid, *self.exporter_pids.values()]


def start_monitoring(
    directory: Path,
    *,
    collector: tuple[str, str],
    exporters: Sequence[tuple[str, str]],
    port: int = 9090,
    exporter_port: int = 9100,
    scrape_interval: str = "1s",
    timeout: float = 30.0,
    ebpf_targets: Sequence[tuple[str, str]] = (),
    ebpf_port: int = EBPF_EXPORTER_PORT,
    search_path: str | None = None,
) -> Monitoring:
    """Start the exporters and the collector's Prometheus; return once all answer, within ``timeout`` seconds.

    ``collector``, ``exporters`` and ``ebpf_targets`` are (node name, loopback address). If any part fails to
    start, the parts already started are stopped and TestbedError carries the failing part's log tail.
    """
    prometheus = require_binary("prometheus", search_path=search_path)
    node_exporter = require_binary("prometheus-node-exporter", search_path=search_path)
    deadline = time.monotonic() + timeout
    directory = directory.resolve()
    nodes = _nodes(collector, exporters)
    for name, address in [*nodes, *ebpf_targets]:
        _check_loopback(name, address)
    _check_ports([(address, exporter_port) for _, address in nodes] + [(collector[1], port)])

    directory.mkdir(parents=True, exist_ok=True)
    data_dir = directory / "prometheus-data"
    config_path = directory / "prometheus.yml"
    jobs = {"node": [(f"{address}:{exporter_port}", name) for name, address in nodes]}
    if ebpf_targets:
        jobs["ebpf"] = [(f"{address}:{ebpf_port}", name) for name, address in ebpf_targets]
    atomic_write_text(config_path, prometheus_config(jobs, scrape_interval=scrape_interval))

    started: list[int] = []
    exporter_pids: dict[str, int] = {}
    try:
        waits = []
        for name, address in nodes:
            log_path = directory / f"node-exporter-{name}.log"
            offset = _size(log_path)
            argv = [
                str(node_exporter),
                f"--web.listen-address={address}:{exporter_port}",
                "--collector.disable-defaults",
                *(f"--collector.{collector_name}" for collector_name in NODE_EXPORTER_COLLECTORS),
                "--web.disable-exporter-metrics",
            ]
            pid = spawn_daemon(argv, log_path=log_path)
            started.append(pid)
            exporter_pids[name] = pid
            waits.append(
                (f"http://{address}:{exporter_port}/metrics", pid, log_path, offset, f"node exporter of {name}")
            )

        log_path = directory / "prometheus.log"
        offset = _size(log_path)
        argv = [
            str(prometheus),
            f"--config.file={config_path}",
            f"--storage.tsdb.path={data_dir}",
            f"--web.listen-address={collector[1]}:{port}",
            "--web.enable-admin-api",
        ]
        prometheus_pid = spawn_daemon(argv, log_path=log_path)
        started.append(prometheus_pid)
        url = f"http://{collector[1]}:{port}"
        waits.append((f"{url}/-/ready", prometheus_pid, log_path, offset, f"Prometheus of {collector[0]}"))

        for ready_url, pid, path, start, what in waits:
            try:
                wait_http_ready(ready_url, pid=pid, log_path=path, deadline=deadline, what=what, log_offset=start)
            except PortTakenError as error:
                raise TestbedError(
                    f"{what}: {ready_url.split('/')[2]} is taken by another program; {error}",
                    hint="choose other ports (port, exporter_port) or stop what holds them",
                ) from None
    except BaseException:
        stop_monitoring(started)
        raise
    log.info("monitoring started", prometheus=url, exporters=len(exporter_pids), directory=str(directory))
    return Monitoring(prometheus_pid=prometheus_pid, prometheus_url=url, data_dir=data_dir, exporter_pids=exporter_pids)


def stop_monitoring(pids: Iterable[int], *, timeout: float = 10.0) -> None:
    """Stop each PID that is still a Prometheus or a node exporter; anything else is left alone."""
    for pid in pids:
        stop_program(pid, MONITORING_PROGRAMS, timeout=timeout)


def _nodes(collector: tuple[str, str], exporters: Sequence[tuple[str, str]]) -> list[tuple[str, str]]:
    """The collector then the exporters, each node once; a name given twice with two addresses is an error."""
    nodes: dict[str, str] = {}
    for name, address in [collector, *exporters]:
        if nodes.setdefault(name, address) != address:
            raise TestbedError(f"node {name} given with two addresses: {nodes[name]} and {address}")
    addresses = list(nodes.values())
    if len(set(addresses)) != len(addresses):
        raise TestbedError(f"two nodes share an address: {sorted(nodes.items())}")
    return list(nodes.items())


def _check_loopback(name: str, address: str) -> None:
    try:
        loopback = ipaddress.IPv4Address(address).is_loopback
    except ValueError:
        loopback = False
    if not loopback:
        raise TestbedError(f"node {name}: {address!r} is not a loopback IPv4 address (127.0.0.0/8)")


def _check_ports(endpoints: Sequence[tuple[str, int]]) -> None:
    if len(set(endpoints)) != len(endpoints):
        raise TestbedError("Prometheus and the collector's node exporter cannot share a port")
    taken = [f"{address}:{port}" for address, port in endpoints if not port_free(address, port)]
    if taken:
        raise TestbedError(
            f"already taken by another program: {', '.join(taken)}",
            hint="choose other ports (port, exporter_port) or stop what holds them",
        )


def _size(path: Path) -> int:
    return path.stat().st_size if path.exists() else 0

"""The local testbed's monitoring: real node exporters and one Prometheus, each on its node's loopback address.

Every node (the collector included) gets one ``prometheus-node-exporter`` on ``<address>:<exporter_port>``; the
collector gets a Prometheus on ``<collector address>:<port>`` (both ports picked free per run unless given) with
the admin API (for snapshots), scraping job
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

from g5kdeploy.errors import DeadlineExceeded, TestbedError
from g5kdeploy.files import atomic_write_text
from g5kdeploy.log import get_logger
from g5kdeploy.process import free_ports, log_size, port_free, spawn_daemon
from g5kdeploy.tools.prometheus import (
    PortTakenError,
    PrometheusClient,
    prometheus_config,
    require_binary,
    stop_program,
    wait_http_ready,
)

log = get_logger(__name__)

EBPF_EXPORTER_PORT = 9435
PORT_ATTEMPTS = 3
MONITORING_PROGRAMS = frozenset({"prometheus", "prometheus-node-exporter", "node_exporter"})
#: Cheap collectors that work unprivileged in a container; the defaults include slow or noisy ones.
NODE_EXPORTER_COLLECTORS = ("cpu", "meminfo", "loadavg", "stat")


@dataclass(frozen=True)
class Monitoring:
    prometheus_pid: int
    prometheus_url: str
    data_dir: Path
    exporter_pids: dict[str, int]  # node name -> pid
    port: int
    exporter_port: int

    @property
    def pids(self) -> list[int]:
        return [self.prometheus_pid, *self.exporter_pids.values()]


def start_monitoring(
    directory: Path,
    *,
    collector: tuple[str, str],
    exporters: Sequence[tuple[str, str]],
    port: int | None = None,
    exporter_port: int | None = None,
    scrape_interval: str = "1s",
    timeout: float = 30.0,
    ebpf_targets: Sequence[tuple[str, str]] = (),
    ebpf_port: int = EBPF_EXPORTER_PORT,
    remote_exporters: Sequence[tuple[str, str]] = (),
    search_path: str | None = None,
) -> Monitoring:
    """Start the exporters and the collector's Prometheus; return once every target has been scraped.

    ``collector``, ``exporters`` and ``ebpf_targets`` are (node name, loopback address); ``remote_exporters``
    are nodes whose node exporter runs elsewhere (in a VM guest, forwarded to ``exporter_port``): scraped like
    the others, not started here. The eBPF exporters come and go with the experiment, so "every target
    scraped" is about the node exporters. A port left None is
    picked free (the exporters share one, free on every node's address), so several runs coexist; a port given
    is used or refused. "Started" means each daemon answers from its own PID's socket (not another run's on the
    same address) and Prometheus has scraped every target successfully once, all within ``timeout`` seconds.
    If any part fails, the parts already started are stopped and TestbedError carries the failing part's log.
    """
    prometheus = require_binary("prometheus", search_path=search_path)
    node_exporter = require_binary("prometheus-node-exporter", search_path=search_path)
    deadline = time.monotonic() + timeout
    directory = directory.resolve()
    nodes = _nodes(collector, exporters)
    for name, address in [*nodes, *ebpf_targets, *remote_exporters]:
        _check_loopback(name, address)
    addresses = [address for _, address in nodes]
    if port is not None or exporter_port is not None:
        _check_ports(
            [(address, exporter_port) for address in addresses if exporter_port is not None]
            + ([(collector[1], port)] if port is not None else [])
        )
    directory.mkdir(parents=True, exist_ok=True)
    for attempt in range(1, PORT_ATTEMPTS + 1):
        chosen_port = port or free_ports([collector[1]], avoid={exporter_port} if exporter_port else set())[0]
        # The exporters share one port, free on every address, as on real nodes.
        chosen_exporter_port = exporter_port or free_ports(addresses, avoid={chosen_port})[0]
        try:
            return _start(
                directory, prometheus, node_exporter, nodes, remote_exporters, ebpf_targets, collector,
                port=chosen_port, exporter_port=chosen_exporter_port, ebpf_port=ebpf_port,
                scrape_interval=scrape_interval, deadline=deadline,
            )  # fmt: skip
        except PortTakenError as error:
            # Another program took a port between our check and the daemon's bind: pick again if we may.
            if (port is not None and exporter_port is not None) or attempt == PORT_ATTEMPTS:
                raise TestbedError(
                    f"{error}", hint="choose other ports (port, exporter_port) or stop what holds them"
                ) from None
    raise AssertionError("unreachable")


def _start(
    directory: Path,
    prometheus: Path,
    node_exporter: Path,
    nodes: Sequence[tuple[str, str]],
    remote_exporters: Sequence[tuple[str, str]],
    ebpf_targets: Sequence[tuple[str, str]],
    collector: tuple[str, str],
    *,
    port: int,
    exporter_port: int,
    ebpf_port: int,
    scrape_interval: str,
    deadline: float,
) -> Monitoring:
    data_dir = directory / "prometheus-data"
    config_path = directory / "prometheus.yml"
    jobs = {"node": [(f"{address}:{exporter_port}", name) for name, address in [*nodes, *remote_exporters]]}
    if ebpf_targets:
        jobs["ebpf"] = [(f"{address}:{ebpf_port}", name) for name, address in ebpf_targets]
    atomic_write_text(config_path, prometheus_config(jobs, scrape_interval=scrape_interval))

    started: list[int] = []
    exporter_pids: dict[str, int] = {}
    try:
        waits = []
        for name, address in nodes:
            log_path = directory / f"node-exporter-{name}.log"
            offset = log_size(log_path)
            argv = [str(node_exporter), f"--web.listen-address={address}:{exporter_port}", *node_exporter_flags()]
            pid = spawn_daemon(argv, log_path=log_path)
            started.append(pid)
            exporter_pids[name] = pid
            waits.append((address, exporter_port, "/metrics", pid, log_path, offset, f"node exporter of {name}"))

        log_path = directory / "prometheus.log"
        offset = log_size(log_path)
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
        what = f"Prometheus of {collector[0]}"
        waits.append((collector[1], port, "/-/ready", prometheus_pid, log_path, offset, what))

        for address, listen_port, path, pid, log_file, start, part in waits:
            wait_http_ready(
                f"http://{address}:{listen_port}{path}",
                pid=pid,
                log_path=log_file,
                deadline=deadline,
                what=part,
                log_offset=start,
                owned=(address, listen_port),
            )
        with PrometheusClient(url) as client:
            client.wait_scraped(after=0.0, deadline_s=max(0.0, deadline - time.monotonic()), jobs={"node"})
    except DeadlineExceeded as error:
        stop_monitoring(started)
        raise TestbedError(f"monitoring did not come up: {error}") from None
    except BaseException:
        stop_monitoring(started)
        raise
    log.info("monitoring started", prometheus=url, exporters=len(exporter_pids), directory=str(directory))
    return Monitoring(
        prometheus_pid=prometheus_pid,
        prometheus_url=url,
        data_dir=data_dir,
        exporter_pids=exporter_pids,
        port=port,
        exporter_port=exporter_port,
    )


def node_exporter_flags() -> list[str]:
    """The node exporter's collectors and options, the same wherever it runs (host or VM guest)."""
    return [
        "--collector.disable-defaults",
        *(f"--collector.{collector_name}" for collector_name in NODE_EXPORTER_COLLECTORS),
        "--web.disable-exporter-metrics",
    ]


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

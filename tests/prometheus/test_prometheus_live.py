"""Real node exporters and Prometheus on 127.0.9.x: scrape, snapshot, replay a copy, query, export, stop.

One monitoring stack serves the whole module (Prometheus applies new targets only every ~5 s, so the first
scrape is that far away); everything polls with deadlines instead of sleeping.
"""

from __future__ import annotations

import csv
import shutil
import socket
import subprocess
import sys
import time
from dataclasses import dataclass
from pathlib import Path

import pytest

from g5kdeploy import errors
from g5kdeploy.process import free_ports, is_running, port_free
from g5kdeploy.testbeds.monitoring import Monitoring, start_monitoring, stop_monitoring
from g5kdeploy.tools.prometheus import (
    PrometheusClient,
    PrometheusError,
    ServedSnapshot,
    Target,
    serve_snapshot,
    snapshot_tree_time_range,
    stop_served,
    wait_http_ready,
    write_csv,
)

COLLECTOR = ("collector-1", "127.0.9.2")
EXPORTERS = [("exporter-1", "127.0.9.3"), ("exporter-2", "127.0.9.4")]
NODES = {name for name, _ in [COLLECTOR, *EXPORTERS]}
ADDRESSES = [address for _, address in [COLLECTOR, *EXPORTERS]]

pytestmark = pytest.mark.skipif(
    not Path("/usr/bin/prometheus").exists() or not Path("/usr/bin/prometheus-node-exporter").exists(),
    reason="apt-get install prometheus prometheus-node-exporter",
)


def _poll(check, *, timeout: float, what: str):
    deadline = time.monotonic() + timeout
    while True:
        result = check()
        if result:
            return result
        if time.monotonic() > deadline:
            raise AssertionError(f"{what}: not within {timeout} s")
        time.sleep(0.1)


@dataclass
class Stack:
    monitoring: Monitoring
    client: PrometheusClient
    before_snapshot: float
    snapshot_name: str
    copy: Path
    copy_files: dict[str, int]
    served: ServedSnapshot
    replay: PrometheusClient
    targets_at_start: list[Target]


def _tree(directory: Path) -> dict[str, int]:
    return {str(path.relative_to(directory)): path.stat().st_size for path in sorted(directory.rglob("*"))}


@pytest.fixture(scope="module")
def stack(tmp_path_factory):
    directory = tmp_path_factory.mktemp("monitoring")
    port, exporter_port = free_ports(ADDRESSES, 2)
    monitoring = start_monitoring(
        directory,
        collector=COLLECTOR,
        exporters=EXPORTERS,
        port=port,
        exporter_port=exporter_port,
        scrape_interval="500ms",
        timeout=20,
    )
    served = None
    try:
        client = PrometheusClient(monitoring.prometheus_url, timeout=10)
        targets_at_start = client.targets()

        def all_up_with_samples():
            now = time.time()
            up = client.query("up", now)
            counts = client.query("count_over_time(up[1m])", now)
            return (
                {entry["metric"]["node"] for entry in up if entry["value"][1] == "1"} == NODES
                and len(counts) == 3
                and all(int(entry["value"][1]) >= 3 for entry in counts)
            )

        _poll(all_up_with_samples, timeout=20, what="3 targets up with 3 samples each")
        before = time.time()
        name = client.snapshot()
        original = monitoring.data_dir / "snapshots" / name
        copy = directory / "fetched" / name
        shutil.copytree(original, copy)
        copy_files = _tree(copy)
        served = serve_snapshot(copy, directory / "replay", timeout=20)
        yield Stack(
            monitoring,
            client,
            before,
            name,
            copy,
            copy_files,
            served,
            PrometheusClient(served.url, timeout=30),
            targets_at_start,
        )
    finally:
        if served is not None:
            stop_served(served.pid)
        stop_monitoring(monitoring.pids)


def test_monitoring_is_started_only_once_every_target_was_scraped(stack):
    assert {target.name for target in stack.targets_at_start} == NODES
    assert all(target.health == "up" and target.last_scrape for target in stack.targets_at_start)


def test_a_readiness_answer_from_another_process_does_not_pass_for_ours(tmp_path):
    address = "127.0.9.50"
    port = free_ports([address])[0]
    other = subprocess.Popen(
        [sys.executable, "-m", "http.server", "--bind", address, str(port)],
        cwd=tmp_path,
        stdout=subprocess.DEVNULL,
        stderr=subprocess.DEVNULL,
    )
    ours = subprocess.Popen(["sleep", "30"])
    try:
        _poll(lambda: not port_free(address, port), timeout=10, what="the other server listening")
        with pytest.raises(errors.DeadlineExceeded, match=r"waiting for ours \(pid \d+\) to be ready at http"):
            wait_http_ready(
                f"http://{address}:{port}/",
                pid=ours.pid,
                log_path=tmp_path / "none.log",
                deadline=time.monotonic() + 2,
                what="ours",
                owned=(address, port),
            )
        # The same answer, from the process that holds the port, is ready at once.
        wait_http_ready(
            f"http://{address}:{port}/",
            pid=other.pid,
            log_path=tmp_path / "none.log",
            deadline=time.monotonic() + 5,
            what="theirs",
            owned=(address, port),
        )
    finally:
        for process in (other, ours):
            process.kill()
            process.wait()


def test_monitoring_scrapes_every_node(stack):
    up = stack.client.query("up", time.time())
    assert {(entry["metric"]["node"], entry["metric"]["job"]) for entry in up} == {(n, "node") for n in NODES}
    assert set(stack.client.label_values("node")) == NODES
    assert "node_load1" in stack.client.label_values("__name__")
    assert set(stack.monitoring.exporter_pids) == NODES
    assert all(is_running(pid) for pid in stack.monitoring.pids)


def test_replayed_snapshot_holds_the_samples_from_before_it(stack):
    assert stack.served.data_dir != stack.copy
    # The replay instance worked on its own copy: the one it was given is unchanged.
    assert _tree(stack.copy) == stack.copy_files
    up = stack.replay.query("up", stack.before_snapshot)
    assert {entry["metric"]["node"]: entry["value"][1] for entry in up} == dict.fromkeys(NODES, "1")
    counts = stack.replay.query("count_over_time(up[1m])", stack.before_snapshot)
    assert len(counts) == 3
    assert all(int(entry["value"][1]) >= 3 for entry in counts)
    low, high = snapshot_tree_time_range(stack.served.data_dir)
    assert low < stack.before_snapshot < high + 1
    # Scraping nothing: no sample newer than the snapshot appears.
    assert stack.replay.query("up", time.time() + 600) == []


def test_query_range_in_chunks_returns_every_point_once_in_order(stack, tmp_path):
    low, high = snapshot_tree_time_range(stack.served.data_dir)
    # 30 s at 1 ms = 30,001 points per series, 3 chunks; past the last sample the 5 min lookback still answers.
    series = stack.replay.query_range("up", high, high + 30, 0.001)
    assert {one.labels["node"] for one in series} == NODES
    expected = [round(high * 1000) + i for i in range(30_001)]
    for one in series:
        assert [round(t * 1000) for t, _ in one.points] == expected
        assert {value for _, value in one.points} == {1.0}
    # Over real data (and before it), other chunk borders give exactly the same answer.
    window = (low - 1, low + 25)
    reference = stack.replay.query_range("node_load1", *window, 0.001)
    assert len(reference) == 3
    assert all(len(one.points) > 20_000 for one in reference)
    assert stack.replay.query_range("node_load1", *window, 0.001, max_points=7_777) == reference
    # The limit is Prometheus's own: one point more per chunk is refused.
    with pytest.raises(PrometheusError, match="11,000"):
        stack.replay.query_range("up", high, high + 30, 0.001, max_points=11_002)

    path = tmp_path / "up.csv"
    assert write_csv(series, path) == 3 * 30_001
    with path.open() as handle:
        rows = list(csv.reader(handle))
    assert rows[0] == ["timestamp", "value", "__name__", "instance", "job", "node"]
    assert len(rows) == 1 + 3 * 30_001
    assert rows[1][:3] == [f"{high:.3f}", "1.0", "up"]
    assert rows[1][4:] == ["node", series[0].labels["node"]]


def test_errors_carry_prometheus_message(stack):
    with pytest.raises(PrometheusError, match="parse error") as caught:
        stack.client.query("sum(up", time.time())
    assert caught.value.status == 400
    assert caught.value.error_type == "bad_data"
    # The replay instance has no admin API.
    with pytest.raises(PrometheusError, match="admin"):
        stack.replay.snapshot()


def test_taken_port_fails_clearly_and_starts_nothing(tmp_path):
    address = "127.0.9.30"
    with socket.socket() as holder:
        holder.bind((address, 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(errors.TestbedError, match=f"{address}:{port}"):
            start_monitoring(tmp_path, collector=("c", "127.0.9.31"), exporters=[("e", address)], exporter_port=port)
    assert not list(tmp_path.glob("*.log"))


def test_stop_everything(stack):
    pids = [*stack.monitoring.pids, stack.served.pid]
    assert stop_served(stack.served.pid)
    stop_monitoring(stack.monitoring.pids)
    assert not any(is_running(pid) for pid in pids)
    # Stopping again is harmless.
    assert not stop_served(stack.served.pid)
    stop_monitoring(stack.monitoring.pids)


def test_failed_start_stops_what_started_and_shows_the_log(tmp_path):
    port, exporter_port = free_ports(ADDRESSES, 2)
    # "0.5s" is not a Prometheus duration: the exporters start, Prometheus exits on its config.
    with pytest.raises(errors.TestbedError, match="Prometheus of collector-1") as caught:
        start_monitoring(
            tmp_path,
            collector=COLLECTOR,
            exporters=EXPORTERS,
            port=port,
            exporter_port=exporter_port,
            scrape_interval="0.5s",
            timeout=20,
        )
    assert "0.5s" in str(caught.value)
    assert (tmp_path / "prometheus.log").exists()
    assert len(list(tmp_path.glob("node-exporter-*.log"))) == 3
    # The exporters it had started are gone: their ports are free again (the kernel may take a moment to
    # release a listening socket of a process that just exited).
    deadline = time.monotonic() + 5
    while not all(port_free(address, exporter_port) for address in ADDRESSES) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert all(port_free(address, exporter_port) for address in ADDRESSES)


def test_serve_snapshot_refuses_a_taken_port(tmp_path):
    (tmp_path / "snapshot" / "01BLOCK").mkdir(parents=True)
    with socket.socket() as holder:
        holder.bind(("127.0.9.40", 0))
        holder.listen()
        port = holder.getsockname()[1]
        with pytest.raises(errors.TestbedError, match="already taken"):
            serve_snapshot(tmp_path / "snapshot", tmp_path / "replay", host="127.0.9.40", port=port)

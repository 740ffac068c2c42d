"""Prometheus helpers without a server: config, range splitting and merging, CSV, snapshot metadata, binaries."""

from __future__ import annotations

import csv
import json
import math
import subprocess

import pytest
import yaml

from g5kdeploy import errors
from g5kdeploy.process import is_running
from g5kdeploy.testbeds.monitoring import start_monitoring, stop_monitoring
from g5kdeploy.tools.prometheus import (
    INSTALL_HINT,
    PrometheusClient,
    PrometheusError,
    Series,
    prometheus_config,
    require_binary,
    serve_snapshot,
    snapshot_tree_time_range,
    split_range,
    write_csv,
)


def test_config_has_one_labelled_target_per_node():
    text = prometheus_config(
        {"node": [("127.0.9.2:9100", "gros-1"), ("127.0.9.3:9100", "gros-2")], "ebpf": [("127.0.9.3:9435", "gros-2")]},
        scrape_interval="500ms",
    )
    config = yaml.safe_load(text)
    assert config["global"]["scrape_interval"] == "500ms"
    assert config["global"]["scrape_timeout"] == "500ms"
    jobs = {job["job_name"]: job["static_configs"] for job in config["scrape_configs"]}
    assert jobs["node"] == [
        {"targets": ["127.0.9.2:9100"], "labels": {"node": "gros-1"}},
        {"targets": ["127.0.9.3:9100"], "labels": {"node": "gros-2"}},
    ]
    assert jobs["ebpf"] == [{"targets": ["127.0.9.3:9435"], "labels": {"node": "gros-2"}}]


def test_config_without_jobs_scrapes_nothing():
    assert yaml.safe_load(prometheus_config({}))["scrape_configs"] == []


def test_split_range_covers_the_grid_once_in_chunks_prometheus_accepts():
    chunks = split_range(1000.0, 1030.0, 0.001)
    assert chunks == [(1_000_000, 1_010_999), (1_011_000, 1_021_999), (1_022_000, 1_030_000)]
    times = [t for first, last in chunks for t in range(first, last + 1)]
    assert times == list(range(1_000_000, 1_030_001))
    assert all((last - first) // 1 < 11_000 for first, last in chunks)


def test_split_range_edges():
    assert split_range(5.0, 5.0, 1.0) == [(5000, 5000)]
    # The end need not be on the grid: the last point is the last grid time before it.
    assert split_range(0.0, 10.5, 2.0) == [(0, 10000)]
    assert split_range(0.0, 9.0, 1.0, max_points=4) == [(0, 3000), (4000, 7000), (8000, 9000)]
    with pytest.raises(PrometheusError, match="at least 1 ms"):
        split_range(0.0, 1.0, 0.0001)
    with pytest.raises(PrometheusError, match="before start"):
        split_range(2.0, 1.0, 1.0)


def test_query_range_merges_chunks_per_series_without_duplicates(monkeypatch):
    client = PrometheusClient("http://127.0.0.1:1")
    calls = []

    def fake_api(method, path, *, data=None, params=None):
        calls.append(data)
        start, end = float(data["start"]), float(data["end"])
        # Prometheus-like answer for two series, one of which repeats the chunk border a second time.
        times = [start + i for i in range(int(end - start) + 1)]
        return {
            "resultType": "matrix",
            "result": [
                {"metric": {"node": "a"}, "values": [[t, str(t)] for t in times]},
                {"metric": {"node": "b"}, "values": [[t, "1"] for t in [*times, start]]},
            ],
        }

    monkeypatch.setattr(client, "_api", fake_api)
    series = client.query_range("up", 0, 9, 1, max_points=4)
    assert [call["start"] for call in calls] == ["0.000", "4.000", "8.000"]
    assert [call["end"] for call in calls] == ["3.000", "7.000", "9.000"]
    assert [one.labels for one in series] == [{"node": "a"}, {"node": "b"}]
    for one in series:
        assert [t for t, _ in one.points] == [float(i) for i in range(10)]
    assert series[0].points[7] == (7.0, 7.0)


def test_write_csv_long_format(tmp_path):
    series = [
        Series({"__name__": "up", "node": "b"}, [(1.5, 1.0), (2.0, 0.0)]),
        Series({"node": "a", "cpu": "0"}, [(1.0, math.nan), (3.25, math.inf)]),
    ]
    path = tmp_path / "out" / "metrics.csv"
    assert write_csv(series, path) == 4
    rows = list(csv.reader(path.open()))
    assert rows == [
        ["timestamp", "value", "__name__", "cpu", "node"],
        ["1.500", "1.0", "up", "", "b"],
        ["2.000", "0.0", "up", "", "b"],
        ["1.000", "NaN", "", "0", "a"],
        ["3.250", "+Inf", "", "0", "a"],
    ]
    assert write_csv([], path) == 0
    assert path.read_text() == "timestamp,value\n"


def test_snapshot_tree_time_range_reads_every_block(tmp_path):
    for name, low, high in [("01A", 1_000_500, 1_002_000), ("01B", 1_001_000, 1_004_250)]:
        (tmp_path / name).mkdir()
        (tmp_path / name / "meta.json").write_text(json.dumps({"ulid": name, "minTime": low, "maxTime": high}))
    assert snapshot_tree_time_range(tmp_path) == (1000.5, 1004.25)
    with pytest.raises(errors.TestbedError, match="no TSDB block"):
        snapshot_tree_time_range(tmp_path / "01A")


def test_missing_binary_names_the_packages(tmp_path):
    with pytest.raises(errors.TestbedError) as caught:
        require_binary("prometheus", search_path=str(tmp_path))
    assert caught.value.hint == INSTALL_HINT
    assert "apt-get install prometheus prometheus-node-exporter" in str(caught.value)
    assert require_binary("prometheus").name == "prometheus"


def test_start_monitoring_and_serve_snapshot_report_missing_binaries(tmp_path):
    (tmp_path / "bin").mkdir()
    with pytest.raises(errors.TestbedError) as caught:
        start_monitoring(
            tmp_path / "mon", collector=("c", "127.0.9.20"), exporters=[], search_path=str(tmp_path / "bin")
        )
    assert caught.value.hint == INSTALL_HINT
    assert not (tmp_path / "mon").exists()
    (tmp_path / "snap").mkdir()
    with pytest.raises(errors.TestbedError, match="apt-get install prometheus"):
        serve_snapshot(tmp_path / "snap", tmp_path / "replay", search_path=str(tmp_path / "bin"))


def test_start_monitoring_refuses_non_loopback_addresses(tmp_path):
    with pytest.raises(errors.TestbedError, match="not a loopback"):
        start_monitoring(tmp_path, collector=("c", "10.0.0.1"), exporters=[])
    with pytest.raises(errors.TestbedError, match="two addresses"):
        start_monitoring(tmp_path, collector=("c", "127.0.9.20"), exporters=[("c", "127.0.9.21")])


def test_stop_monitoring_leaves_other_programs_alone():
    other = subprocess.Popen(["sleep", "30"])
    try:
        stop_monitoring([other.pid, 999_999_999])
        assert is_running(other.pid)
    finally:
        other.kill()
        other.wait()

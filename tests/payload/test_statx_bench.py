"""statx-bench, compiled for real and run for real: its JSON, its statx fields, its errors, and its builder."""

from __future__ import annotations

import itertools
import json
import os
import shutil
import stat
import subprocess
from pathlib import Path

import pytest

from g5kdeploy import errors
from g5kdeploy.payload import SOURCE, build_statx_bench

TOP_KEYS = {
    "tool",
    "version",
    "config",
    "calls",
    "duration_s",
    "calls_per_s",
    "latency_ns",
    "histogram",
    "errors",
    "errors_total",
    "statx",
}
CONFIG_KEYS = {"paths", "iterations", "threads", "warmup", "bare", "clock", "tsc_hz"}
LATENCY_KEYS = ["min", "p50", "p90", "p99", "p999", "max"]
STATX_KEYS = {"ok", "mask", "size", "mode", "uid", "gid", "ino", "nlink", "atime", "mtime", "ctime", "btime"}


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    return build_statx_bench(tmp_path_factory.mktemp("statx-bench"))


@pytest.fixture
def target(tmp_path) -> Path:
    path = tmp_path / "target.txt"
    path.write_bytes(b"x" * 1234)
    return path


def run(bench: Path, *args: str | os.PathLike[str]) -> subprocess.CompletedProcess[str]:
    return subprocess.run([bench, *map(str, args)], check=False, capture_output=True, text=True, timeout=30)


def run_json(bench: Path, *args: str | os.PathLike[str]) -> dict:
    result = run(bench, *args, "--json")
    assert result.returncode == 0, result.stderr
    return json.loads(result.stdout)


def assert_sane_timed(report: dict, calls: int) -> None:
    assert report["calls"] == calls
    assert report["duration_s"] > 0
    assert isinstance(report["calls_per_s"], float)
    assert report["calls_per_s"] > 0
    latency = report["latency_ns"]
    values = [latency[key] for key in LATENCY_KEYS]
    assert all(value > 0 for value in values)
    assert values == sorted(values), latency
    assert latency["min"] <= latency["mean"] <= latency["max"]
    buckets = report["histogram"]["buckets"]
    assert sum(bucket["count"] for bucket in buckets) == calls
    assert all(bucket["lo_ns"] < bucket["hi_ns"] and bucket["count"] > 0 for bucket in buckets)
    assert all(a["hi_ns"] <= b["lo_ns"] for a, b in itertools.pairwise(buckets))
    # The exact extremes fall in the first and last buckets (give or take the rounding to whole ns).
    assert buckets[0]["lo_ns"] - 1 <= latency["min"] <= buckets[0]["hi_ns"] + 1
    assert buckets[-1]["lo_ns"] - 1 <= latency["max"] <= buckets[-1]["hi_ns"] + 1


def test_json_report_has_the_documented_shape(bench, target):
    report = run_json(bench, "--path", target, "--iterations", "2000", "--threads", "1", "--warmup", "10")

    assert report.keys() >= TOP_KEYS
    assert report["tool"] == "statx-bench"
    assert report["version"] == 1
    assert report["config"].keys() >= CONFIG_KEYS
    assert report["config"]["paths"] == [str(target)]
    assert (report["config"]["iterations"], report["config"]["threads"], report["config"]["warmup"]) == (2000, 1, 10)
    assert report["config"]["bare"] is False
    assert report["config"]["clock"] in ("tsc", "monotonic")
    if report["config"]["clock"] == "tsc":
        assert report["config"]["tsc_hz"] > 1e8
    else:
        assert report["config"]["tsc_hz"] is None
    assert report["histogram"]["sub_bucket_bits"] == 5
    assert report["errors"] == {}
    assert report["errors_total"] == 0
    assert_sane_timed(report, 2000)


@pytest.mark.parametrize("clock", ["monotonic", "tsc"])
def test_both_clocks_give_sane_latencies(bench, target, clock):
    if clock == "tsc" and os.uname().machine not in ("x86_64", "i686"):
        pytest.skip("the TSC exists on x86 only")
    report = run_json(bench, "--path", target, "--iterations", "2000", "--clock", clock)
    assert report["config"]["clock"] == clock
    assert_sane_timed(report, 2000)
    # Whatever the clock, the per-call mean must agree with the wall time of the whole timed phase.
    wall_ns_per_call = report["duration_s"] * 1e9 / report["calls"]
    assert report["latency_ns"]["mean"] == pytest.approx(wall_ns_per_call, rel=0.2)


def test_statx_fields_match_os_stat(bench, target):
    report = run_json(bench, "--path", target, "--iterations", "100")
    fields = report["statx"][str(target)]
    expected = os.stat(target)

    assert fields.keys() >= STATX_KEYS
    assert fields["ok"] is True
    assert fields["size"] == expected.st_size == 1234
    assert int(fields["mode"], 8) == expected.st_mode
    assert stat.S_ISREG(int(fields["mode"], 8))
    assert fields["mode"].startswith("0")
    assert fields["ino"] == expected.st_ino
    assert fields["nlink"] == expected.st_nlink
    assert (fields["uid"], fields["gid"]) == (expected.st_uid, expected.st_gid)
    assert fields["mtime"]["sec"] == int(expected.st_mtime)
    assert fields["mtime"]["nsec"] == expected.st_mtime_ns % 1_000_000_000
    assert fields["ctime"]["sec"] == int(expected.st_ctime)
    assert {"sec", "nsec"} == fields["btime"].keys()
    assert fields["mask"] & 0x7FF == 0x7FF  # STATX_BASIC_STATS came back


def test_missing_path_counts_enoent(bench, tmp_path):
    missing = tmp_path / "does-not-exist"
    report = run_json(bench, "--path", missing, "--iterations", "500")

    assert report["errors"] == {"ENOENT": 500}
    assert report["errors_total"] == 500
    assert report["statx"][str(missing)] == {"ok": False, "errno": "ENOENT"}
    assert_sane_timed(report, 500)  # failed calls are still timed


def test_other_errors_are_named(bench, target):
    not_a_dir = f"{target}/below"
    report = run_json(bench, "--path", not_a_dir, "--iterations", "10")
    assert report["errors"] == {"ENOTDIR": 10}
    assert report["statx"][not_a_dir] == {"ok": False, "errno": "ENOTDIR"}


def test_several_paths_and_threads(bench, target, tmp_path):
    other = tmp_path / "other"
    other.write_text("hi\n")
    missing = tmp_path / "missing"
    report = run_json(
        bench, "--path", target, "--path", other, "--path", missing, "--iterations", "3000", "--threads", "4"
    )

    assert report["config"]["paths"] == [str(target), str(other), str(missing)]
    assert report["config"]["threads"] == 4
    assert_sane_timed(report, 4 * 3000)
    # Each thread cycles through the paths, so the missing one is every third call.
    assert report["errors"] == {"ENOENT": 4 * 1000}
    assert report["statx"][str(target)]["size"] == 1234
    assert report["statx"][str(other)]["size"] == 3
    assert report["statx"][str(missing)]["ok"] is False


def test_bare_run_only_times_the_whole_phase(bench, target):
    report = run_json(bench, "--path", target, "--iterations", "2000", "--threads", "2", "--bare")

    assert report["config"]["bare"] is True
    assert report["calls"] == 4000
    assert report["duration_s"] > 0
    assert report["calls_per_s"] > 0
    assert set(report["latency_ns"]) >= {"min", "mean", "p50", "p90", "p99", "p999", "max"}
    assert all(value is None for value in report["latency_ns"].values())
    assert report["histogram"]["buckets"] == []
    assert report["statx"][str(target)]["size"] == 1234


def test_paths_are_json_escaped(bench, tmp_path):
    name = 'quote" back\\slash\nnewline\ttab é'
    path = tmp_path / name
    path.write_text("12345")
    report = run_json(bench, "--path", path, "--iterations", "10")
    assert report["config"]["paths"] == [str(path)]
    assert report["statx"][str(path)]["size"] == 5


def test_non_utf8_path_round_trips_like_os_fsdecode(bench, tmp_path):
    raw = os.fsencode(tmp_path) + b"/bad-\xff-name"
    with open(raw, "wb") as handle:
        handle.write(b"abc")
    result = subprocess.run(
        [bench, b"--path", raw, b"--iterations", b"10", b"--json"], check=False, capture_output=True, timeout=30
    )
    assert result.returncode == 0, result.stderr
    report = json.loads(result.stdout.decode())
    (path,) = report["config"]["paths"]
    assert os.fsencode(path) == raw
    assert report["statx"][path]["size"] == 3


def test_human_summary_without_json(bench, target):
    result = run(bench, "--path", target, "--iterations", "1000")
    assert result.returncode == 0, result.stderr
    assert "calls/s" in result.stdout
    assert "p99" in result.stdout
    assert "size=1234" in result.stdout


@pytest.mark.parametrize(
    ("args", "named"),
    [
        ([], "--path"),
        (["--path", "x", "--iterations", "0"], "--iterations"),
        (["--path", "x", "--iterations", "-5"], "--iterations"),
        (["--path", "x", "--iterations", "12abc"], "--iterations"),
        (["--path", "x", "--threads", "0"], "--threads"),
        (["--path", "x", "--threads", "1025"], "--threads"),
        (["--path", "x", "--warmup", "-1"], "--warmup"),
        (["--path", "x", "--frobnicate"], "--frobnicate"),
        (["--path", "x", "--clock", "sundial"], "--clock"),
        (["--path"], "--path"),
    ],
)
def test_bad_arguments_exit_2_naming_the_option(bench, args, named):
    result = run(bench, *args)
    assert result.returncode == 2
    assert named in result.stderr
    assert result.stdout == ""


def test_builder_caches_the_binary(bench, tmp_path):
    # Start from the module's build (binary + hash sidecar), copied: one compile fewer for the suite.
    for built in bench.parent.iterdir():
        shutil.copy2(built, tmp_path / built.name)
    first = build_statx_bench(tmp_path)
    assert first == tmp_path / "statx-bench"
    assert os.access(first, os.X_OK)
    built_at = first.stat().st_mtime_ns

    second = build_statx_bench(tmp_path)
    assert second == first
    assert second.stat().st_mtime_ns == built_at  # not recompiled

    # A binary that does not match the recorded hash (another source, another compiler) is rebuilt.
    (tmp_path / "statx-bench.sha256").write_text("stale\n")
    third = build_statx_bench(tmp_path)
    assert (tmp_path / "statx-bench.sha256").read_text().strip() != "stale"
    assert run(third, "--path", SOURCE, "--iterations", "1").returncode == 0


def test_builder_reports_a_failing_compiler(tmp_path):
    with pytest.raises(errors.TestbedError) as excinfo:
        build_statx_bench(tmp_path, cc="false")
    assert "statx-bench" in str(excinfo.value)
    assert "apt-get install gcc libc6-dev" in (excinfo.value.hint or "")
    assert not (tmp_path / "statx-bench").exists()
    assert not list(tmp_path.iterdir())  # no temporary file left behind


def test_builder_reports_a_missing_compiler(tmp_path):
    with pytest.raises(errors.TestbedError) as excinfo:
        build_statx_bench(tmp_path / "out", cc="no-such-compiler-g5k")
    assert "no-such-compiler-g5k" in str(excinfo.value)
    assert "apt-get install gcc libc6-dev" in (excinfo.value.hint or "")


def test_builder_shows_the_compiler_errors(tmp_path):
    # A "compiler" that fails the way gcc does, with diagnostics on stderr.
    fake = tmp_path / "fake-cc"
    fake.write_text("#!/bin/sh\necho 'statx-bench.c:1:1: error: something is wrong' >&2\nexit 1\n")
    fake.chmod(0o755)
    with pytest.raises(errors.TestbedError) as excinfo:
        build_statx_bench(tmp_path / "out", cc=str(fake))
    assert "error: something is wrong" in str(excinfo.value)
    assert "status 1" in str(excinfo.value)

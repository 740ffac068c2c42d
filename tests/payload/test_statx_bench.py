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
PER_PATH_KEYS = {"calls", "warmup_calls", "timed_calls", "sample_calls", "errors_total", "latency_ns", "histogram"}
# Counts every statx(2) a program makes through libc's syscall(), by path, and writes them out at exit: an
# account of the calls that does not come from statx-bench itself.
STATX_COUNTER_C = r"""
#define _GNU_SOURCE
#include <dlfcn.h>
#include <pthread.h>
#include <stdarg.h>
#include <stdio.h>
#include <stdlib.h>
#include <string.h>
#include <sys/syscall.h>

#define SLOTS 64
static long (*real_syscall)(long, ...);
static char names[SLOTS][4096];
static unsigned long counts[SLOTS];
static int used;
static pthread_mutex_t lock = PTHREAD_MUTEX_INITIALIZER;

__attribute__((constructor)) static void init(void) { real_syscall = dlsym(RTLD_NEXT, "syscall"); }

long syscall(long number, ...) {
    va_list ap;
    va_start(ap, number);
    long a[6];
    for (int i = 0; i < 6; i++) a[i] = va_arg(ap, long);
    va_end(ap);
    if (number == SYS_statx) {
        const char *path = (const char *)a[1];
        pthread_mutex_lock(&lock);
        int i = 0;
        while (i < used && strcmp(names[i], path) != 0) i++;
        if (i == used && used < SLOTS) snprintf(names[used++], sizeof names[0], "%s", path);
        if (i < used) counts[i]++;
        pthread_mutex_unlock(&lock);
    }
    return real_syscall(number, a[0], a[1], a[2], a[3], a[4], a[5]);
}

__attribute__((destructor)) static void dump(void) {
    FILE *out = fopen(getenv("STATX_COUNTS"), "w");
    for (int i = 0; out && i < used; i++) fprintf(out, "%lu %s\n", counts[i], names[i]);
    if (out) fclose(out);
}
"""


@pytest.fixture(scope="module")
def bench(tmp_path_factory) -> Path:
    return build_statx_bench(tmp_path_factory.mktemp("statx-bench"))


@pytest.fixture(scope="module")
def statx_counter(tmp_path_factory) -> Path:
    """A preload library counting statx(2) calls by path (see STATX_COUNTER_C)."""
    directory = tmp_path_factory.mktemp("statx-counter")
    (directory / "counter.c").write_text(STATX_COUNTER_C)
    library = directory / "counter.so"
    subprocess.run(["cc", "-O2", "-shared", "-fPIC", "-pthread", "-o", library, directory / "counter.c", "-ldl"],
                   check=True, timeout=60)  # fmt: skip
    return library


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
    assert (fields["blksize"], fields["blocks"]) == (expected.st_blksize, expected.st_blocks)


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


def counted_run(bench: Path, counter: Path, out: Path, *args: str | os.PathLike[str]) -> tuple[dict, dict[str, int]]:
    """statx-bench's JSON, and the statx(2) calls it made per path as the preload library counted them."""
    counts = out / "counts.txt"
    env = {**os.environ, "LD_PRELOAD": str(counter), "STATX_COUNTS": str(counts)}
    result = subprocess.run([bench, *map(str, args), "--json"], check=False, capture_output=True, text=True,
                            timeout=60, env=env)  # fmt: skip
    assert result.returncode == 0, result.stderr
    counted = {}
    for line in counts.read_text().splitlines():
        number, _, path = line.partition(" ")
        counted[path] = int(number)
    return json.loads(result.stdout), counted


@pytest.mark.parametrize(
    ("names", "threads", "warmup", "iterations"),
    [
        (["a"], 1, 10, 1000),
        (["a", "b"], 1, 0, 1001),  # an odd number of calls: the first path gets one more
        (["a", "b", "missing"], 3, 7, 2000),
        (["a", "b", "a"], 2, 5, 700),  # a path given twice is one entry, its calls summed
        (["a", "b", "c", "d", "e"], 2, 3, 3),  # fewer calls than paths: some paths never timed
        (["a", "b"], 4, 1000, 2 * 256 + 3),  # several stamp batches, and one cut short
    ],
)
def test_per_path_calls_are_every_statx_the_program_made(bench, statx_counter, tmp_path, names, threads, warmup,
                                                         iterations):  # fmt: skip
    paths = [tmp_path / name for name in names]
    for path in paths:
        if path.name != "missing":
            path.write_text(path.name * 3)
    arguments = [a for path in paths for a in ("--path", path)]
    report, counted = counted_run(bench, statx_counter, tmp_path, *arguments, "--threads", str(threads), "--warmup",
                                  str(warmup), "--iterations", str(iterations))  # fmt: skip

    distinct = list(dict.fromkeys(map(str, paths)))
    assert list(report["per_path"]) == distinct
    assert counted == {path: report["per_path"][path]["calls"] for path in distinct}
    for path in distinct:
        entry = report["per_path"][path]
        indices = [i for i, name in enumerate(map(str, paths)) if name == path]
        # Every thread's call i, warm-up and timed loops alike, uses path i % len(paths).
        timed = threads * sum(len(range(i, iterations, len(paths))) for i in indices)
        warm = threads * sum(len(range(i, warmup, len(paths))) for i in indices)
        assert entry.keys() >= PER_PATH_KEYS
        assert (entry["timed_calls"], entry["warmup_calls"], entry["sample_calls"]) == (timed, warm, 1)
        assert entry["calls"] == timed + warm + 1
        assert sum(bucket["count"] for bucket in entry["histogram"]["buckets"]) == timed
        assert entry["errors_total"] == (timed if path.endswith("missing") else 0)
        latency = entry["latency_ns"]
        if timed:
            values = [latency[key] for key in LATENCY_KEYS]
            assert all(value > 0 for value in values) and values == sorted(values), latency
        else:
            assert all(value is None for value in latency.values())
    assert sum(entry["timed_calls"] for entry in report["per_path"].values()) == report["calls"]
    assert_sane_timed(report, threads * iterations)  # the aggregate keeps its meaning


def test_per_path_latency_tells_the_paths_apart(bench, target, tmp_path):
    missing = tmp_path / "missing"
    report = run_json(bench, "--path", target, "--path", missing, "--iterations", "4000", "--threads", "2")
    found, failed = report["per_path"][str(target)], report["per_path"][str(missing)]
    merged: dict[tuple[int, int], int] = {}
    for bucket in [*found["histogram"]["buckets"], *failed["histogram"]["buckets"]]:
        merged[(bucket["lo_ns"], bucket["hi_ns"])] = merged.get((bucket["lo_ns"], bucket["hi_ns"]), 0) + bucket["count"]
    # The aggregate histogram is the per-path ones added up, and its extremes are theirs.
    assert {(b["lo_ns"], b["hi_ns"]): b["count"] for b in report["histogram"]["buckets"]} == merged
    assert report["latency_ns"]["min"] == min(found["latency_ns"]["min"], failed["latency_ns"]["min"])
    assert report["latency_ns"]["max"] == max(found["latency_ns"]["max"], failed["latency_ns"]["max"])
    means = found["latency_ns"]["mean"] * 4000 + failed["latency_ns"]["mean"] * 4000
    assert report["latency_ns"]["mean"] == pytest.approx(means / 8000, rel=1e-6)
    # A failed lookup returns before the kernel fills a struct statx: the two paths' medians differ.
    assert failed["latency_ns"]["p50"] < found["latency_ns"]["p50"]


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
    per_path = report["per_path"][str(target)]
    assert (per_path["timed_calls"], per_path["warmup_calls"], per_path["calls"]) == (4000, 2000, 6001)
    assert all(value is None for value in per_path["latency_ns"].values())
    assert per_path["histogram"]["buckets"] == []


def test_bare_run_counts_calls_per_path_like_the_timed_one(bench, statx_counter, target, tmp_path):
    other = tmp_path / "other"
    other.write_text("x")
    arguments = ("--path", target, "--path", other, "--iterations", "999", "--threads", "3", "--warmup", "11")
    report, counted = counted_run(bench, statx_counter, tmp_path, *arguments, "--bare")
    assert counted == {str(target): 3 * (500 + 6) + 1, str(other): 3 * (499 + 5) + 1}
    assert {path: entry["calls"] for path, entry in report["per_path"].items()} == counted


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

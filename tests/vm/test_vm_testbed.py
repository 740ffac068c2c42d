"""``testbed: vm``: the experiment for real, on QEMU guests booting the experiment's kernel.

The kernel is built once into the user's cache (G5K_CACHE_DIR, shared by every test here and with the main job):
a cold CI machine pays its build (minutes) in the first test that needs it.
"""

from __future__ import annotations

import json
import os
import re
import shutil
import signal
import subprocess
import sys
import time
from pathlib import Path

import psutil
import pytest
from typer.testing import CliRunner

from g5kdeploy.cli import app
from g5kdeploy.payload import STATX_TARGET
from g5kdeploy.tools.kernel import cache_root
from tests.conftest import spawn_g5k

#: The first test to need the kernel builds it (4 to 9 minutes on 2 cores); the others use the cache.
pytestmark = pytest.mark.timeout(1800)
REPO = Path(__file__).resolve().parents[2]
VM_PLAYBOOK = REPO / "playbooks" / "statx-vm.yaml"
#: The user's own kernel cache, read before any test changes HOME: the kernel is built once for all.
SHARED_CACHE = cache_root()
FAKE_SIZE = 424242


@pytest.fixture
def env(tmp_path, monkeypatch):
    monkeypatch.setenv("HOME", str(tmp_path))
    monkeypatch.setenv("G5K_CACHE_DIR", str(SHARED_CACHE))
    for variable in ("G5K_API_URL", "G5K_USERNAME", "G5K_PASSWORD"):
        monkeypatch.delenv(variable, raising=False)
    monkeypatch.setenv("G5K_RESULTS_DIR", str(tmp_path / "results"))
    yield tmp_path
    g5k("release", "--all")


def g5k(*args: str):
    return CliRunner().invoke(app, list(args))


def run_dir_of(results: Path) -> Path:
    [run_dir] = [path for path in results.iterdir() if (path / "run.json").exists()]
    return run_dir


def processes_naming(text: str) -> list[str]:
    """Live processes whose command line or working directory names ``text`` (QEMU, vng, sshd, make, cc...)."""
    found = []
    for process in psutil.process_iter(["pid", "cmdline", "status"]):
        if process.info["status"] == psutil.STATUS_ZOMBIE or process.pid == os.getpid():
            continue
        cmdline = " ".join(process.info["cmdline"] or [])
        try:
            cwd = process.cwd()
        except psutil.Error:
            cwd = ""
        if text in cmdline or text in cwd:
            found.append(f"{process.pid}: {cmdline[:160]}")
    return found


def results_of(run_dir: Path) -> list[dict]:
    return [json.loads(path.read_text()) for path in sorted((run_dir / "bench").glob("*/*.json"))]


def test_the_vm_main_job_runs_the_experiment_and_proves_it(env):
    # The main job as shipped, through its benchmark's smoke run (which also shows the benchmark runs from a
    # fresh clone): one run of the VM main job serves both.
    bench = subprocess.run(
        [sys.executable, str(REPO / "benchmarks" / "vm.py"), "--smoke", "--results", str(env / "results")],
        cwd=env, capture_output=True, text=True, timeout=1700, check=False,
    )  # fmt: skip
    assert bench.returncode == 0, bench.stderr[-3000:]
    for pattern in (
        r"^run with the kernel cached: \d+\.\d s \(target <= 90 s, ratio \d+\.\d\d\): (met|MISSED)$",
        r"^  phases: reserve \d+ s, deploy \d+ s, bench \d+ s, collect \d+ s$",
        r"^  probe overhead on /etc/hostname, 1 thread\(s\): [+-]\d+ ns per call at p50",
        r"^  override proof: the override is proven on 2 of 2 nodes",
    ):
        assert re.search(pattern, bench.stdout, re.MULTILINE), f"no line matching {pattern!r} in:\n{bench.stdout}"
    run_dir = run_dir_of(env / "results")
    record = json.loads((run_dir / "run.json").read_text())
    assert {name: phase["state"] for name, phase in record["phases"].items()} == dict.fromkeys(
        ("reserve", "deploy", "bench", "collect"), "done"
    )
    assert record["local"]["accelerator"].split(":")[0] in ("kvm", "tcg")

    documents = results_of(run_dir)
    # Every combination of the sweep ran, eBPF on included, on both VM nodes.
    assert {(d["combination"]["parameters"]["ebpf"], d["node"]) for d in documents} == {
        (state, node) for state in ("off", "on") for node in record["roles"]["exporter"]
    }
    target_calls: dict[str, int] = {}
    for document in documents:
        answers = document["result"]["statx"]
        if document["combination"]["parameters"]["ebpf"] == "on":
            assert answers[STATX_TARGET]["size"] == FAKE_SIZE
            target_calls[document["node"]] = target_calls.get(document["node"], 0) + _calls_on(document, STATX_TARGET)
        else:
            assert answers[STATX_TARGET]["size"] != FAKE_SIZE
        assert answers["/etc/hostname"]["size"] != FAKE_SIZE
    # The override counter Prometheus scraped is exactly the bench's calls on the target path, warm-up included.
    assert _last_counter(run_dir, "overridden") == target_calls
    assert set(_last_counter(run_dir, "write_user_failed").values()) == {0}
    latency = (run_dir / "exports" / "statx_latency.csv").read_text().splitlines()
    assert len(latency) > 10
    assert g5k("verify", str(run_dir)).exit_code == 0
    assert processes_naming(str(run_dir)) == []
    # The nightly history reads a VM run's override counter: a program that stops overriding shows there.
    history = g5k("nightly", "check", str(VM_PLAYBOOK), "--json")
    assert history.exit_code == 4, history.output
    assert json.loads(history.stdout)["history"]["runs"] == 1
    report = (run_dir / "report.md").read_text()
    assert "the override is proven on 2 of 2 nodes" in report
    assert "stand-in for ebpf_exporter" in report


def _calls_on(document: dict, path: str) -> int:
    """statx calls the bench made on ``path``: each thread's warm-up and timed calls cycle the paths, then one
    sample call per path shows the struct."""
    result = document["result"]
    paths = result["config"]["paths"]
    index = paths.index(path)
    per_thread = sum(
        len(range(index, count, len(paths))) for count in (result["config"]["warmup"], result["config"]["iterations"])
    )
    return per_thread * result["config"]["threads"] + 1


def _last_counter(run_dir: Path, outcome: str) -> dict[str, int]:
    lines = (run_dir / "exports" / "statx_override.csv").read_text().splitlines()
    header = lines[0].split(",")
    last: dict[str, int] = {}
    for line in lines[1:]:
        row = dict(zip(header, line.split(","), strict=True))
        if row["outcome"] == outcome:
            last[row["node"]] = int(float(row["value"]))
    return last


def test_a_program_the_verifier_refuses_fails_every_vm_node_with_the_verifiers_words(env):
    broken = env / "broken"
    shutil.copytree(Path(__file__).parent / "broken", broken)
    book = env / "broken.yaml"
    book.write_text(
        VM_PLAYBOOK.read_text().replace("deploy:\n", f"ebpf:\n  programs: [broken]\n  directory: {broken}\ndeploy:\n")
    )
    result = g5k("run", str(book))
    assert result.exit_code == 1
    run_dir = run_dir_of(env / "results")
    record = json.loads((run_dir / "run.json").read_text())
    for node in record["roles"]["exporter"]:
        assert node in result.stderr
    assert "did not load and attach" in result.stderr and "invalid mem access" in result.stderr
    # The verifier refuses the same program every time: no retry round is spent on it.
    assert {record["deploy"]["nodes"][node]["attempts"] for node in record["roles"]["exporter"]} == {1}
    assert "Traceback" not in result.output
    assert record["released_at"]
    assert processes_naming(str(run_dir)) == []


def test_ctrl_c_during_the_kernel_build_stops_it_and_caches_nothing(env):
    cache = env / "cold-cache"
    process = spawn_g5k("run", str(VM_PLAYBOOK), env={"G5K_CACHE_DIR": str(cache), "HOME": str(env)})
    deadline = time.monotonic() + 240
    while not _compiling(cache):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "the kernel build never started"
        time.sleep(0.2)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    assert processes_naming(str(cache)) == []
    assert [entry.name for entry in (cache / "kernels").iterdir()] == []


def _compiling(cache: Path) -> bool:
    """Whether a compiler runs in this build's tree (not in another build, such as the session's prebuild)."""
    return any("cc1" in line for line in processes_naming(str(cache)))


def test_ctrl_c_while_the_guests_boot_leaves_no_qemu_and_no_job(env):
    process = spawn_g5k("run", str(VM_PLAYBOOK), env={"HOME": str(env), "G5K_CACHE_DIR": str(SHARED_CACHE)})
    deadline = time.monotonic() + 600
    while not any("qemu-system" in line for line in processes_naming(str(env / "results"))):
        assert process.poll() is None, process.communicate()
        assert time.monotonic() < deadline, "no guest ever started"
        time.sleep(0.1)
    process.send_signal(signal.SIGINT)
    _, stderr = process.communicate(timeout=120)
    assert process.returncode == 130, stderr
    run_dir = run_dir_of(env / "results")
    assert processes_naming(str(run_dir)) == []
    record = json.loads((run_dir / "run.json").read_text())
    assert record["released_at"] and all(job["released"] for job in record["jobs"])


def test_a_guest_that_does_not_boot_in_time_fails_with_its_console_and_leaves_nothing(env):
    book = env / "slow.yaml"
    book.write_text(VM_PLAYBOOK.read_text().replace("boot_timeout: 300", "boot_timeout: 1"))
    result = g5k("reserve", str(book))
    assert result.exit_code == 1
    assert "waiting for the VM node" in result.stderr and "to answer SSH (vm.boot_timeout)" in result.stderr
    assert "console ends with" in result.stderr
    run_dir = run_dir_of(env / "results")
    assert processes_naming(str(run_dir)) == []
    assert json.loads((run_dir / "run.json").read_text())["released_at"]


def test_missing_vm_tools_are_named_with_their_install_command_before_anything_is_reserved(env, monkeypatch):
    monkeypatch.setattr("g5kdeploy.tools.kernel.SOURCE_PACKAGE", "linux-source-0.0")
    result = g5k("run", str(VM_PLAYBOOK))
    assert result.exit_code == 1
    assert "linux-source-0.0" in result.stderr and "apt-get install" in result.stderr
    record = json.loads((run_dir_of(env / "results") / "run.json").read_text())
    assert record["jobs"] == [] and record["local"] is None

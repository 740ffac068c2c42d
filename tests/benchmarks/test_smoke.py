"""Every benchmark runs from a fresh clone at its smallest size and prints its result lines.

Each script in benchmarks/ runs as a subprocess with ``--smoke``, from an empty working directory, with an
empty HOME and no Grid'5000 variables, as on a machine that has just run ``scripts/setup.sh``. Speed targets
are not asserted (machines are noisy, and smoke sizes are too small for a verdict): the script must exit 0
having printed its ratio against the in-run baseline and its verdict line.
"""

from __future__ import annotations

import os
import re
import signal
import subprocess
import sys
from pathlib import Path

import pytest

REPO = Path(__file__).resolve().parents[2]
BENCHMARKS = REPO / "benchmarks"
G5K_VARIABLES = ("G5K_API_URL", "G5K_USERNAME", "G5K_PASSWORD", "G5K_RESULTS_DIR")
# Seconds a smoke run may take before it is interrupted; collect.py includes a whole local `g5k run`.
TIMEOUT = 240.0
#: Benchmarks smoke-run by another test, which also checks what their run produced (one VM main job, not two).
SMOKED_ELSEWHERE = {"vm.py": "tests/vm/test_vm_testbed.py::test_the_vm_main_job_runs_the_experiment_and_proves_it"}
STOP_TIMEOUT = 150.0

#: Per script: extra arguments, and the lines (regular expressions) that carry its result and its verdict.
EXPECTED: dict[str, tuple[list[str], list[str]]] = {
    "statx_overhead.py": (
        ["--build-dir", "{tmp}/statx-bench"],
        [
            r"^harness \(timed, (tsc|monotonic), statx\) +\d+\.\d",
            r"^harness/bare: \d+\.\d{3}x \(median of per-round ratios",
            r"^timing cost per call: [+-]\d+\.\d ns",
            r"^target \(harness <= 1\.05x bare\): (met|MISSED)$",
        ],
    ),
    "wait_latency.py": (
        [],
        [
            r"^agent +-?\d+\.\d\d +\d+$",
            r"^ratios  agent/fixed GETs \d+\.\d{3}  agent/backoff GETs \d+\.\d{3}  agent/backoff delay",
            r"^target \(delay <= 1 sim s and GETs <= backoff's\): (met|MISSED)$",
        ],
    ),
    "fanout.py": (
        [],
        [
            r"^ +4 nodes  ratios: execo/this +\d+\.\dx,  fabric/this +\d+\.\dx$",
            r"^ +4 nodes  client CPU ratios: execo/this +\d+\.\dx,  fabric/this +\d+\.\dx$",
            r"^target \(.*\): (met|MISSED)$",
        ],
    ),
    "sim_scale.py": (
        [],
        [
            r"^original \(from scratch\) +\d+ jobs  submit +\d+\.\d\d s  delete +\d+\.\d\d s  total +\d+\.\d\d s$",
            r"^ratio original/incremental at \d+ jobs: \d+\.\dx$",
            r"^target \(\d+ jobs submitted then deleted <= 10 s, at 1000 jobs\): (met|MISSED)$",
        ],
    ),
    "collect.py": (
        [],
        [
            r"^throughput ratio ours/scp \d+\.\d\d \(target >= 0\.90\): (met|MISSED)$",
            r"^g5k run playbooks/statx-local\.yaml \(smoke bench\): .* the rest \d+\.\d s \(target <= 30 s\): "
            r"(met|MISSED)$",
        ],
    ),
}


def run_smoke(script: Path, args: list[str], cwd: Path) -> subprocess.CompletedProcess[str]:
    env = {name: value for name, value in os.environ.items() if name not in G5K_VARIABLES}
    (cwd / "home").mkdir()
    env["HOME"] = str(cwd / "home")
    timeout = TIMEOUT
    argv = [sys.executable, str(script), "--smoke", *args]
    process = subprocess.Popen(argv, cwd=cwd, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True)
    try:
        stdout, stderr = process.communicate(timeout=timeout)
    except subprocess.TimeoutExpired:
        # SIGINT, not SIGKILL: the script stops the sshd nodes, simulators and local testbed it started.
        process.send_signal(signal.SIGINT)
        try:
            stdout, stderr = process.communicate(timeout=STOP_TIMEOUT)
        except subprocess.TimeoutExpired:
            process.kill()
            stdout, stderr = process.communicate()
        pytest.fail(f"{script.name} --smoke still running after {timeout:g} s; stderr ends with:\n{stderr[-3000:]}")
    return subprocess.CompletedProcess(argv, process.returncode, stdout, stderr)


def test_every_benchmark_has_a_smoke_run():
    assert sorted(path.name for path in BENCHMARKS.glob("*.py")) == sorted([*EXPECTED, *SMOKED_ELSEWHERE])


@pytest.mark.parametrize("name", sorted(EXPECTED))
def test_benchmark_runs_at_its_smallest_size(name, tmp_path):
    args, result_lines = EXPECTED[name]
    done = run_smoke(BENCHMARKS / name, [arg.format(tmp=tmp_path) for arg in args], tmp_path)

    assert done.returncode == 0, (
        f"exit {done.returncode}; stdout:\n{done.stdout}\nstderr ends with:\n{done.stderr[-3000:]}"
    )
    for pattern in result_lines:
        assert re.search(pattern, done.stdout, re.MULTILINE), f"no line matching {pattern!r} in:\n{done.stdout}"
    assert "Traceback" not in done.stderr, done.stderr

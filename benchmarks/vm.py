"""The VM testbed's main job, timed: its first run (kernel build included) and a run with the kernel cached.

1. ``g5k run playbooks/statx-vm.yaml`` with an empty kernel cache: the kernel is configured and built, the
   guests boot on it, the whole sweep runs with eBPF off and on. Target: at most 8 minutes on 2 cores.
2. The same run again, the kernel now cached. Target: at most 90 s.

Both print their phases' times and what the run measured: the probe's overhead in ns per call on the ordinary
path (p50 with eBPF on minus off) and the override proof's verdict, from the run's own report.

    .venv/bin/python benchmarks/vm.py [--smoke] [--results DIR]

``--smoke``: skips the cold build (the cached kernel of ``$G5K_CACHE_DIR`` or ``~/.cache/g5kdeploy`` is used,
built first if missing): one run of the main job as shipped, the same lines, and an exit status that only
says whether it ran, not whether the targets were met. ``--results DIR`` keeps the runs' results there (the VM
tests check the main job's run that way, rather than pay for a second one).
"""

from __future__ import annotations

import argparse
import json
import os
import re
import signal
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

from g5kdeploy.tools.kernel import cache_root

REPO = Path(__file__).resolve().parents[1]
PLAYBOOK = REPO / "playbooks/statx-vm.yaml"
COLD_TARGET, WARM_TARGET = 480.0, 90.0
RUN_TIMEOUT = 3600.0
RELEASE_TIMEOUT = 180.0


def timed_run(work: Path, results: Path, cache: Path) -> tuple[float, Path]:
    """Wall seconds of one ``g5k run`` (HOME is ``work``, the kernel cache ``cache``) and its run directory."""
    work.mkdir(parents=True, exist_ok=True)
    env = {**os.environ, "HOME": str(work), "G5K_RESULTS_DIR": str(results), "G5K_CACHE_DIR": str(cache)}
    for variable in ("G5K_API_URL", "G5K_USERNAME", "G5K_PASSWORD"):
        env.pop(variable, None)
    argv = [sys.executable, "-m", "g5kdeploy", "run", str(PLAYBOOK), "--json"]
    start = time.perf_counter()
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)
        except BaseException:
            # Ctrl-C lets g5k stop its build, guests and daemons and release its job; a SIGKILL would not.
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=RELEASE_TIMEOUT)
            raise
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"g5k run failed:\n{stderr[-3000:]}")
    return elapsed, results / json.loads(stdout)["run_id"]


def describe(label: str, elapsed: float, target: float, run_dir: Path) -> bool:
    phases = json.loads((run_dir / "run.json").read_text())["phases"]

    def seconds(phase: dict[str, str]) -> float:
        start, end = (datetime.strptime(phase[key], "%Y-%m-%dT%H:%M:%SZ") for key in ("started_at", "finished_at"))
        return (end - start).total_seconds()

    report = (run_dir / "report.md").read_text()
    overhead = re.findall(r"^- (\S+), (\d+) threads?: ([+-]\d+) ns per call at p50", report, flags=re.MULTILINE)
    verdict = re.search(r"^Verdict: (.*)$", report, flags=re.MULTILINE)
    met = elapsed <= target
    verdict_word = "met" if met else "MISSED"
    print(f"{label}: {elapsed:.1f} s (target <= {target:.0f} s, ratio {elapsed / target:.2f}): {verdict_word}")
    print("  phases: " + ", ".join(f"{name} {seconds(phase):.0f} s" for name, phase in phases.items()))
    for path, threads, ns in overhead:
        print(f"  probe overhead on {path}, {threads} thread(s): {ns} ns per call at p50 (eBPF on - off)")
    print(f"  override proof: {verdict.group(1) if verdict else 'not in the report'}")
    return met


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--smoke", action="store_true", help="cached kernel, one run; exit 0 whatever the verdict")
    parser.add_argument("--results", type=Path, help="keep the runs' results in this directory")
    args = parser.parse_args()
    ok = True
    with tempfile.TemporaryDirectory(prefix="g5k-vm-bench-") as scratch:
        work = Path(scratch)
        results = args.results.absolute() if args.results else work / "results"
        if args.smoke:
            cache = cache_root()
        else:
            cache = work / "cache"
            elapsed, run_dir = timed_run(work / "cold", results, cache)
            ok = describe("first run, kernel build included", elapsed, COLD_TARGET, run_dir) and ok
        elapsed, run_dir = timed_run(work / "warm", results, cache)
        ok = describe("run with the kernel cached", elapsed, WARM_TARGET, run_dir) and ok
    return 0 if ok or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())

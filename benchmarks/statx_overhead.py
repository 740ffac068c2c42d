"""What does statx-bench's per-call timing cost, compared with the same loop untimed and with Python?

statx-bench times every statx(2) call (one clock read, one histogram increment). That must not distort what
it measures. In the same run, interleaved over several rounds (medians reported), this measures ns per call
of: the bare loop (``--bare``: no per-call timing, only the total time), the harness (timed, 1 thread), and a
Python ``os.stat`` loop on the same file (which goes through newfstatat, not statx: a reference point for
what a Python harness would cost, not the same syscall). Bare and harness are both wall time of the timed
phase divided by the calls, so the ratio is exactly the cost of the timing.

Run-to-run noise of statx on a shared machine (10-15 %) is far above the cost being measured (one rdtsc and
one increment, ~1 %). To keep the verdict stable, each round runs bare and harness back to back (their
order alternating), and the verdict uses the median of the per-round harness/bare ratios, which cancels
slow drifts between rounds; the ratio of the medians and of the minimums (the least disturbed runs) are
printed too. ``--cpu N`` pins everything to one CPU, which helps on an idle machine and hurts on a busy one.

Target: harness <= 1.05 x bare. Exit status 0 when met, 1 otherwise.

    .venv/bin/python benchmarks/statx_overhead.py [--rounds 7] [--seconds 0.5] [--build-dir DIR]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

from g5kdeploy.payload import build_statx_bench

TARGET = 1.05


def bench_ns_per_call(binary: Path, path: Path, iterations: int, *, bare: bool) -> tuple[float, dict]:
    args = [str(binary), "--path", str(path), "--iterations", str(iterations), "--threads", "1", "--json"]
    if bare:
        args.append("--bare")
    result = subprocess.run(args, check=True, capture_output=True, text=True, timeout=120)
    report = json.loads(result.stdout)
    if report["errors_total"]:
        raise SystemExit(f"statx failed on {path}: {report['errors']}")
    return report["duration_s"] * 1e9 / report["calls"], report


def python_ns_per_call(path: Path, iterations: int) -> float:
    stat = os.stat
    for _ in range(1000):  # warm-up, as the C loops do
        stat(path)
    start = time.perf_counter_ns()
    for _ in range(iterations):
        stat(path)
    return (time.perf_counter_ns() - start) / iterations


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--rounds", type=int, default=9)
    parser.add_argument("--seconds", type=float, default=0.4, help="target duration of one measurement")
    parser.add_argument("--build-dir", type=Path, default=Path(tempfile.gettempdir()) / "g5kdeploy-statx-bench")
    parser.add_argument("--cpu", type=int, default=None, help="pin this process and its children to one CPU")
    args = parser.parse_args()

    if args.cpu is not None:
        os.sched_setaffinity(0, {args.cpu})

    binary = build_statx_bench(args.build_dir)
    with tempfile.TemporaryDirectory() as tmp:
        path = Path(tmp) / "target"
        path.write_bytes(b"x" * 4096)

        # Size the runs so that each takes about --seconds.
        probe_ns, _ = bench_ns_per_call(binary, path, 20_000, bare=True)
        iterations = max(10_000, int(args.seconds * 1e9 / probe_ns))
        py_iterations = max(10_000, int(args.seconds * 1e9 / python_ns_per_call(path, 20_000)))

        samples: dict[str, list[float]] = {"bare": [], "harness": [], "python": []}
        clock = "?"
        harness_mean: list[float] = []

        def measure(kind: str) -> None:
            nonlocal clock
            if kind == "python":
                samples[kind].append(python_ns_per_call(path, py_iterations))
                return
            ns, report = bench_ns_per_call(binary, path, iterations, bare=kind == "bare")
            samples[kind].append(ns)
            if kind == "harness":
                clock = report["config"]["clock"]
                harness_mean.append(report["latency_ns"]["mean"])

        for round_no in range(args.rounds):
            # Bare and harness back to back, alternating which goes first, so that each pair sees the same
            # machine; Python in between pairs.
            pair = ["bare", "harness"] if round_no % 2 == 0 else ["harness", "bare"]
            for kind in [*pair, "python"]:
                measure(kind)
        ratios = [h / b for h, b in zip(samples["harness"], samples["bare"], strict=True)]

    med = {kind: statistics.median(values) for kind, values in samples.items()}
    print(
        f"statx overhead: {args.rounds} rounds, medians{'' if args.cpu is None else f', pinned to CPU {args.cpu}'}; "
        f"C loops {iterations} calls, Python {py_iterations} calls"
    )
    print(f"{'variant':<34} {'ns/call':>9} {'min':>9} {'max':>9}")
    labels = {
        "bare": "bare loop (--bare, statx)",
        "harness": f"harness (timed, {clock}, statx)",
        "python": "python os.stat loop (newfstatat)",
    }
    for kind, values in samples.items():
        print(f"{labels[kind]:<34} {med[kind]:>9.1f} {min(values):>9.1f} {max(values):>9.1f}")
    print(f"harness's own mean latency (median over rounds): {statistics.median(harness_mean):.1f} ns")
    ratio = statistics.median(ratios)
    print(
        f"harness/bare: {ratio:.3f}x (median of per-round ratios, {min(ratios):.3f}-{max(ratios):.3f}; "
        f"ratio of medians {med['harness'] / med['bare']:.3f}x, "
        f"of minimums {min(samples['harness']) / min(samples['bare']):.3f}x)"
    )
    print(f"python/bare:  {med['python'] / med['bare']:.3f}x")
    met = ratio <= TARGET
    print(f"target (harness <= {TARGET:.2f}x bare): {'met' if met else 'MISSED'}")
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

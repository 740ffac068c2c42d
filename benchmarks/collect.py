"""Collect throughput and the local pipeline's overhead.

1. Pull the same snapshot-sized tree from 8 loopback sshd nodes, in the same run: this layer
   (``SshRunner.get_tree``: one tar stream per node over its multiplexed connection, sha256-checked) against
   plain ``scp -r`` from every node in parallel. Target: at least 0.9x scp's throughput.
2. ``g5k run`` of a local playbook end to end, minus the time spent in the bench phase. Target: 30 s.

    .venv/bin/python benchmarks/collect.py [--megabytes 16] [--rounds 3] [--smoke]

``--smoke``: 1 MiB per node, one round, and a bench section cut to one short combination (the pipeline's
figure excludes the bench phase anyway); the same lines, and an exit status that only says whether it ran,
not whether the targets were met.
"""

from __future__ import annotations

import argparse
import json
import os
import shutil
import signal
import statistics
import subprocess
import sys
import tempfile
import time
from datetime import datetime
from pathlib import Path

import yaml

from g5kdeploy.remote import SshRunner
from g5kdeploy.testbeds.loopback import start_nodes, stop_nodes

REPO = Path(__file__).resolve().parents[1]
PLAYBOOK = REPO / "playbooks/statx-local.yaml"
NODES = 8
RUN_TIMEOUT = 900.0
RELEASE_TIMEOUT = 120.0
#: The smoke run's sweep: one short statx-bench run per node.
SMOKE_BENCH = {
    "workload": {"command": "statx-bench --json --iterations 1000 --warmup 100 --threads 1 --path /etc/hostname",
                 "metrics": {"calls_per_s": "calls_per_s", "p50_ns": "latency_ns.p50", "p99_ns": "latency_ns.p99"},
                 "artifacts": ["statx-bench"]},
    "parameters": {},
    "repetitions": 1,
}  # fmt: skip


def make_tree(root: Path, megabytes: int) -> int:
    """A Prometheus-snapshot-like tree: a few large chunk files and small index/meta files."""
    total = 0
    for block in range(4):
        chunks = root / f"01BLOCK{block}" / "chunks"
        chunks.mkdir(parents=True)
        for number in range(1, 3):
            data = os.urandom(megabytes * (1 << 20) // 8)
            (chunks / f"{number:06d}").write_bytes(data)
            total += len(data)
        for name, size in (("index", 64 << 10), ("meta.json", 300), ("tombstones", 9)):
            data = os.urandom(size)
            (root / f"01BLOCK{block}" / name).write_bytes(data)
            total += len(data)
    return total


def pull_ours(runner: SshRunner, names: list[str], remote: str, into: Path) -> float:
    start = time.perf_counter()
    results = runner.get_tree(names, remote, into, timeout=600)
    elapsed = time.perf_counter() - start
    failed = [name for name, result in results.items() if not result.ok]
    if failed:
        raise SystemExit(f"get_tree failed on {failed}")
    return elapsed


def pull_scp(ssh_config: Path, names: list[str], remote: str, into: Path) -> float:
    start = time.perf_counter()
    into.mkdir()
    processes = [
        subprocess.Popen(["scp", "-q", "-F", str(ssh_config), "-r", f"{name}:{remote}", str(into / name)])
        for name in names
    ]
    codes = [process.wait(timeout=600) for process in processes]
    elapsed = time.perf_counter() - start
    if any(codes):
        raise SystemExit(f"scp failed: {codes}")
    return elapsed


def throughput(args: argparse.Namespace) -> bool:
    work = Path(tempfile.mkdtemp(prefix="g5k-collect-bench-"))
    names = [f"node-{index}.bench.grid5000.fr" for index in range(1, NODES + 1)]
    nodes = start_nodes(work / "nodes", names)
    try:
        # Loopback nodes share one filesystem: every node serves the same tree, as every collector would its own.
        size = make_tree(work / "snapshot", args.megabytes)
        remote = str(work / "snapshot")
        ours: list[float] = []
        scp: list[float] = []
        with SshRunner(nodes.ssh_config) as runner:
            runner.run(names, "true", timeout=60)
            for round_number in range(args.rounds):
                # Alternate the order so that neither method always runs on a warmer page cache.
                for use_ours in (True, False) if round_number % 2 == 0 else (False, True):
                    target = work / f"pull-{round_number}-{'ours' if use_ours else 'scp'}"
                    if use_ours:
                        ours.append(pull_ours(runner, names, remote, target))
                    else:
                        scp.append(pull_scp(nodes.ssh_config, names, remote, target))
                    shutil.rmtree(target)
    finally:
        stop_nodes(node.pid for node in nodes.nodes)
        shutil.rmtree(work, ignore_errors=True)
    total_mb = size * NODES / (1 << 20)
    ours_rate, scp_rate = total_mb / statistics.median(ours), total_mb / statistics.median(scp)
    print(f"snapshot pull from {NODES} loopback nodes, {total_mb:.0f} MiB in all, median of {args.rounds} rounds")
    print(f"{'method':<38}{'seconds':>10}{'MiB/s':>10}")
    print(f"{'g5kdeploy get_tree (sha256 checked)':<38}{statistics.median(ours):>10.2f}{ours_rate:>10.1f}")
    print(f"{'scp -r, all nodes in parallel':<38}{statistics.median(scp):>10.2f}{scp_rate:>10.1f}")
    ratio = ours_rate / scp_rate
    print(f"throughput ratio ours/scp {ratio:.2f} (target >= 0.90): {'met' if ratio >= 0.9 else 'MISSED'}")
    return ratio >= 0.9


def pipeline(*, smoke: bool) -> bool:
    with tempfile.TemporaryDirectory(prefix="g5k-pipeline-bench-") as scratch:
        elapsed, bench_s = timed_run(Path(scratch), smoke=smoke)
    overhead = elapsed - bench_s
    print(
        f"g5k run {PLAYBOOK.relative_to(REPO)}{' (smoke bench)' if smoke else ''}: {elapsed:.1f} s in all, "
        f"bench {bench_s:.0f} s (1 s resolution), "
        f"the rest {overhead:.1f} s (target <= 30 s): {'met' if overhead <= 30 else 'MISSED'}"
    )
    return overhead <= 30


def timed_run(work: Path, *, smoke: bool) -> tuple[float, float]:
    """Seconds of a whole ``g5k run`` of the local playbook, and of its bench phase; HOME is ``work``."""
    playbook = PLAYBOOK
    if smoke:
        content = yaml.safe_load(PLAYBOOK.read_text())
        content["bench"].update(SMOKE_BENCH)
        playbook = work / PLAYBOOK.name
        playbook.write_text(yaml.safe_dump(content, sort_keys=False))
    env = {**os.environ, "HOME": str(work), "G5K_RESULTS_DIR": str(work / "results")}
    for variable in ("G5K_API_URL", "G5K_USERNAME", "G5K_PASSWORD"):
        env.pop(variable, None)
    start = time.perf_counter()
    argv = [sys.executable, "-m", "g5kdeploy", "run", str(playbook), "--json"]
    with subprocess.Popen(argv, env=env, stdout=subprocess.PIPE, stderr=subprocess.PIPE, text=True) as process:
        try:
            stdout, stderr = process.communicate(timeout=RUN_TIMEOUT)
        except BaseException:
            # Interrupted or too slow: g5k releases its jobs and stops the local testbed on SIGINT, where the
            # SIGKILL of subprocess.run would leave the testbed's daemons holding their addresses.
            process.send_signal(signal.SIGINT)
            process.communicate(timeout=RELEASE_TIMEOUT)
            raise
    elapsed = time.perf_counter() - start
    if process.returncode != 0:
        raise SystemExit(f"g5k run failed:\n{stderr[-2000:]}")
    run_id = json.loads(stdout)["run_id"]
    bench = json.loads((work / "results" / run_id / "run.json").read_text())["phases"]["bench"]

    def at(stamp: str) -> float:
        return datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").timestamp()

    return elapsed, at(bench["finished_at"]) - at(bench["started_at"])


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--megabytes", type=int, default=16, help="size of each node's tree")
    parser.add_argument("--rounds", type=int, default=3)
    parser.add_argument("--smoke", action="store_true", help="smallest sizes; exit 0 whatever the verdict")
    args = parser.parse_args()
    if args.smoke:
        args.megabytes, args.rounds = 1, 1
    ok = throughput(args)
    ok = pipeline(smoke=args.smoke) and ok
    return 0 if ok or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())

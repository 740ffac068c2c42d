"""Synthetic run directories shaped like the bench phase's output, with histograms drawn from a real-looking
latency distribution (lognormal body, heavy tail), so plots and reports run on the same files a sweep writes."""

from __future__ import annotations

import itertools
import json
import math
import zlib
from collections.abc import Sequence
from pathlib import Path

from g5kdeploy.results import DeployRecord, JobEntry, NodeDeployState, PhaseRecord, RunRecord

NODES = ("gros-2.nancy.grid5000.fr", "gros-3.nancy.grid5000.fr")
JOB_UID = 1894417
KERNEL = "6.1.0-27-amd64-statx"
SKIP_REASON = "the local testbed runs the host's kernel: no custom kernel, no kprobe override"
# HDR-like bucket bounds: about 3 % wide, from 500 ns to ~20 ms.
BOUNDS = [int(500 * 1.03**index) for index in range(360)]
SAMPLES = 20_000


def base_ns(node_index: int, threads: int, ebpf: str, repetition: int) -> int:
    """The p50 a result file states: known in advance so tests can check the report's numbers."""
    return 1500 + 200 * (threads - 1) + (400 if ebpf == "on" else 0) + 10 * node_index + 4 * repetition


def histogram(median: float, seed: int) -> list[dict[str, int]]:
    """Expected counts of a lognormal body plus a 0.5 % preemption tail; ``seed`` jitters the width a little
    so nodes and repetitions differ. Computed from the CDF, not sampled, to keep the tests fast."""
    width = 0.12 + (seed % 7) * 0.005

    def share(bound: float) -> float:
        body = 0.5 * (1 + math.erf(math.log(bound / median) / (width * math.sqrt(2))))
        tail = 0.5 * (1 + math.erf(math.log(bound / (median * 20)) / math.sqrt(2)))
        return 0.995 * body + 0.005 * tail

    shares = [share(bound) for bound in BOUNDS]
    counts = [round(SAMPLES * (high - low)) for low, high in itertools.pairwise(shares)]
    return [{"lo_ns": BOUNDS[i], "hi_ns": BOUNDS[i + 1], "count": c} for i, c in enumerate(counts) if c]


def result_document(run_id: str, node: str, node_index: int, threads: int, ebpf: str, repetition: int) -> dict:
    median = base_ns(node_index, threads, ebpf, repetition)
    calls = 200_000 * threads
    rate = 1e9 / median * threads * 0.9
    key = f"threads-{threads}_ebpf-{ebpf}_rep-{repetition}"
    return {
        "run_id": run_id,
        "node": node,
        "combination": {"threads": threads, "ebpf": ebpf, "repetition": repetition, "key": key},
        "paths": ["/etc/hostname"],
        "duration_s": calls / rate + 0.05,
        "finished_at": "2026-11-27T16:47:59Z",
        "result": {
            "tool": "statx-bench",
            "version": 1,
            "config": {"paths": ["/etc/hostname"], "iterations": 200000, "threads": threads, "warmup": 1000},
            "calls": calls,
            "duration_s": calls / rate,
            "calls_per_s": rate,
            "latency_ns": {"min": median * 0.7, "mean": median * 1.3, "p50": float(median), "p90": median * 1.2,
                           "p99": median * 1.6, "p999": median * 15.0, "max": median * 900.0},
            "histogram": {"sub_bucket_bits": 5, "buckets": histogram(median, zlib.crc32(f"{node} {key}".encode()))},
            "errors": {},
            "errors_total": 0,
            "statx": {"/etc/hostname": {"ok": True, "mask": 8191, "size": 3, "mode": "0100644"}},
        },
    }  # fmt: skip


def make_run(
    root: Path,
    *,
    nodes: Sequence[str] = NODES,
    threads: Sequence[int] = (1, 2),
    ebpf: Sequence[str] = ("off", "on"),
    repetitions: int = 2,
    skipped: Sequence[str] = (),
) -> Path:
    """A finished run under ``root``; eBPF states in ``skipped`` are noted in sweep.json instead of run."""
    run_id = "statx-20261127T150000-ab12"
    run_dir = root / run_id
    collector = "gros-1.nancy.grid5000.fr"
    record = RunRecord(
        run_id=run_id,
        playbook_path="playbooks/statx.yaml",
        playbook={"version": 1, "name": "statx", "testbed": "grid5000",
                  "bench": {"roles": ["exporter"], "paths": ["/etc/hostname"], "iterations": 200000, "warmup": 1000,
                            "threads": list(threads), "repetitions": repetitions, "ebpf": [*ebpf, *skipped],
                            "timeout": 300}},
        testbed="grid5000",
        api_url="https://api.grid5000.fr/stable",
        phases={name: PhaseRecord(state="done", started_at=f"2026-11-27T15:0{i}:00Z",
                                  finished_at=f"2026-11-27T15:0{i}:4{i}Z")
                for i, name in enumerate(("reserve", "deploy", "bench"))},
        jobs=[JobEntry(site="nancy", name=run_id, resources="{cluster='gros'}/nodes=3,walltime=1:00:00",
                       walltime=3600, uid=JOB_UID, state="running", nodes=[collector, *nodes])],
        roles={"collector": [collector], "exporter": list(nodes)},
        deploy=DeployRecord(method="kadeploy", marker="2345f7c7c08d", nodes={
            node: NodeDeployState(state="verified", attempts=1, log_tail=["deployment nancy/D-42: terminated"],
                                  facts={"kernel": KERNEL, "system": "/nix/store/abc-nixos-system"})
            for node in [collector, *nodes]}),
    )  # fmt: skip
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(record.model_dump(mode="json"), indent=2))
    (run_dir / ".lock").write_text("")
    notes: dict[str, dict[str, dict[str, str]]] = {}
    for repetition in range(1, repetitions + 1):
        for state in (*ebpf, *skipped):
            for count in threads:
                key = f"threads-{count}_ebpf-{state}_rep-{repetition}"
                notes[key] = {}
                for index, node in enumerate(nodes):
                    if state in skipped:
                        notes[key][node] = {"state": "skipped", "reason": SKIP_REASON, "at": "2026-11-27T15:02:10Z"}
                        continue
                    path = run_dir / "bench" / key / f"{node}.json"
                    path.parent.mkdir(parents=True, exist_ok=True)
                    document = result_document(run_id, node, index, count, state, repetition)
                    path.write_text(json.dumps(document, indent=1))
    (run_dir / "bench" / "sweep.json").write_text(json.dumps({"pairs": notes}, indent=2))
    (run_dir / "bench.csv").write_text("run_id,combination\n")
    return run_dir

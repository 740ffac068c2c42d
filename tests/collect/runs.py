"""Synthetic run directories shaped like the bench phase's output, with histograms drawn from a real-looking
latency distribution (lognormal body, heavy tail), so plots and reports run on the same files a sweep writes,
and the collect phase's exports of the eBPF program's counter and histogram."""

from __future__ import annotations

import csv
import itertools
import json
import math
import zlib
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path

from g5kdeploy.playbook import STATX_METRICS, Playbook
from g5kdeploy.results import DeployRecord, JobEntry, NodeDeployState, NodeFacts, PhaseRecord, RunRecord

NODES = ("gros-2.nancy.grid5000.fr", "gros-3.nancy.grid5000.fr")
JOB_UID = 1894417
KERNEL = "6.1.0-27-amd64-statx"
SKIP_REASON = "the local testbed runs the host's kernel: no custom kernel, no kprobe override"
# HDR-like bucket bounds: about 3 % wide, from 500 ns to ~20 ms.
BOUNDS = [int(500 * 1.03**index) for index in range(360)]
SAMPLES = 20_000
WARMUP, ITERATIONS = 1000, 200_000
#: The shipped playbooks' paths: the eBPF program's target first, an ordinary path second.
TARGET, ORDINARY = "/tmp/g5k-statx-target", "/etc/hostname"
PATHS = (TARGET, ORDINARY)
#: What the ordinary path's p50 gains with the program attached (base_ns adds it to every eBPF-on result).
PROBE_NS = 400


def _times(sec: int, nsec: int) -> dict[str, dict[str, int]]:
    return {name: {"sec": sec, "nsec": nsec} for name in ("atime", "mtime", "ctime", "btime")}


#: statx-bench's "statx" entry for the target while statx-override.bpf.c answers for it (its FAKE_* values).
FAKE_ANSWER = {"ok": True, "mask": 2047, "size": 424242, "mode": "0100644", "uid": 0, "gid": 0, "ino": 4242,
               "nlink": 1, "blksize": 4096, "blocks": 829, **_times(1000000000, 0)}  # fmt: skip
#: The paths' own answers.
REAL_ANSWERS = {
    TARGET: {"ok": True, "mask": 8191, "size": 23, "mode": "0100644", "uid": 0, "gid": 0, "ino": 77, "nlink": 1,
             "blksize": 4096, "blocks": 8, **_times(1796000000, 123)},
    ORDINARY: {"ok": True, "mask": 8191, "size": 3, "mode": "0100644", "uid": 0, "gid": 0, "ino": 612, "nlink": 1,
               "blksize": 4096, "blocks": 8, **_times(1795000000, 456)},
}  # fmt: skip


def base_ns(node_index: int, threads: int, ebpf: str, repetition: int) -> int:
    """The p50 a result file states: known in advance so tests can check the report's numbers."""
    return 1500 + 200 * (threads - 1) + (PROBE_NS if ebpf == "on" else 0) + 10 * node_index + 4 * repetition


def path_p50(path: str, node_index: int, threads: int, ebpf: str, repetition: int) -> int:
    """A path's own p50: the ordinary path's is base_ns; the target's is cheaper, and far cheaper overridden."""
    if path == TARGET:
        return (
            700 + 10 * node_index + 4 * repetition
            if ebpf == "on"
            else base_ns(node_index, threads, ebpf, repetition) - 300
        )
    return base_ns(node_index, threads, ebpf, repetition)


def share(calls: int, paths: int, index: int) -> int:
    """Calls of a loop of ``calls`` that use path ``index`` (call i uses path i % paths)."""
    return len(range(index, calls, paths))


def target_calls(threads: int, paths: Sequence[str] = PATHS) -> int:
    """statx calls on the target in one result: warm-up, timed and the sample call."""
    index = list(paths).index(TARGET)
    return threads * (share(WARMUP, len(paths), index) + share(ITERATIONS, len(paths), index)) + 1


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


def latency(median: float) -> dict[str, float]:
    return {"min": median * 0.7, "mean": median * 1.3, "p50": float(median), "p90": median * 1.2,
            "p99": median * 1.6, "p999": median * 15.0, "max": median * 900.0}  # fmt: skip


def result_document(
    run_id: str,
    node: str,
    node_index: int,
    threads: int,
    ebpf: str,
    repetition: int,
    paths: Sequence[str] = PATHS,
    override: bool = True,
) -> dict:
    """One node's result; with eBPF on and ``override``, the target path got the program's struct."""
    median = base_ns(node_index, threads, ebpf, repetition)
    calls = ITERATIONS * threads
    rate = 1e9 / median * threads * 0.9
    key = f"threads-{threads}_ebpf-{ebpf}_rep-{repetition}"
    per_path = {}
    for index, path in enumerate(paths):
        own = path_p50(path, node_index, threads, ebpf, repetition)
        timed, warm = threads * share(ITERATIONS, len(paths), index), threads * share(WARMUP, len(paths), index)
        per_path[path] = {
            "calls": timed + warm + 1,
            "warmup_calls": warm,
            "timed_calls": timed,
            "sample_calls": 1,
            "errors_total": 0,
            "latency_ns": latency(own),
            "histogram": {"buckets": histogram(own, zlib.crc32(f"{node} {key} {path}".encode()))},
        }
    answers = {path: REAL_ANSWERS.get(path, REAL_ANSWERS[ORDINARY]) for path in paths}
    if ebpf == "on" and override and TARGET in answers:
        answers[TARGET] = FAKE_ANSWER
    result = {
        "tool": "statx-bench",
        "version": 1,
        "config": {"paths": list(paths), "iterations": ITERATIONS, "threads": threads, "warmup": WARMUP},
        "calls": calls,
        "duration_s": calls / rate,
        "calls_per_s": rate,
        "latency_ns": latency(median),
        "histogram": {"sub_bucket_bits": 5, "buckets": histogram(median, zlib.crc32(f"{node} {key}".encode()))},
        "errors": {},
        "errors_total": 0,
        "per_path": per_path,
        "statx": answers,
    }  # fmt: skip
    # As the bench phase writes it: the playbook's metrics read from the workload's JSON output, which is kept whole.
    return {
        "run_id": run_id,
        "node": node,
        "combination": {"key": key, "repetition": repetition, "parameters": {"threads": threads, "ebpf": ebpf}},
        "command": statx_command(paths).format(threads=threads),
        "duration_s": calls / rate + 0.05,
        "finished_at": "2026-11-27T16:47:59Z",
        "metrics": {name: _at(result, dotted) for name, dotted in STATX_METRICS.items()},
        "result": result,
        "output_tail": None,
    }


def _at(document: dict, dotted: str) -> float:
    value: object = document
    for part in dotted.split("."):
        assert isinstance(value, dict)
        value = value[part]
    assert isinstance(value, int | float)
    return float(value)


def statx_command(paths: Sequence[str]) -> str:
    return (f"statx-bench --json --iterations {ITERATIONS} --warmup {WARMUP} --threads {{threads}} "
            + " ".join(f"--path {path}" for path in paths))  # fmt: skip


def statx_playbook(*, threads: Sequence[int], ebpf: Sequence[str], repetitions: int, paths: Sequence[str]) -> dict:
    """The statx playbooks' bench (version 2), with this sweep."""
    return {"version": 2, "name": "statx", "testbed": "grid5000",
            "reservation": {"site": "nancy", "walltime": "1:00",
                            "roles": {"collector": {"nodes": 1, "cluster": "gros"},
                                      "exporter": {"nodes": 2, "cluster": "gros"}}},
            "bench": {"roles": ["exporter"],
                      "workload": {"command": statx_command(paths), "output": "json", "metrics": dict(STATX_METRICS),
                                   "artifacts": ["statx-bench"]},
                      "parameters": {"threads": list(threads), "ebpf": list(ebpf)},
                      "repetitions": repetitions, "timeout": 300}}  # fmt: skip


def write_exports(
    run_dir: Path,
    overridden: Mapping[str, float],
    *,
    failed: Mapping[str, Mapping[str, float]] | None = None,
    samples: Mapping[str, Mapping[str, float]] | None = None,
) -> None:
    """``exports/statx_override.csv`` and ``statx_latency.csv`` as the collect phase writes them: a counter per
    (node, outcome) and a bucket series per (node, call, le), each rising over three scrapes to its total."""
    exports = run_dir / "exports"
    exports.mkdir(exist_ok=True)
    with (exports / "statx_override.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["timestamp", "value", "instance", "job", "node", "outcome"])
        for node, count in overridden.items():
            outcomes = {"matched": count, "overridden": count, "write_user_failed": 0.0, "path_read_failed": 0.0}
            outcomes |= (failed or {}).get(node, {})
            for outcome, total in outcomes.items():
                for step, share_of_total in enumerate((0.0, 0.5, 1.0)):
                    writer.writerow([f"{1796000000 + step:.3f}", repr(float(total * share_of_total)),
                                     f"{node}:9435", "ebpf", node, outcome])  # fmt: skip
    with (exports / "statx_latency.csv").open("w", newline="") as handle:
        writer = csv.writer(handle, lineterminator="\n")
        writer.writerow(["timestamp", "value", "call", "instance", "job", "le", "node"])
        for node, calls in (
            samples if samples is not None else {node: {"real": 1000.0} for node in overridden}
        ).items():
            for call, count in calls.items():
                for le, part in (("5.12e-07", 0.25), ("1.024e-06", 0.75), ("+Inf", 1.0)):
                    for step in range(3):
                        writer.writerow([f"{1796000000 + step:.3f}", repr(float(count * part * step / 2)), call,
                                         f"{node}:9435", "ebpf", le, node])  # fmt: skip


def make_run(
    root: Path,
    *,
    nodes: Sequence[str] = NODES,
    threads: Sequence[int] = (1, 2),
    ebpf: Sequence[str] = ("off", "on"),
    repetitions: int = 2,
    skipped: Sequence[str] = (),
    paths: Sequence[str] = PATHS,
    override: bool = True,
) -> Path:
    """A finished run under ``root``; eBPF states in ``skipped`` are noted in sweep.json instead of run.

    With eBPF on, the target path gets the program's struct (unless not ``override``), and the exports hold the
    counter and histogram of a program that overrode every call on it.
    """
    run_id = "statx-20261127T150000-ab12"
    run_dir = root / run_id
    collector = "gros-1.nancy.grid5000.fr"
    record = RunRecord(
        run_id=run_id,
        playbook_path="playbooks/statx.yaml",
        playbook=Playbook.model_validate(statx_playbook(threads=threads, ebpf=[*ebpf, *skipped],
                                                        repetitions=repetitions, paths=paths)),
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
                                  deployment="nancy/D-42",
                                  facts=NodeFacts(kernel=KERNEL, system="/nix/store/abc-nixos-system"))
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
                    document = result_document(run_id, node, index, count, state, repetition, paths, override)
                    path.write_text(json.dumps(document, indent=1))
    (run_dir / "bench" / "sweep.json").write_text(json.dumps({"pairs": notes}, indent=2))
    (run_dir / "bench.csv").write_text("run_id,combination\n")
    if "on" in ebpf and TARGET in paths:
        per_node = repetitions * sum(target_calls(count, paths) for count in threads)
        write_exports(run_dir, {node: float(per_node if override else 0) for node in nodes})
    return run_dir


#: sysbench's memory test as a regex workload: a numeric parameter (threads) and a text one (block).
SYSBENCH = {
    "command": "sysbench memory --threads={threads} --memory-block-size={block} run",
    "output": "regex",
    "pattern": r"\((?P<ops_per_s>[0-9.]+) per second\)[\s\S]*?avg:\s+(?P<latency_ms>[0-9.]+)",
}
SYSBENCH_PARAMETERS = {"threads": [1, 2, 4], "block": ["4k", "64k"]}
SYSBENCH_EXCLUDE = [{"threads": 4, "block": "64k"}]


def sysbench_metrics(parameters: Mapping[str, object], node_index: int, repetition: int) -> dict[str, float]:
    """What a node's sysbench reports: known in advance so tests can check the report's numbers."""
    threads = int(str(parameters["threads"]))
    per_block = 1.0 if parameters["block"] == "4k" else 0.25
    return {"ops_per_s": 1_000_000 * threads * per_block + 1000 * node_index + 100 * repetition,
            "latency_ms": 0.5 * threads / per_block + 0.01 * node_index}  # fmt: skip


def make_workload_run(
    root: Path,
    workload: Mapping[str, object] = SYSBENCH,
    parameters: Mapping[str, Sequence[object]] = SYSBENCH_PARAMETERS,
    *,
    metrics: Callable[[Mapping[str, object], int, int], dict[str, float]] = sysbench_metrics,
    exclude: Sequence[Mapping[str, object]] = SYSBENCH_EXCLUDE,
    repetitions: int = 2,
    nodes: Sequence[str] = NODES,
) -> Path:
    """A finished run of a workload other than statx-bench, its result files as the bench phase writes them."""
    run_id = "sysbench-20261127T150000-cd34"
    run_dir = root / run_id
    collector = "gros-1.nancy.grid5000.fr"
    playbook = Playbook.model_validate({
        "version": 2, "name": "sysbench", "testbed": "grid5000",
        "reservation": {"site": "nancy", "walltime": "1:00",
                        "roles": {"collector": {"nodes": 1, "cluster": "gros"},
                                  "exporter": {"nodes": len(nodes), "cluster": "gros"}}},
        "bench": {"roles": ["exporter"], "workload": dict(workload),
                  "parameters": {name: list(values) for name, values in parameters.items()},
                  "exclude": [dict(entry) for entry in exclude], "repetitions": repetitions},
    })  # fmt: skip
    record = RunRecord(
        run_id=run_id,
        playbook_path="playbooks/sysbench.yaml",
        playbook=playbook,
        testbed="grid5000",
        api_url="https://api.grid5000.fr/stable",
        phases={name: PhaseRecord(state="done", started_at=f"2026-11-27T15:0{i}:00Z",
                                  finished_at=f"2026-11-27T15:0{i}:4{i}Z")
                for i, name in enumerate(("reserve", "deploy", "bench"))},
        roles={"collector": [collector], "exporter": list(nodes)},
    )  # fmt: skip
    run_dir.mkdir(parents=True)
    (run_dir / "run.json").write_text(json.dumps(record.model_dump(mode="json"), indent=2))
    assert playbook.bench is not None
    for combination in playbook.bench.combinations():
        for index, node in enumerate(nodes):
            found = metrics(combination.values, index, combination.repetition)
            output = " ".join(f"{name}={value}" for name, value in found.items())
            document = {
                "run_id": run_id,
                "node": node,
                "combination": {"key": combination.key, "repetition": combination.repetition,
                                "parameters": combination.values},
                "command": playbook.bench.workload.command.format(**combination.values),
                "duration_s": 10.0,
                "finished_at": "2026-11-27T15:02:30Z",
                "metrics": found,
                "result": None,
                "output_tail": output,
            }  # fmt: skip
            path = run_dir / "bench" / combination.key / f"{node}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(document, indent=1))
    (run_dir / "bench" / "sweep.json").write_text(json.dumps({"pairs": {}}))
    return run_dir

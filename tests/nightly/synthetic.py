"""Synthetic histories written as real run directories: ``run.json`` through ``RunStore``/``RunRecord`` with a
version-2 playbook, bench result files as the bench phase writes them (with repetitions and two nodes), node
facts as collect writes them and the override counter's CSV export, so ``load_history`` reads what it reads in
production. Two workloads: statx-bench (JSON, swept over threads and eBPF) and sysbench's memory test (a regex,
swept over threads and block size), so the history is shown to work for a workload other than statx."""

from __future__ import annotations

import json
from collections.abc import Callable, Mapping, Sequence
from dataclasses import dataclass
from datetime import UTC, datetime, timedelta
from pathlib import Path
from typing import Any

import numpy as np

from g5kdeploy.playbook import STATX_METRICS, Combination, Playbook
from g5kdeploy.results import DeployRecord, JobEntry, NodeDeployState, NodeFacts, PhaseRecord, RunRecord, RunStore

PLAYBOOK = "statx"
SYSBENCH = "sysbench"
START = datetime(2026, 11, 1, 22, 0, tzinfo=UTC)
CONFIG_A = "a" * 64
CONFIG_B = "b" * 64
#: Levels before any scaling: p50 and p99 in ns, calls/s, overrides per run.
BASE = {"p50_ns": 1500.0, "p99_ns": 2400.0, "calls_per_s": 600_000.0, "override_total": 400_000.0}
#: A key of ``scale``: a metric, or a metric and a combination's values in the playbook's order.
Scale = Mapping[tuple[Any, ...] | str, float]


def base_level(metric: str, threads: int, ebpf: str) -> float:
    """Combinations differ in level, as on a real node, so a mix-up between them would show."""
    if metric == "override_total":
        return BASE[metric]
    if metric == "calls_per_s":
        return BASE[metric] * threads * (0.8 if ebpf == "on" else 1.0)
    return BASE[metric] * (1 + 0.15 * (threads - 1)) * (1.3 if ebpf == "on" else 1.0)


def sysbench_level(metric: str, threads: int, block: str) -> float:
    """sysbench memory: operations per second scale with threads and shrink with the block size, latency grows."""
    blocks = 1.0 if block == "4k" else 16.0
    if metric == "ops_per_s":
        return 2_000_000.0 * threads / blocks
    return 0.4 * blocks * (1 + 0.1 * (threads - 1))


@dataclass(frozen=True)
class Workload:
    """How a playbook's bench is written: its bench section, and each result's metrics and document."""

    bench: Callable[[dict[str, list[Any]], int], dict[str, Any]]
    level: Callable[[str, Any, Any], float]
    metrics: tuple[str, ...]
    #: The result document's ``result`` and ``output_tail`` for one node's metrics.
    output: Callable[[dict[str, Any], dict[str, float]], tuple[dict[str, Any] | None, str | None]]


def _statx_bench(parameters: dict[str, list[Any]], repetitions: int) -> dict[str, Any]:
    return {"roles": ["exporter"], "repetitions": repetitions, "parameters": parameters,
            "workload": {"command": "statx-bench --json --threads {threads} --path /etc/hostname", "output": "json",
                         "metrics": dict(STATX_METRICS), "artifacts": ["statx-bench"]}}  # fmt: skip


def _statx_output(values: dict[str, Any], metrics: dict[str, float]) -> tuple[dict[str, Any], None]:
    threads, p50, p99, rate = values["threads"], metrics["p50_ns"], metrics["p99_ns"], metrics["calls_per_s"]
    calls = 200_000 * threads
    return {
        "tool": "statx-bench", "version": 1,
        "config": {"paths": ["/etc/hostname"], "iterations": 200000, "threads": threads, "warmup": 1000},
        "calls": calls, "duration_s": calls / rate, "calls_per_s": rate,
        "latency_ns": {"min": p50 * 0.7, "mean": p50 * 1.1, "p50": p50, "p90": (p50 + p99) / 2, "p99": p99,
                       "p999": p99 * 10, "max": p99 * 900},
        "histogram": {"sub_bucket_bits": 5, "buckets": [{"lo_ns": int(p50 * 0.9), "hi_ns": int(p50 * 1.1) + 1,
                                                         "count": calls}]},
        "errors": {}, "errors_total": 0,
    }, None  # fmt: skip


def _sysbench_bench(parameters: dict[str, list[Any]], repetitions: int) -> dict[str, Any]:
    return {"roles": ["exporter"], "repetitions": repetitions, "parameters": parameters,
            "workload": {"command": "sysbench memory --threads={threads} --memory-block-size={block} run",
                         "output": "regex",
                         "pattern": r"\((?P<ops_per_s>[0-9.]+) per second\)"
                                    r"[\s\S]*?avg:\s+(?P<latency_ms>[0-9.]+)"}}  # fmt: skip


def _sysbench_output(_values: dict[str, Any], metrics: dict[str, float]) -> tuple[None, str]:
    return None, (f"Total operations: 104857600 ({metrics['ops_per_s']:.2f} per second)\n"
                  f"Latency (ms):\n         min: 0.00\n         avg: {metrics['latency_ms']:.4f}\n")  # fmt: skip


WORKLOADS = {
    PLAYBOOK: (Workload(_statx_bench, base_level, ("p50_ns", "p99_ns", "calls_per_s"), _statx_output),
               {"threads": [1, 2], "ebpf": ["off", "on"]}),
    SYSBENCH: (Workload(_sysbench_bench, sysbench_level, ("ops_per_s", "latency_ms"), _sysbench_output),
               {"threads": [1, 2], "block": ["4k", "64k"]}),
}  # fmt: skip


def write_run(
    store: RunStore,
    number: int,
    *,
    rng: np.random.Generator,
    noise: float = 0.02,
    scale: Scale | None = None,
    cluster: str = "gros",
    config: str | None = CONFIG_A,
    threads: Sequence[int] = (1, 2),
    ebpf: Sequence[str] = ("off", "on"),
    repetitions: int = 3,
    nodes: int = 2,
    bench_state: str | None = "done",
    override: bool = True,
    playbook: str = PLAYBOOK,
    workload: str = PLAYBOOK,
    results: bool = True,
) -> str:
    """Run number ``number`` (1-based; one per night) and its id.

    ``workload`` is statx-bench (``statx``, swept over ``threads`` and ``ebpf``) or ``sysbench`` (over threads
    and block sizes). ``scale`` multiplies a level: by metric (``"p50_ns"``) or by metric and combination
    (``("p50_ns", 2, "on")``). Every value is drawn with ``noise`` relative gaussian noise, independently per node
    and repetition.
    """
    factors = scale or {}
    created = START + timedelta(days=number - 1)
    run_id = f"{playbook}-{created:%Y%m%dT%H%M%S}-r{number:03d}"
    names = [f"{cluster}-{index}.nancy.grid5000.fr" for index in range(2, 2 + nodes)]
    collector = f"{cluster}-1.nancy.grid5000.fr"
    kind, parameters = WORKLOADS[workload]
    if workload == PLAYBOOK:
        parameters = {"threads": list(threads), "ebpf": list(ebpf)}
    book = Playbook.model_validate({
        "version": 2, "name": playbook, "testbed": "grid5000",
        "reservation": {"site": "nancy", "walltime": "1:00",
                        "roles": {"collector": {"nodes": 1, "cluster": cluster},
                                  "exporter": {"nodes": nodes, "cluster": cluster}}},
        "bench": kind.bench(parameters, repetitions),
    })  # fmt: skip
    assert book.bench is not None
    phases = {"reserve": PhaseRecord(state="done", started_at=_at(created, 0), finished_at=_at(created, 60))}
    if bench_state is not None:
        phases["deploy"] = PhaseRecord(state="done", started_at=_at(created, 60), finished_at=_at(created, 600))
        phases["bench"] = PhaseRecord(
            state=bench_state,  # type: ignore[arg-type]
            started_at=_at(created, 600),
            finished_at=None if bench_state == "running" else _at(created, 900),
            error="node gros-2 unreachable" if bench_state == "failed" else None,
        )
    record = RunRecord(
        run_id=run_id,
        created_at=_at(created, 0),
        playbook_path=f"playbooks/{playbook}.yaml",
        playbook=book,
        testbed="grid5000",
        api_url="https://api.grid5000.fr/stable",
        phases=phases,
        jobs=[JobEntry(site="nancy", name=run_id, resources=f"{{cluster='{cluster}'}}/nodes={nodes + 1}",
                       walltime=3600, uid=1_000_000 + number, state="terminated", nodes=[collector, *names])],
        roles={"collector": [collector], "exporter": names},
        deploy=DeployRecord(method="kadeploy", marker=f"m{number:05d}", nodes={
            node: NodeDeployState(state="verified", attempts=1, facts=NodeFacts(kernel="6.1.0-statx"))
            for node in [collector, *names]}),
    )  # fmt: skip
    store.create(record)
    run_dir = store.directory(run_id)
    if bench_state is None or not results:
        return run_id

    def value(metric: str, values: Sequence[Any]) -> float:
        level = kind.level(metric, *values) * factors.get(metric, 1.0) * factors.get((metric, *values), 1.0)
        return float(level * (1 + noise * rng.standard_normal()))

    # Drawn repetition by repetition, the last parameter outermost (eBPF state, then threads): the order the
    # histories' fixed seeds were first drawn in, so they keep the values the tests were written against.
    def drawn(combination: Combination) -> tuple[int, ...]:
        places = [values.index(combination.values[name]) for name, values in parameters.items()]
        return (combination.repetition, *reversed(places))

    for combination in sorted(book.bench.combinations(), key=drawn):
        for node in names:
            metrics = {metric: value(metric, list(combination.values.values())) for metric in kind.metrics}
            result, tail = kind.output(combination.values, metrics)
            document = {
                "run_id": run_id,
                "node": node,
                "combination": {"key": combination.key, "repetition": combination.repetition,
                                "parameters": combination.values},
                "command": book.bench.workload.command.format(**combination.values),
                "duration_s": 1.5,
                "finished_at": "2026-11-27T16:55:26Z",
                "metrics": {**metrics, **_derived(result)},
                "result": result,
                "output_tail": tail,
            }  # fmt: skip
            path = run_dir / "bench" / combination.key / f"{node}.json"
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(json.dumps(document, indent=1) + "\n")
    (run_dir / "bench" / "sweep.json").write_text(json.dumps({"pairs": {}}) + "\n")
    for node in [collector, *names]:
        facts = {"node": node, "kernel": "6.1.0-statx", "config_sha256": config, "reachable": True,
                 "reference": {"uid": node.split(".")[0], "type": "node"}}  # fmt: skip
        if config is None:
            del facts["config_sha256"]
        (run_dir / "nodes").mkdir(exist_ok=True)
        (run_dir / "nodes" / f"{node}.json").write_text(json.dumps(facts, indent=1) + "\n")
    if override:
        _override_csv(run_dir, created, names, [value("override_total", (1, "on")) / len(names) for _ in names])
    return run_id


def _derived(result: dict[str, Any] | None) -> dict[str, float]:
    """The statx playbooks' other metrics, read from statx-bench's JSON as the bench phase reads them."""
    if result is None:
        return {}
    found: dict[str, float] = {}
    for name, dotted in STATX_METRICS.items():
        value: Any = result
        for part in dotted.split("."):
            value = value[part]
        found[name] = float(value)
    return found


def _override_csv(run_dir: Path, created: datetime, nodes: Sequence[str], totals: Sequence[float]) -> None:
    """Long format as ``tools.prometheus.write_csv`` writes it: counters rising to their final total."""
    lines = ["timestamp,value,instance,job,node,outcome"]
    start = created.timestamp() + 600
    for node, total in zip(nodes, totals, strict=True):
        for step, share in enumerate((0.0, 0.5, 1.0)):
            lines.append(f"{start + step:.3f},{total * share},{node}:9435,ebpf,{node},overridden")
            lines.append(f"{start + step:.3f},{7 * step},{node}:9435,ebpf,{node},passed")
    (run_dir / "exports").mkdir(exist_ok=True)
    (run_dir / "exports" / "statx_override.csv").write_text("\n".join(lines) + "\n")


def _at(moment: datetime, seconds: int) -> str:
    return (moment + timedelta(seconds=seconds)).strftime("%Y-%m-%dT%H:%M:%SZ")


def write_history(
    root: Path,
    runs: int,
    *,
    seed: int,
    scale_from: Mapping[int, Scale] | None = None,
    cluster_from: Mapping[int, str] | None = None,
    config_from: Mapping[int, str | None] | None = None,
    **options: object,
) -> list[str]:
    """``runs`` runs; ``scale_from``/``cluster_from``/``config_from`` map a run number to what holds from it on."""
    store = RunStore(root)
    rng = np.random.default_rng(seed)
    ids: list[str] = []
    scale: Scale = {}
    cluster, config = "gros", CONFIG_A
    for number in range(1, runs + 1):
        scale = (scale_from or {}).get(number, scale)
        cluster = (cluster_from or {}).get(number, cluster)
        config = (config_from or {}).get(number, config)
        ids.append(write_run(store, number, rng=rng, scale=scale, cluster=cluster, config=config, **options))  # type: ignore[arg-type]
    return ids

"""The bench phase: the statx sweep, every combination on every selected node, resumable.

A combination's result on a node is done exactly when its JSON file exists under ``bench/<combination>/``
(written atomically), so a sweep killed at any point resumes where it was: finished pairs are never run
again, the pairs in flight are redone, and failures recorded in ``bench/sweep.json`` are retried on the next
run. A node that fails or drops is marked failed with the reason, the others go on.
"""

from __future__ import annotations

import csv
import io
import json
import shlex
import shutil
from collections.abc import Callable, Sequence
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from g5kdeploy.errors import ConfigError
from g5kdeploy.files import atomic_write_text
from g5kdeploy.log import get_logger
from g5kdeploy.payload import build_statx_bench
from g5kdeploy.playbook import Bench
from g5kdeploy.remote import CommandResult, SshRunner
from g5kdeploy.results import NodeAccess, RunRecord, RunStore, finish_phase, start_phase, utc_now
from g5kdeploy.testbeds.base import Testbed

log = get_logger(__name__)
PHASE = "bench"
BENCH_DIR = "bench"
BINARY = "statx-bench"
SETUP_TIMEOUT = 300.0
#: Called with (pairs finished, pairs in all, what is running now).
OnProgress = Callable[[int, int, str], None]
CSV_FIELDS = (
    "combination", "threads", "ebpf", "repetition", "node", "calls", "calls_per_s", "duration_s",
    "min_ns", "p50_ns", "p90_ns", "p99_ns", "p999_ns", "max_ns", "errors_total",
)  # fmt: skip


@dataclass(frozen=True)
class Combination:
    threads: int
    ebpf: str
    repetition: int

    @property
    def key(self) -> str:
        return f"threads-{self.threads}_ebpf-{self.ebpf}_rep-{self.repetition}"


def combinations(bench: Bench) -> list[Combination]:
    """Repetitions outermost: a sweep cut short still has every (threads, eBPF) pair measured at least once."""
    return [
        Combination(threads, ebpf, repetition)
        for repetition in range(1, bench.repetitions + 1)
        for ebpf in bench.ebpf
        for threads in bench.threads
    ]


@dataclass
class BenchSummary:
    done: int = 0
    ran: int = 0
    failed: dict[str, str] = field(default_factory=dict)
    skipped: dict[str, str] = field(default_factory=dict)
    csv: Path | None = None

    @property
    def complete(self) -> bool:
        return not self.failed


class Sweep:
    """Where each (combination, node) pair stands, on disk."""

    def __init__(self, directory: Path) -> None:
        self.directory = directory
        self.state_file = directory / "sweep.json"
        self.notes: dict[str, dict[str, dict[str, str]]] = {}
        if self.state_file.exists():
            self.notes = json.loads(self.state_file.read_text()).get("pairs", {})

    def result_path(self, combination: Combination, node: str) -> Path:
        return self.directory / combination.key / f"{node}.json"

    def is_done(self, combination: Combination, node: str) -> bool:
        path = self.result_path(combination, node)
        try:
            return json.loads(path.read_text()).get("result", {}).get("tool") == BINARY
        except (OSError, json.JSONDecodeError):
            return False

    def note(self, combination: Combination, node: str, state: str, reason: str) -> None:
        self.notes.setdefault(combination.key, {})[node] = {"state": state, "reason": reason, "at": utc_now()}

    def clear(self, combination: Combination, node: str) -> None:
        self.notes.get(combination.key, {}).pop(node, None)

    def save(self) -> None:
        atomic_write_text(self.state_file, json.dumps({"pairs": self.notes}, indent=2, sort_keys=True) + "\n")

    def archive(self) -> Path | None:
        """Move every earlier result aside (``--redo``); nothing is deleted."""
        if not self.directory.exists() or not any(self.directory.iterdir()):
            return None
        target = self.directory.parent / f"{BENCH_DIR}-before-redo-{utc_now().replace(':', '')}"
        shutil.move(self.directory, target)
        self.notes = {}
        return target


def run_bench(
    record: RunRecord,
    store: RunStore,
    testbed: Testbed,
    *,
    redo: bool = False,
    on_progress: OnProgress | None = None,
) -> BenchSummary:
    """Run the playbook's sweep on the run's nodes; finished pairs are skipped unless ``redo``."""
    playbook = record.playbook
    if playbook.bench is None:
        raise ConfigError(
            f"{record.playbook_path}: no bench section",
            hint="add bench: {paths: [/etc/hostname], threads: [1, 2], iterations: 100000}",
        )
    if not record.roles:
        raise ConfigError(f"run {record.run_id} has no nodes yet", hint=f"g5k reserve --run {record.run_id}")
    bench = playbook.bench
    nodes = sorted({node for role in playbook.bench_roles for node in record.roles.get(role, [])})
    run_dir = store.directory(record.run_id)
    sweep = Sweep(run_dir / BENCH_DIR)
    if redo and (moved := sweep.archive()):
        log.info("earlier results moved aside", to=str(moved))
    start_phase(record, PHASE)
    store.save(record)
    summary = BenchSummary()
    error: str | None = None
    try:
        access = testbed.access(record, store)
        with SshRunner(Path(access.ssh_config)) as runner:
            # A deploy phase leaves the benchmark on the nodes (in the NixOS closure, or pushed with checksums).
            lost: dict[str, str] = {}
            if record.bench_binary is None:
                lost = _install(runner, nodes, access.workdirs, build_statx_bench(run_dir / "build"))
            _sweep(record, runner, bench, nodes, access, sweep, lost, testbed.ebpf_unavailable(record),
                   summary, on_progress)  # fmt: skip
    except BaseException as exc:
        error = str(exc) or type(exc).__name__
        raise
    finally:
        sweep.save()
        summary.csv = write_csv(record.run_id, sweep, combinations(bench), nodes)
        if error is None and summary.failed:
            error = f"{len(summary.failed)} (combination, node) pairs failed"
        finish_phase(record, PHASE, error=error)
        store.save(record)
    return summary


def _install(runner: SshRunner, nodes: list[str], workdirs: dict[str, str], binary: Path) -> dict[str, str]:
    """Push the benchmark to every node (sha256 checked there); returns the nodes it could not reach."""
    lost: dict[str, str] = {}
    for workdir in sorted(set(workdirs.values())):
        group = [node for node in nodes if workdirs[node] == workdir]
        made = runner.run(group, f"mkdir -p {shlex.quote(workdir)}", timeout=SETUP_TIMEOUT)
        ready = [node for node in group if made[node].ok]
        lost |= {node: _reason(made[node]) for node in group if not made[node].ok}
        sent = runner.put(ready, binary, f"{workdir}/{BINARY}", timeout=SETUP_TIMEOUT)
        lost |= {node: f"could not install {BINARY}: {sent[node].error}" for node in ready if not sent[node].ok}
        marked = runner.run(ready, f"chmod 755 {shlex.quote(workdir)}/{BINARY}", timeout=SETUP_TIMEOUT)
        lost |= {node: _reason(marked[node]) for node in ready if not marked[node].ok and node not in lost}
    for node, reason in lost.items():
        log.warning("node left out of the sweep", node=node, reason=reason)
    return lost


def _sweep(
    record: RunRecord,
    runner: SshRunner,
    bench: Bench,
    nodes: list[str],
    access: NodeAccess,
    sweep: Sweep,
    lost: dict[str, str],
    ebpf_unavailable: str | None,
    summary: BenchSummary,
    on_progress: OnProgress | None,
) -> None:
    plan = combinations(bench)
    total = len(plan) * len(nodes)
    finished = 0
    for combination in plan:
        todo: list[str] = []
        for node in nodes:
            label = f"{combination.key} on {node}"
            if sweep.is_done(combination, node):
                sweep.clear(combination, node)
                summary.done += 1
            elif combination.ebpf == "on" and ebpf_unavailable:
                sweep.note(combination, node, "skipped", ebpf_unavailable)
                summary.skipped[label] = ebpf_unavailable
            elif node in lost:
                sweep.note(combination, node, "failed", lost[node])
                summary.failed[label] = lost[node]
            else:
                todo.append(node)
        finished += len(nodes) - len(todo)
        if on_progress:
            on_progress(finished, total, combination.key)
        if not todo:
            continue
        for node in todo:
            sweep.note(combination, node, "running", "started")
        sweep.save()
        outcomes = _run_combination(record, runner, bench, combination, todo, access)
        for node in todo:
            result = outcomes[node]
            label = f"{combination.key} on {node}"
            parsed = _parse(result)
            if isinstance(parsed, dict):
                document = {
                    "run_id": record.run_id,
                    "node": node,
                    "combination": {"threads": combination.threads, "ebpf": combination.ebpf,
                                    "repetition": combination.repetition, "key": combination.key},
                    "paths": bench.paths,
                    "duration_s": result.duration,
                    "finished_at": utc_now(),
                    "result": parsed,
                }  # fmt: skip
                atomic_write_text(sweep.result_path(combination, node), json.dumps(document, indent=1) + "\n")
                sweep.clear(combination, node)
                summary.ran += 1
                continue
            sweep.note(combination, node, "failed", parsed)
            summary.failed[label] = parsed
            if _unreachable(result):
                lost[node] = f"unreachable since {combination.key}: {parsed}"
        sweep.save()
        finished += len(todo)
        if on_progress:
            on_progress(finished, total, combination.key)


def _run_combination(
    record: RunRecord,
    runner: SshRunner,
    bench: Bench,
    combination: Combination,
    nodes: list[str],
    access: NodeAccess,
) -> dict[str, CommandResult]:
    toggle = (record.ebpf_toggle or {}).get(combination.ebpf)
    arguments = [record.bench_binary or f"./{BINARY}", "--json", "--iterations", str(bench.iterations), "--threads",
                 str(combination.threads), "--warmup", str(bench.warmup)]  # fmt: skip
    for path in bench.paths:
        arguments += ["--path", path]
    steps = [
        'cd "$G5K_NODE_DIR"',
        f"printf '%s %s\\n' \"$(date -u +%FT%TZ)\" {shlex.quote(combination.key)} >> bench.log",
    ]
    if toggle:
        steps.append(toggle)
    steps.append(shlex.join(arguments))
    return runner.run(nodes, " && ".join(steps), timeout=bench.timeout, env=access.workdir_env(nodes))


def _reason(result: CommandResult) -> str:
    if result.timed_out:
        return "timed out"
    if result.error:
        return result.error
    tail = result.stderr.strip().splitlines()[-3:]
    return f"exit code {result.exit_code}" + (f": {' | '.join(tail)}" if tail else "")


def _parse(result: CommandResult) -> dict[str, Any] | str:
    """The benchmark's JSON, or why there is none."""
    if not result.ok:
        return _reason(result)
    try:
        parsed = json.loads(result.stdout)
    except json.JSONDecodeError:
        return f"{BINARY} printed no JSON: {result.stdout[:200]!r}"
    if not isinstance(parsed, dict) or parsed.get("tool") != BINARY:
        return f"unexpected output from {BINARY}"
    return parsed


def _unreachable(result: CommandResult) -> bool:
    return result.exit_code == 255 or (result.exit_code is None and not result.timed_out)


def write_csv(run_id: str, sweep: Sweep, plan: Sequence[Combination], nodes: Sequence[str]) -> Path:
    """``bench.csv``: one row per finished (combination, node), rebuilt from the result files."""
    buffer = io.StringIO()
    writer = csv.DictWriter(buffer, fieldnames=("run_id", *CSV_FIELDS))
    writer.writeheader()
    for combination in plan:
        for node in nodes:
            if not sweep.is_done(combination, node):
                continue
            result = json.loads(sweep.result_path(combination, node).read_text())["result"]
            latency = result.get("latency_ns") or {}
            writer.writerow({
                "run_id": run_id, "combination": combination.key, "threads": combination.threads,
                "ebpf": combination.ebpf, "repetition": combination.repetition, "node": node,
                "calls": result.get("calls"), "calls_per_s": result.get("calls_per_s"),
                "duration_s": result.get("duration_s"), "errors_total": result.get("errors_total"),
                **{f"{name}_ns": latency.get(name) for name in ("min", "p50", "p90", "p99", "p999", "max")},
            })  # fmt: skip
    path = sweep.directory.parent / "bench.csv"
    atomic_write_text(path, buffer.getvalue())
    return path

"""The bench phase: the playbook's sweep, every combination on every selected node at once, resumable.

A combination's result on a node is done exactly when its JSON file exists under ``bench/<combination>/``
(written atomically), so a sweep killed at any point resumes where it was: finished pairs are never run
again, the pairs in flight are redone, and failures recorded in ``bench/sweep.json`` are retried on the next
run. A node that fails or drops is marked failed with the reason, the others go on.

The workload is any command: its format fields take the combination's values (shell-quoted), it runs in the
node's working directory with the run's artifacts on ``PATH``, and its output becomes metrics by the
playbook's parser (:mod:`g5kdeploy.bench.metrics`). The ``ebpf`` parameter attaches or detaches the run's eBPF
programs before the command.
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

from g5kdeploy.bench.metrics import parse_output
from g5kdeploy.errors import ConfigError
from g5kdeploy.files import atomic_write_text
from g5kdeploy.log import get_logger
from g5kdeploy.payload import build_statx_bench
from g5kdeploy.playbook import BUILTIN_ARTIFACTS, EBPF_PARAMETER, Bench, Combination, artifact_path
from g5kdeploy.remote import CommandResult, SshRunner
from g5kdeploy.results import NodeAccess, RunRecord, RunStore, finish_phase, start_phase, utc_now
from g5kdeploy.testbeds.base import Testbed

log = get_logger(__name__)
PHASE = "bench"
BENCH_DIR = "bench"
#: In the node's working directory, on PATH for the workload: where its artifacts are.
ARTIFACTS_DIR = "artifacts"
SETUP_TIMEOUT = 300.0
#: The end of a command's output kept in its result file (the whole of it is parsed).
OUTPUT_TAIL = 4096
#: Called with (pairs finished, pairs in all, what is running now).
OnProgress = Callable[[int, int, str], None]


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

    def result(self, combination: Combination, node: str) -> dict[str, Any] | None:
        """The pair's finished result document, or None."""
        try:
            document = json.loads(self.result_path(combination, node).read_text())
        except (OSError, json.JSONDecodeError):
            return None
        return document if isinstance(document, dict) and isinstance(document.get("metrics"), dict) else None

    def is_done(self, combination: Combination, node: str) -> bool:
        return self.result(combination, node) is not None

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
            hint='add bench: {workload: {command: "..."}, parameters: {...}} (see the README)',
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
            missing = [name for name in bench.workload.artifacts if name not in (record.provided or [])]
            lost = _install(runner, nodes, access.workdirs, _staged(record, run_dir, missing)) if missing else {}
            _sweep(record, runner, bench, nodes, access, sweep, lost, testbed.ebpf_unavailable(record),
                   summary, on_progress)  # fmt: skip
    except BaseException as exc:
        error = str(exc) or type(exc).__name__
        raise
    finally:
        sweep.save()
        summary.csv = write_csv(record.run_id, sweep, bench.combinations(), nodes)
        if error is None and summary.failed:
            error = f"{len(summary.failed)} (combination, node) pairs failed"
        finish_phase(record, PHASE, error=error)
        store.save(record)
    return summary


def _staged(record: RunRecord, run_dir: Path, names: list[str]) -> list[Path]:
    """The artifacts no deploy put on the nodes, as local files: statx-bench built here, the others as given."""
    playbook_path = Path(record.playbook_path)
    return [
        build_statx_bench(run_dir / "build") if name in BUILTIN_ARTIFACTS else artifact_path(playbook_path, name)
        for name in names
    ]


def _install(runner: SshRunner, nodes: list[str], workdirs: dict[str, str], files: list[Path]) -> dict[str, str]:
    """Push the artifacts into every node's ``artifacts/`` (sha256 checked there); returns the nodes it could not
    reach, with why."""
    lost: dict[str, str] = {}
    for workdir in sorted(set(workdirs.values())):
        group = [node for node in nodes if workdirs[node] == workdir]
        target = f"{workdir}/{ARTIFACTS_DIR}"
        made = runner.run(group, f"mkdir -p {shlex.quote(target)}", timeout=SETUP_TIMEOUT)
        ready = [node for node in group if made[node].ok]
        lost |= {node: _reason(made[node]) for node in group if not made[node].ok}
        for path in files:
            sent = runner.put(ready, path, f"{target}/{path.name}", timeout=SETUP_TIMEOUT)
            lost |= {node: f"could not install {path.name}: {sent[node].error}" for node in ready if not sent[node].ok}
        executable = " ".join(shlex.quote(f"{target}/{path.name}") for path in files if path.stat().st_mode & 0o111)
        if executable:
            marked = runner.run(ready, f"chmod 755 {executable}", timeout=SETUP_TIMEOUT)
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
    plan = bench.combinations()
    total = len(plan) * len(nodes)
    finished = 0
    for combination in plan:
        todo: list[str] = []
        for node in nodes:
            label = f"{combination.key} on {node}"
            if sweep.is_done(combination, node):
                sweep.clear(combination, node)
                summary.done += 1
            elif combination.value(EBPF_PARAMETER) == "on" and ebpf_unavailable:
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
        command = workload_command(bench, combination)
        outcomes = _run_combination(record, runner, bench, combination, command, todo, access)
        for node in todo:
            result = outcomes[node]
            label = f"{combination.key} on {node}"
            parsed = parse_output(bench.workload, result.stdout) if result.ok else _reason(result)
            if not isinstance(parsed, str):
                document = {
                    "run_id": record.run_id,
                    "node": node,
                    "combination": {"key": combination.key, "repetition": combination.repetition,
                                    "parameters": combination.values},
                    "command": command,
                    "duration_s": result.duration,
                    "finished_at": utc_now(),
                    "metrics": parsed.metrics,
                    "result": parsed.document,
                    "output_tail": None if parsed.document is not None else result.stdout[-OUTPUT_TAIL:],
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


def workload_command(bench: Bench, combination: Combination) -> str:
    """The workload's command for one combination: each field its value, shell-quoted."""
    values = {name: shlex.quote(str(value)) for name, value in combination.parameters}
    return bench.workload.command.format(**values, repetition=combination.repetition)


def _run_combination(
    record: RunRecord,
    runner: SshRunner,
    bench: Bench,
    combination: Combination,
    command: str,
    nodes: list[str],
    access: NodeAccess,
) -> dict[str, CommandResult]:
    ebpf = combination.value(EBPF_PARAMETER)
    toggle = (record.ebpf_toggle or {}).get(str(ebpf)) if ebpf is not None else None
    steps = [
        'cd "$G5K_NODE_DIR"',
        f'export PATH="$G5K_NODE_DIR/{ARTIFACTS_DIR}:$PATH"',
        f"printf '%s %s\\n' \"$(date -u +%FT%TZ)\" {shlex.quote(combination.key)} >> bench.log",
    ]
    if toggle:
        steps.append(toggle)
    # The command runs in a shell of its own, so its pipes and ;s are its own, and the toggle's exit code
    # (a program that would not attach) is not mistaken for the workload's.
    steps.append(f"sh -c {shlex.quote(command)}")
    return runner.run(nodes, " && ".join(steps), timeout=bench.timeout, env=access.workdir_env(nodes))


def _reason(result: CommandResult) -> str:
    if result.timed_out:
        return "timed out"
    if result.error:
        return result.error
    tail = result.stderr.strip().splitlines()[-3:]
    return f"exit code {result.exit_code}" + (f": {' | '.join(tail)}" if tail else "")


def _unreachable(result: CommandResult) -> bool:
    return result.exit_code == 255 or (result.exit_code is None and not result.timed_out)


def write_csv(run_id: str, sweep: Sweep, plan: Sequence[Combination], nodes: Sequence[str]) -> Path:
    """``bench.csv``: one row per finished (combination, node), rebuilt from the result files: a column per
    parameter, then one per metric the parser found (in the order first met)."""
    parameters = list(dict.fromkeys(name for combination in plan for name, _ in combination.parameters))
    rows: list[dict[str, Any]] = []
    metrics: dict[str, None] = {}
    for combination in plan:
        for node in nodes:
            document = sweep.result(combination, node)
            if document is None:
                continue
            found = document["metrics"]
            metrics |= dict.fromkeys(found)
            rows.append({"run_id": run_id, "combination": combination.key, **combination.values,
                         "repetition": combination.repetition, "node": node,
                         "command_s": document.get("duration_s"), **found})  # fmt: skip
    buffer = io.StringIO()
    columns = ["run_id", "combination", *parameters, "repetition", "node", "command_s"]
    writer = csv.DictWriter(buffer, fieldnames=[*columns, *(name for name in metrics if name not in columns)])
    writer.writeheader()
    writer.writerows(rows)
    path = sweep.directory.parent / "bench.csv"
    atomic_write_text(path, buffer.getvalue())
    return path

"""``g5k run``: reserve → deploy → bench → collect → release, resumable from the first unfinished phase.

The jobs are released at the end whatever happened (unless kept), and a phase that fails stops the
pipeline, except a bench with missing pairs: what was measured is still worth collecting.
"""

from __future__ import annotations

from collections.abc import Callable

from g5kdeploy.errors import G5kError
from g5kdeploy.log import get_logger
from g5kdeploy.phases.bench import run_bench
from g5kdeploy.phases.collect import CollectSummary, run_collect
from g5kdeploy.phases.deploy import run_deploy
from g5kdeploy.phases.release import release
from g5kdeploy.phases.reserve import reserve
from g5kdeploy.playbook import Playbook
from g5kdeploy.results import RunRecord, RunStore
from g5kdeploy.signals import shielded
from g5kdeploy.testbeds.base import Testbed

log = get_logger(__name__)
PHASES = ("reserve", "deploy", "bench", "collect")
OnPhase = Callable[[str], None]


class IncompleteRun(G5kError):
    """The pipeline went to the end, but some measurements are missing."""


def run_pipeline(
    record: RunRecord, store: RunStore, testbed: Testbed, *, keep: bool = False, on_phase: OnPhase | None = None
) -> CollectSummary | None:
    playbook = Playbook.model_validate(record.playbook)
    announce = on_phase or (lambda _phase: None)
    collected: CollectSummary | None = None
    missing: str | None = None
    try:
        for phase in PHASES:
            if _done(record, phase) or not _wanted(playbook, phase):
                continue
            announce(phase)
            match phase:
                case "reserve":
                    reserve(record, store, testbed, keep=True)
                case "deploy":
                    run_deploy(record, store, testbed)
                case "bench":
                    summary = run_bench(record, store, testbed)
                    if summary.failed:
                        missing = f"{len(summary.failed)} (combination, node) pairs failed in bench"
                case "collect":
                    collected = run_collect(record, store, testbed)
    finally:
        if not keep:
            announce("release")
            with shielded():
                _release(record, store, testbed)
    if missing:
        raise IncompleteRun(missing, hint=f"see {store.directory(record.run_id) / 'bench' / 'sweep.json'}")
    return collected


def _done(record: RunRecord, phase: str) -> bool:
    return record.phases.get(phase) is not None and record.phases[phase].state == "done"


def _wanted(playbook: Playbook, phase: str) -> bool:
    return phase == "reserve" or getattr(playbook, phase) is not None


def _release(record: RunRecord, store: RunStore, testbed: Testbed) -> None:
    try:
        release(record, store, testbed.open(record, store), testbed)
    except G5kError as exc:
        log.error("could not release the run's jobs", error=str(exc), fix=f"g5k release {record.run_id}")

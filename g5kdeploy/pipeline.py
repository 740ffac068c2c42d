"""``g5k run``: reserve → deploy → bench → collect → release, resumable from the first unfinished phase.

The jobs are released at the end whatever happened (unless kept), and a phase that fails stops the
pipeline, except a bench with missing pairs: what was measured is still worth collecting.

Resuming runs every phase after the first one that is not done, so a bench run again is collected again.
A run whose jobs are over (released, or ended by OAR) cannot go on on its old nodes: it is reserved again
(and so deployed again) first, unless its advance reservation date has passed, which is refused.
"""

from __future__ import annotations

from collections.abc import Callable
from dataclasses import dataclass

from g5kdeploy import __version__
from g5kdeploy.bench.phase import OnProgress, run_bench
from g5kdeploy.collect.finalize import finalize_report
from g5kdeploy.collect.phase import CollectSummary, OnStep, run_collect
from g5kdeploy.deploy.phase import OnNode, run_deploy
from g5kdeploy.errors import ConfigError, IncompleteRun
from g5kdeploy.log import get_logger
from g5kdeploy.playbook import Playbook
from g5kdeploy.reserve.phase import OnUpdate, jobs_over, reserve, reserve_again
from g5kdeploy.reserve.release import Released, release_run
from g5kdeploy.results import RunRecord, RunStore
from g5kdeploy.signals import shielded
from g5kdeploy.testbeds.base import Testbed
from g5kdeploy.tools.kernel import OnProgress as OnBuild

log = get_logger(__name__)
PHASES = ("reserve", "deploy", "bench", "collect")
OnPhase = Callable[[str], None]


@dataclass(frozen=True)
class Watchers:
    """Progress callbacks, each phase's own, so one display can show them all."""

    phase: OnPhase | None = None
    job: OnUpdate | None = None
    node: OnNode | None = None
    sweep: OnProgress | None = None
    step: OnStep | None = None
    build: OnBuild | None = None


@dataclass
class PipelineOutcome:
    collected: CollectSummary | None = None
    released: Released | None = None


def run_pipeline(
    record: RunRecord,
    store: RunStore,
    testbed: Testbed,
    *,
    keep: bool = False,
    on_phase: OnPhase | None = None,
    watchers: Watchers | None = None,
) -> PipelineOutcome:
    playbook = record.playbook
    watch = watchers or Watchers(phase=on_phase)
    announce = watch.phase or (lambda _phase: None)
    outcome = PipelineOutcome()
    missing: str | None = None
    try:
        if record.jobs and jobs_over(record, testbed.open(record, store)):
            _reserve_again(record, store, playbook)
        rerun = False
        for phase in PHASES:
            if not _wanted(playbook, phase) or (_done(record, phase) and not rerun):
                continue
            # Whatever comes after a phase that runs again depends on it: run it again too.
            rerun = True
            announce(phase)
            match phase:
                case "reserve":
                    reserve(record, store, testbed, keep=True, on_update=watch.job, on_build=watch.build)
                case "deploy":
                    run_deploy(record, store, testbed, on_node=watch.node)
                case "bench":
                    summary = run_bench(record, store, testbed, on_progress=watch.sweep)
                    if summary.failed:
                        missing = f"{len(summary.failed)} (combination, node) pairs failed in bench"
                case "collect":
                    outcome.collected = run_collect(record, store, testbed, on_step=watch.step)
    finally:
        if not keep:
            announce("release")
            with shielded():
                outcome.released = release(record, store, testbed)
    if missing:
        raise IncompleteRun(missing, hint=f"see {store.directory(record.run_id) / 'bench' / 'sweep.json'}")
    return outcome


def release(record: RunRecord, store: RunStore, testbed: Testbed) -> Released:
    """Release the run's jobs and daemons; a collected run's report and manifest then describe the released run."""
    outcome = release_run(record, store, testbed)
    if record.released_at and _done(record, "collect"):
        finalize_report(store.directory(record.run_id), agent_version=__version__)
    return outcome


def _reserve_again(record: RunRecord, store: RunStore, playbook: Playbook) -> None:
    if playbook.reservation.reservation:
        raise ConfigError(
            f"run {record.run_id}: its jobs are over and it was an advance reservation for "
            f"{playbook.reservation.reservation}, which has passed",
            hint="start a new run from the playbook (with a new reservation date)",
        )
    log.warning(
        "the run's jobs are over: reserving new nodes, then deploying them and finishing the bench there",
        run=record.run_id,
        jobs=", ".join(job.label for job in record.jobs),
    )
    reserve_again(record, store)


def _done(record: RunRecord, phase: str) -> bool:
    return record.phases.get(phase) is not None and record.phases[phase].state == "done"


def _wanted(playbook: Playbook, phase: str) -> bool:
    return phase == "reserve" or getattr(playbook, phase) is not None

"""Nightly runs: book tonight's policy-legal slot, run the pipeline in it, then look for regressions.

A night is identified by the start of its non-working window (a day, on a testbed without usage policy),
recorded in the run, so a second ``g5k nightly run`` the same night attaches to that run instead of booking
again. The history check compares only runs of the same playbook on the same hardware and kernel configuration.
"""

from __future__ import annotations

import shlex
import shutil
import tempfile
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path
from typing import TYPE_CHECKING, Any

from g5kdeploy.errors import ConfigError, JobRefused, ReservationError, ToolError
from g5kdeploy.log import get_logger
from g5kdeploy.nightly.history import load_history
from g5kdeploy.nightly.schedule import DEFAULT_MARGIN, Slot, explain
from g5kdeploy.pipeline import OnPhase, run_pipeline
from g5kdeploy.playbook import PARIS, Nightly, Playbook
from g5kdeploy.process import run
from g5kdeploy.reserve.phase import create_run, job_body, plan_jobs
from g5kdeploy.results import RunRecord, RunStore
from g5kdeploy.testbeds.base import Testbed
from g5kdeploy.walltime import parse_duration

if TYPE_CHECKING:
    from g5kdeploy.nightly.regression import Report

log = get_logger(__name__)
HOOK_TIMEOUT = 300


@dataclass
class NightlyOutcome:
    record: RunRecord
    slot: Slot | None
    notes: list[str]
    reattached: bool
    report: Report
    files: dict[str, Path] = field(default_factory=dict)
    hook: str | None = None


def settings(playbook: Playbook) -> Nightly:
    return playbook.nightly or Nightly()


#: Wall-clock seconds the agent may take between choosing a slot and OAR receiving the job.
SUBMIT_SECONDS = 3.0


def plan_night(playbook: Playbook, now: datetime, *, clock_speed: float = 1.0) -> tuple[Slot, list[str]]:
    """The next policy-legal slot for the playbook's nightly walltime, and why earlier nights were skipped.

    A slot starting now is pushed back by the margin, at least the time to submit: in a clock ``clock_speed``
    times faster than the wall clock (the simulator), those seconds are that many more of the API's."""
    nightly = settings(playbook)
    walltime = parse_duration(nightly.walltime or playbook.reservation.walltime)
    hour, minute = (int(part) for part in nightly.start.split(":"))
    margin = max(DEFAULT_MARGIN, timedelta(seconds=SUBMIT_SECONDS * clock_speed))
    return explain(now, walltime, time(hour, minute), margin=margin)


def _night(playbook: Playbook, testbed: Testbed) -> tuple[Slot | None, list[str], str]:
    """Tonight's slot (None without a usage policy), notes on it, and the key that names the night's run."""
    now = datetime.fromtimestamp(testbed.clock.now(), PARIS)
    if testbed.usage_policy:
        slot, notes = plan_night(playbook, now, clock_speed=testbed.clock.speed)
        # The night, not the slot: a later call the same night gets a later slot in the same window.
        return slot, notes, slot.window_start.isoformat()
    note = f"the {playbook.testbed} testbed has no usage policy: the run starts at once, one run a day"
    return None, [note], now.date().isoformat()


@dataclass(frozen=True)
class PlannedJob:
    site: str
    walltime: int
    #: The body the reserve phase POSTs to ``/sites/<site>/jobs``.
    body: dict[str, Any]


@dataclass(frozen=True)
class NightPlan:
    #: None on a testbed without usage policy: the run starts at once.
    slot: Slot | None
    notes: list[str]
    jobs: list[PlannedJob]
    #: The night's run when it already exists: ``g5k nightly run`` attaches to it and submits nothing.
    attach_to: str | None = None


def plan_nightly(
    playbook: Playbook, playbook_path: Path, store: RunStore, testbed: Testbed, *, api_url: str
) -> NightPlan:
    """What ``run_nightly`` would submit now: the slot, and the reserve phase's OAR job bodies for it.

    The reserve phase plans in a throw-away run directory (on the local testbed, its simulator is started
    there and stopped), so the placement and bodies are the ones a run builds and nothing is submitted.
    """
    slot, notes, key = _night(playbook, testbed)
    booked = _booked(playbook, slot)
    tonight = _tonight(store, playbook, key)
    with tempfile.TemporaryDirectory(prefix="g5k-nightly-plan-") as scratch:
        scratch_store = RunStore(Path(scratch))
        record = create_run(scratch_store, booked, playbook_path, api_url=api_url)
        try:
            api = testbed.open(record, scratch_store)
            plan_jobs(record, scratch_store, api, booked, now=testbed.clock.now())
        finally:
            testbed.close(record, scratch_store)
    jobs = [
        PlannedJob(entry.site, entry.walltime, job_body(entry, booked, testbed.job_command(booked, entry.walltime)))
        for entry in record.jobs
    ]
    return NightPlan(slot, notes, jobs, tonight.run_id if tonight else None)


def _tonight(store: RunStore, playbook: Playbook, key: str) -> RunRecord | None:
    return next(
        (
            record
            for record in reversed(store.all())
            if record.playbook.name == playbook.name and record.nightly_slot == key
        ),
        None,
    )


def run_nightly(
    playbook: Playbook,
    playbook_path: Path,
    store: RunStore,
    testbed: Testbed,
    *,
    api_url: str,
    keep: bool = False,
    on_phase: OnPhase | None = None,
) -> NightlyOutcome:
    slot, notes, key = _night(playbook, testbed)
    record = _tonight(store, playbook, key)
    reattached = record is not None
    if record is None:
        record = create_run(store, _booked(playbook, slot), playbook_path, api_url=api_url)
        record.nightly_slot = key
        store.save(record)
    if not record.released_at:
        try:
            run_pipeline(record, store, testbed, keep=keep, on_phase=on_phase)
        except JobRefused as exc:
            if slot is None:
                raise
            # The playbook is fine; tonight is taken. Not bad input: the next night may well be free.
            raise ReservationError(
                f"tonight's slot ({slot.oar_reservation}) was refused: {exc.oar_text}",
                hint="the next nightly run tries the next window; g5k nightly plan shows it",
            ) from None
    report, files = check(store, playbook)
    _prune(store, playbook, settings(playbook).keep)
    hook = None
    if report.regressions and settings(playbook).on_regression:
        hook = _on_regression(str(settings(playbook).on_regression), files["markdown"])
    return NightlyOutcome(record, slot, notes, reattached, report, files, hook)


def _booked(playbook: Playbook, slot: Slot | None) -> Playbook:
    """The playbook as submitted tonight: the nightly walltime, and an advance reservation of the slot if any."""
    update: dict[str, Any] = {"walltime": settings(playbook).walltime or playbook.reservation.walltime}
    if slot is not None:
        # The job cannot start before the slot: the wait is counted from there.
        update |= {"reservation": slot.oar_reservation, "start_deadline": None}
    reservation = playbook.reservation.model_copy(update=update)
    return playbook.model_copy(update={"reservation": reservation})


def check(store: RunStore, playbook: Playbook) -> tuple[Report, dict[str, Path]]:
    """Change points over every finished run of the playbook; the report goes to ``nightly/<playbook>/``."""
    # Imported here: numpy, scipy, ruptures and matplotlib cost every g5k command a second otherwise.
    from g5kdeploy.nightly.nightly_report import write_nightly
    from g5kdeploy.nightly.regression import detect

    nightly = settings(playbook)
    metrics, left_out = tracked_metrics(playbook)
    history = load_history(store.results_dir, playbook.name)
    report = detect(
        history,
        metrics=metrics,
        higher_is_better={metric: better == "higher" for metric, better in nightly.better.items()},
        threshold=nightly.threshold,
        left_out=left_out,
    )
    files = write_nightly(report, history, store.results_dir / "nightly" / playbook.name)
    return report, files


def _prune(store: RunStore, playbook: Playbook, keep: int) -> None:
    """Delete the oldest released runs of the playbook beyond ``keep``; runs still holding jobs stay."""
    mine = [record for record in store.all() if record.playbook.name == playbook.name]
    for record in mine[:-keep] if len(mine) > keep else []:
        if record.released_at and not record.live_jobs():
            shutil.rmtree(store.directory(record.run_id), ignore_errors=True)
            log.info("old nightly run removed", run=record.run_id, keep=keep)


def _on_regression(command: str, report: Path) -> str:
    """Run the user's hook with the report's path ({report} in the command, else the last argument)."""
    quoted = shlex.quote(str(report))
    line = command.replace("{report}", quoted) if "{report}" in command else f"{command} {quoted}"
    try:
        done = run(["sh", "-c", line], timeout=HOOK_TIMEOUT, what="run the on_regression hook", check=False)
    except ToolError as exc:
        return f"{exc}: {line}"
    if done.returncode != 0:
        return f"on_regression exited {done.returncode}: {done.stderr.strip()[-500:]}"
    return f"on_regression ran: {line}"


def require_nightly(playbook: Playbook, path: Path) -> Nightly:
    """The playbook's nightly section, its metrics checked against the workload's; ``ConfigError`` otherwise."""
    if playbook.nightly is None:
        raise ConfigError(f"{path}: no nightly section", hint="add nightly: {start: '19:05'} (see the README)")
    tracked_metrics(playbook, path)
    return playbook.nightly


def tracked_metrics(playbook: Playbook, path: Path | None = None) -> tuple[list[str], dict[str, str]]:
    """The metrics the history follows and the workload's left out (with why), or a ``ConfigError`` (exit 2)
    naming ``nightly.metrics`` or ``nightly.better``."""
    try:
        return settings(playbook).tracked(playbook.bench)
    except ValueError as exc:
        raise ConfigError(f"{path or playbook.name}: {exc}", hint="nothing was submitted") from None

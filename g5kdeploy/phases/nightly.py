"""Nightly runs: book tonight's policy-legal slot, run the pipeline in it, then look for regressions.

A night is identified by the start of its non-working window, recorded in the run, so a second
``g5k nightly run`` the same night attaches to that run instead of booking again. The history check compares
only runs of the same playbook on the same hardware and kernel configuration.
"""

from __future__ import annotations

import shlex
import shutil
import subprocess
from dataclasses import dataclass, field
from datetime import datetime, time, timedelta
from pathlib import Path

from g5kdeploy.errors import ConfigError
from g5kdeploy.log import get_logger
from g5kdeploy.nightly.history import load_history
from g5kdeploy.nightly.nightly_report import write_nightly
from g5kdeploy.nightly.regression import Report, detect
from g5kdeploy.nightly.schedule import DEFAULT_MARGIN, Slot, explain
from g5kdeploy.phases.pipeline import OnPhase, run_pipeline
from g5kdeploy.phases.reserve import create_run
from g5kdeploy.playbook import PARIS, Nightly, Playbook
from g5kdeploy.results import RunRecord, RunStore
from g5kdeploy.testbeds.base import Testbed
from g5kdeploy.walltime import parse_duration

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


def _tonight(store: RunStore, playbook: Playbook, key: str) -> RunRecord | None:
    return next(
        (
            record
            for record in reversed(store.all())
            if record.playbook.get("name") == playbook.name and record.nightly_slot == key
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
    now = datetime.fromtimestamp(testbed.clock.now(), PARIS)
    slot: Slot | None = None
    notes: list[str] = []
    if testbed.usage_policy:
        slot, notes = plan_night(playbook, now, clock_speed=testbed.clock.speed)
        # The night, not the slot: a later call the same night gets a later slot in the same window.
        key = slot.window_start.isoformat()
    else:
        notes = ["the local testbed has no usage policy: the night's run starts now"]
        key = now.date().isoformat()
    record = _tonight(store, playbook, key)
    reattached = record is not None
    if record is None:
        record = create_run(store, _booked(playbook, slot), playbook_path, api_url=api_url)
        record.nightly_slot = key
        store.save(record)
    if not record.released_at:
        run_pipeline(record, store, testbed, keep=keep, on_phase=on_phase)
    report, files = check(store, playbook)
    _prune(store, playbook, settings(playbook).keep)
    hook = None
    if report.regressions and settings(playbook).on_regression:
        hook = _on_regression(str(settings(playbook).on_regression), files["markdown"])
    return NightlyOutcome(record, slot, notes, reattached, report, files, hook)


def _booked(playbook: Playbook, slot: Slot | None) -> Playbook:
    """The playbook as submitted tonight: an advance reservation of the slot, with the nightly walltime."""
    if slot is None:
        return playbook
    nightly = settings(playbook)
    reservation = playbook.reservation.model_copy(
        update={
            "reservation": slot.oar_reservation,
            "walltime": nightly.walltime or playbook.reservation.walltime,
            # The job cannot start before the slot: the wait is counted from there.
            "start_deadline": None,
        }
    )
    return playbook.model_copy(update={"reservation": reservation})


def check(store: RunStore, playbook: Playbook) -> tuple[Report, dict[str, Path]]:
    """Change points over every finished run of the playbook; the report goes to ``nightly/<playbook>/``."""
    nightly = settings(playbook)
    history = load_history(store.results_dir, playbook.name)
    report = detect(history, metrics=nightly.metrics, threshold=nightly.threshold)
    files = write_nightly(report, history, store.results_dir / "nightly" / playbook.name)
    return report, files


def _prune(store: RunStore, playbook: Playbook, keep: int) -> None:
    """Delete the oldest released runs of the playbook beyond ``keep``; runs still holding jobs stay."""
    mine = [record for record in store.all() if record.playbook.get("name") == playbook.name]
    for record in mine[:-keep] if len(mine) > keep else []:
        if record.released_at and not record.live_jobs():
            shutil.rmtree(store.directory(record.run_id), ignore_errors=True)
            log.info("old nightly run removed", run=record.run_id, keep=keep)


def _on_regression(command: str, report: Path) -> str:
    """Run the user's hook with the report's path ({report} in the command, else the last argument)."""
    quoted = shlex.quote(str(report))
    line = command.replace("{report}", quoted) if "{report}" in command else f"{command} {quoted}"
    try:
        done = subprocess.run(["sh", "-c", line], check=False, timeout=HOOK_TIMEOUT, capture_output=True, text=True)
    except subprocess.TimeoutExpired:
        return f"on_regression timed out after {HOOK_TIMEOUT} s: {line}"
    if done.returncode != 0:
        return f"on_regression exited {done.returncode}: {done.stderr.strip()[-500:]}"
    return f"on_regression ran: {line}"


def require_nightly(playbook: Playbook, path: Path) -> Nightly:
    if playbook.nightly is None:
        raise ConfigError(f"{path}: no nightly section", hint="add nightly: {start: '19:05', metrics: [p50_ns]}")
    return playbook.nightly

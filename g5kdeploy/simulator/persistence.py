"""Atomic save and load of the simulator state, so a restarted server resumes where it stopped."""

from __future__ import annotations

import json
import os
import random
import tempfile
from collections.abc import Callable
from pathlib import Path
from typing import Any

from g5kdeploy.simulator.clock import ScaledClock
from g5kdeploy.simulator.deployments import DeploymentStore
from g5kdeploy.simulator.jobbook import JobBook
from g5kdeploy.simulator.records import Deployment, Job
from g5kdeploy.simulator.scheduler import PartNeed


def save_state(path: Path, state: dict[str, Any]) -> None:
    """A crash leaves the old or the new state, never half of one."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "w", encoding="utf-8") as handle:
            json.dump(state, handle)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        os.unlink(temporary)
        raise


def load_state(path: Path) -> dict[str, Any] | None:
    """The saved state, or None when there is none yet."""
    if not path.exists() or path.stat().st_size == 0:
        return None
    with path.open(encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict) or data.get("format") != 1:
        raise ValueError(f"{path}: not a simulator state file")
    return data


def snapshot(
    clock: ScaledClock,
    processed: float,
    book: JobBook,
    deployments: DeploymentStore,
    rng: random.Random,
) -> dict[str, Any]:
    """The whole simulator state as JSON-ready data (format 1)."""
    version, internal, gauss = rng.getstate()
    return {
        "format": 1,
        "clock": clock.to_dict(),
        "processed": processed,
        "next_uid": book.next_uid,
        "next_event_uid": book.next_event_uid,
        "jobs": [j.to_dict() for j in book.jobs.values()],
        "history": {str(k): v for k, v in book.history.items()},
        "deployments": [d.to_dict() for d in deployments.items.values()],
        "rng": [version, list(internal), gauss],
    }


def restore(
    saved: dict[str, Any],
    book: JobBook,
    deployments: DeploymentStore,
    rng: random.Random,
    needs_for: Callable[[Job], list[PartNeed]],
) -> tuple[ScaledClock, float]:
    """Load `saved` into the given (empty) stores; returns the saved clock and processed time."""
    book.next_uid = int(saved["next_uid"])
    book.next_event_uid = int(saved["next_event_uid"])
    version, internal, gauss = saved["rng"]
    rng.setstate((version, tuple(internal), gauss))
    book.history = {int(k): [(s, t) for s, t in v] for k, v in saved["history"].items()}
    for data in saved["jobs"]:
        job = Job.from_dict(data)
        if job.background and job.final:
            # Older state files kept finished background jobs for a day; nobody reads them.
            book.history.pop(job.uid, None)
            continue
        book.add(job, [] if job.final or job.background else needs_for(job), float(saved["processed"]))
    for data in saved["deployments"]:
        dep = Deployment.from_dict(data)
        deployments.items[dep.uid] = dep
    return ScaledClock(**saved["clock"]), float(saved["processed"])

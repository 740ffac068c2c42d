"""oarwalltime through the API: the walltime-change status document and the change itself."""

from __future__ import annotations

from typing import Any

from g5kdeploy.simulator.jobbook import JobBook
from g5kdeploy.simulator.records import Job


def oar_hms(seconds: int, signed: bool = False) -> str:
    """OAR's `h:mm:ss`; `signed` puts `+`/`-` in front of non-zero deltas (`-0:30:00`, `+1:00:00`)."""
    sign = "-" if seconds < 0 else "+" if signed and seconds > 0 else ""
    seconds = abs(seconds)
    return f"{sign}{seconds // 3600}:{seconds % 3600 // 60:02d}:{seconds % 60:02d}"


def info(job: Job, prefix: str) -> dict[str, Any]:
    base = f"{prefix}/sites/{job.site}/jobs/{job.uid}"
    return {
        "uid": job.uid,
        "walltime": oar_hms(job.walltime),
        "possible": "UNLIMITED",
        "timeout": 0,
        "force": "NO",
        "delay_next_jobs": "NO",
        "whole": "NO",
        "granted": oar_hms(job.walltime_granted, signed=True),
        "pending": oar_hms(0),
        "granted_with_whole": oar_hms(0),
        "granted_with_force": oar_hms(0),
        "granted_with_delay_next_jobs": oar_hms(0),
        "links": [
            {"rel": "self", "href": f"{base}/walltime"},
            {"rel": "parent", "href": base},
        ],
    }


def apply_change(book: JobBook, job: Job, new: int, delay_next_jobs: bool, t: float) -> bool:
    """Change a running job's walltime if its nodes allow it; False leaves it unchanged.

    Without `delay_next_jobs`, OAR only grants what does not push back the jobs already planned after
    this one, so the check includes waiting jobs' predictions; with it, only started jobs and
    reservations can block the extension and later jobs are re-planned around it.
    """
    assert job.started_at is not None
    if new > job.walltime:
        book.reschedule(job.site, t)
        gantt = book.gantt(job.site, exclude=job.uid, predicted=not delay_next_jobs)
        end = job.started_at + new
        if not all(gantt.is_free(node, job.started_at, end) for node in job.nodes):
            return False
    job.events.append(
        {
            "uid": book.event_uid(),
            "created_at": int(t),
            "type": "WALLTIME_CHANGE",
            "description": f"walltime changed from {job.walltime} to {new}",
        }
    )
    job.walltime_granted += new - job.walltime
    job.walltime = new
    book.touch(job.site)
    return True

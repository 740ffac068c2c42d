"""oarwalltime through the API: the walltime-change status document and the change itself."""

from __future__ import annotations

import re
from dataclasses import dataclass
from typing import Any

from g5kdeploy.simulator.errors import ApiError
from g5kdeploy.simulator.jobbook import JobBook, held
from g5kdeploy.simulator.records import Job

# g5k-api's Grid5000::JobWalltime (app/models/grid5000/job_walltime.rb) checks these before asking OAR.
_INVALID = "The job walltime change you are trying to submit is not valid: "
_YES_NO = ("delay_next_jobs", "force", "whole")
# oarwalltime's syntax (OAR::Walltime::request): no spaces, at most h:m:s.
_CHANGE = re.compile(r"([-+]?)(\d+)(?::(\d+)(?::(\d+))?)?")


@dataclass(frozen=True)
class ChangeRequest:
    """A walltime-change body g5k-api accepted; the flags as OAR gets them, `yes`/`no` or None."""

    walltime: str
    force: str | None
    delay_next_jobs: str | None


def _blank(value: object) -> bool:
    """Ruby's `blank?` on a permitted parameter; Rails' `permit` drops lists and objects, leaving nil."""
    return (
        value is None
        or value is False
        or isinstance(value, list | dict)
        or (isinstance(value, str) and not value.strip())
    )


def parse_request(body: dict[str, Any]) -> ChangeRequest:
    """The body g5k-api forwards to OAR, or its 400 listing every fault, in its order."""
    walltime, timeout = body.get("walltime"), body.get("timeout")
    errors = []
    if _blank(walltime):
        errors.append("you must give a new walltime")
    elif not isinstance(walltime, str):
        errors.append("new walltime must be a String")
    if not _blank(timeout) and (isinstance(timeout, bool) or not isinstance(timeout, int)):
        errors.append("timeout must be an Integer")
    flags: dict[str, str | None] = {}
    for name in _YES_NO:
        value = None if isinstance(body.get(name), list | dict) else body.get(name)
        if isinstance(value, bool):
            value = "yes" if value else "no"
        elif value is not None and value not in ("yes", "no"):
            errors.append(f"{', '.join(_YES_NO)} must be a Boolean")
            break
        flags[name] = value
    if errors:
        raise ApiError(400, _INVALID + "; ".join(errors))
    assert isinstance(walltime, str)
    return ChangeRequest(walltime, flags.get("force"), flags.get("delay_next_jobs"))


def requested_delta(job: Job, change: str) -> int:
    """The change in seconds oarwalltime reads from `[+|-]h[:m[:s]]` (no sign: the new walltime)."""
    match = _CHANGE.fullmatch(change)
    if not match:
        # OAR's REST API answers its refusals with the message capitalised; g5k-api relays the text alone.
        raise ApiError(400, "Syntax error")
    sign, hours, minutes, seconds = match.groups()
    value = int(hours) * 3600 + int(minutes or 0) * 60 + int(seconds or 0)
    return -value if sign == "-" else value if sign == "+" else value - job.walltime


def check_allowed(job: Job, user: str, request: ChangeRequest) -> None:
    """OAR's refusals, in OAR's order; Grid'5000's OAR lets no user force a change (status `FORBIDDEN`)."""
    if job.user != user:
        raise ApiError(403, f"Job {job.uid} does not belong to you")
    if job.state != "running":
        raise ApiError(403, f"Job {job.uid} is not running")
    if request.force == "yes":
        raise ApiError(403, "Walltime change for this job is not allowed to be forced")


def answer(job: Job) -> str:
    """OAR's `cmd_output`, which g5k-api renders as the whole body: a later request updates the first one."""
    verb = "updated" if any(e["type"] == "WALLTIME_CHANGE" for e in job.events) else "accepted"
    return f"Walltime change request {verb} for job {job.uid}, it will be handled shortly"


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
        "force": "FORBIDDEN",
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
    """Change a running job's walltime if its nodes and VLANs allow it; False leaves it unchanged.

    Without `delay_next_jobs`, OAR only grants what does not push back the jobs already planned after
    this one, so the check includes waiting jobs' predictions; with it, only started jobs and
    reservations can block the extension and later jobs are re-planned around it.
    """
    assert job.started_at is not None
    if new > job.walltime:
        book.reschedule(job.site, t)
        gantt = book.gantt(job.site, exclude=job.uid, predicted=not delay_next_jobs)
        end = job.started_at + new
        if not all(gantt.is_free(slot, job.started_at, end) for slot in held(job)):
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

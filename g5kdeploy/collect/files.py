"""Small file helpers for the collect phase: atomic binary writes and reading a run's own records."""

from __future__ import annotations

import json
import re
from pathlib import Path
from typing import Any

from g5kdeploy.log import get_logger
from g5kdeploy.results import RUN_FILE

log = get_logger(__name__)


def read_json(path: Path) -> dict[str, Any] | None:
    """A JSON object from ``path``, or None (logged) when it is missing, damaged or not an object.

    Reports are written after the fact, often from a run that ended badly: a damaged record must cost its
    section of the report, never the whole report.
    """
    try:
        data = json.loads(path.read_text())
    except FileNotFoundError:
        return None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError) as exc:
        log.warning("unreadable record, left out", path=str(path), error=str(exc))
        return None
    if not isinstance(data, dict):
        log.warning("record is not a JSON object, left out", path=str(path))
        return None
    return data


def read_run(run_dir: Path) -> dict[str, Any]:
    """``run.json`` as plain data (not ``RunRecord``): a report must render whatever fields an older or newer
    agent wrote, so it reads them with defaults instead of validating."""
    return read_json(run_dir / RUN_FILE) or {}


def job_ids(run: dict[str, Any]) -> list[dict[str, Any]]:
    """The run's OAR jobs as ``{site, uid, name, state}``; uid is None for a job whose POST never answered."""
    return [
        {"site": job.get("site"), "uid": job.get("uid"), "name": job.get("name"), "state": job.get("state")}
        for job in run.get("jobs") or []
        if isinstance(job, dict)
    ]


_DEPLOYMENT = re.compile(r"\bdeployment (?P<site>[\w.-]+)/(?P<uid>[\w-]+):")


def deployment_ids(run: dict[str, Any]) -> list[str]:
    """Kadeploy deployments as ``site/uid``, wherever the deploy record keeps them.

    The record has no dedicated field yet: a plan may list ``deployments``, a node's facts may name its
    ``deployment``, and the Kadeploy method leaves ``deployment <site>/<uid>: <status>`` in each node's log
    tail; all three are read so the ids survive whichever the deploy phase settles on.
    """
    deploy = run.get("deploy") or {}
    found: set[str] = set()
    for entry in (deploy.get("plan") or {}).get("deployments") or []:
        if isinstance(entry, dict) and entry.get("uid") is not None:
            found.add(f"{entry.get('site', '?')}/{entry['uid']}")
        elif isinstance(entry, str | int):
            found.add(str(entry))
    for node in (deploy.get("nodes") or {}).values():
        if not isinstance(node, dict):
            continue
        if (named := (node.get("facts") or {}).get("deployment")) is not None:
            found.add(str(named))
        for line in node.get("log_tail") or []:
            if isinstance(line, str) and (match := _DEPLOYMENT.search(line)):
                found.add(f"{match['site']}/{match['uid']}")
    return sorted(found)

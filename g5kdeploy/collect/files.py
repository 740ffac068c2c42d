"""Reading the JSON files a run directory holds (bench results, node facts, sweep notes), forgivingly."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from g5kdeploy.log import get_logger

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

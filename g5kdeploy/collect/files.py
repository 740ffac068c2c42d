"""Small file helpers for the collect phase: atomic binary writes and reading a run's own records."""

from __future__ import annotations

import json
import os
import tempfile
from pathlib import Path
from typing import Any

from g5kdeploy.log import get_logger
from g5kdeploy.results import RUN_FILE

log = get_logger(__name__)


def atomic_write_bytes(path: Path, data: bytes) -> None:
    """Binary twin of ``results.atomic_write_text``: a reader, or a crash, sees the old or the new file whole."""
    path.parent.mkdir(parents=True, exist_ok=True)
    descriptor, temporary = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        with os.fdopen(descriptor, "wb") as handle:
            handle.write(data)
            handle.flush()
            os.fsync(handle.fileno())
        os.replace(temporary, path)
    except BaseException:
        Path(temporary).unlink(missing_ok=True)
        raise


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

"""``manifest.json``: every file of a run with its sha256, and what produced it, so a run can be checked later.

The manifest says which agent (version and git revision) made the run, from which playbook, on which OAR
jobs and deployments, when each phase ran, and the sha256 and size of every file under the run directory.
``verify_manifest`` re-reads the directory and names what went missing, changed or appeared since.
Write it last: anything written into the run after it (a later phase rewriting ``run.json``) shows as changed.
"""

from __future__ import annotations

import json
import os
import stat
from collections.abc import Mapping
from pathlib import Path
from typing import Any

from g5kdeploy.errors import ConfigError, ToolError
from g5kdeploy.files import atomic_write_text, sha256_file
from g5kdeploy.log import get_logger
from g5kdeploy.process import Completed, run
from g5kdeploy.results import read_record, utc_now

log = get_logger(__name__)
MANIFEST = "manifest.json"
FORMAT = 1
#: Not part of the record: the manifest itself, the run lock (touched by every command), and the live state
#: that keeps changing after collect: the ledger ``run.json`` (release still writes it; the manifest carries
#: its playbook, jobs and phase times instead), the local testbed's daemons (``testbed/``) and the run's
#: SSH files (``ssh/``, where known_hosts grows). Atomic-write temporaries are left out wherever they are.
EXCLUDED = frozenset({MANIFEST, ".lock", "run.json"})
EXCLUDED_DIRS = frozenset({"testbed", "ssh"})
GIT_TIMEOUT = 10.0


def write_manifest(run_dir: Path, *, agent_version: str, extra: Mapping[str, Any] | None = None) -> Path:
    """Write ``run_dir/manifest.json`` atomically; returns its path."""
    run = read_record(run_dir)
    manifest = {
        "format": FORMAT,
        "run_id": run.run_id if run else run_dir.name,
        "created_at": utc_now(),
        "agent": {"version": agent_version, "git": git_revision(Path(__file__).resolve().parent)},
        "playbook": {
            "path": run.playbook_path if run else None,
            "content": run.playbook.model_dump(mode="json") if run else None,
        },
        "testbed": run.testbed if run else None,
        "jobs": [{"site": job.site, "uid": job.uid, "name": job.name, "state": job.state} for job in run.jobs]
        if run
        else [],
        "deployments": run.deploy.deployments if run and run.deploy else [],
        "phases": {
            name: {"state": phase.state, "started_at": phase.started_at, "finished_at": phase.finished_at}
            for name, phase in (run.phases if run else {}).items()
        },
        "files": [{"path": path, **entry} for path, entry in sorted(scan(run_dir).items())],
        "extra": dict(extra or {}),
    }
    path = run_dir / MANIFEST
    atomic_write_text(path, json.dumps(manifest, indent=1, default=str) + "\n")
    return path


def verify_manifest(run_dir: Path) -> list[str]:
    """What differs between ``run_dir`` and its manifest, one line per file; empty when it all matches."""
    path = run_dir / MANIFEST
    try:
        manifest = json.loads(path.read_text())
        recorded = {entry["path"]: entry for entry in manifest["files"]}
    except FileNotFoundError:
        raise ConfigError(f"{path} does not exist", hint="write it first (the collect phase writes it last)") from None
    except (OSError, UnicodeDecodeError, json.JSONDecodeError, KeyError, TypeError) as exc:
        raise ConfigError(
            f"{path} is unreadable ({type(exc).__name__}: {exc})",
            hint="the manifest itself was damaged; compare with an archived copy, or write a new one",
        ) from None
    current = scan(run_dir)
    problems = []
    for name, entry in sorted(recorded.items()):
        now = current.get(name)
        if now is None:
            problems.append(f"missing: {name}")
        elif now != {key: entry.get(key) for key in now}:
            problems.append(f"changed: {name} ({_describe(entry)} then, {_describe(now)} now)")
    problems += [f"not in manifest: {name}" for name in sorted(set(current) - set(recorded))]
    return problems


def scan(run_dir: Path) -> dict[str, dict[str, Any]]:
    """Every file under ``run_dir`` (relative POSIX path → ``{size, sha256}``, or ``{symlink}`` for a link).

    Links are recorded by target, never followed: a NixOS ``result`` link points into a store the manifest
    must not walk, and its target is what identifies it. Sockets and other special files are skipped (an SSH
    ControlMaster socket is not a result).
    """
    files: dict[str, dict[str, Any]] = {}
    for directory, subdirectories, names in os.walk(run_dir):
        base = Path(directory)
        if base == run_dir:
            subdirectories[:] = [entry for entry in subdirectories if entry not in EXCLUDED_DIRS]
        subdirectories.sort()
        for name in names + [entry for entry in subdirectories if (base / entry).is_symlink()]:
            path = base / name
            relative = path.relative_to(run_dir).as_posix()
            if relative in EXCLUDED or _temporary(name):
                continue
            mode = path.lstat().st_mode
            if stat.S_ISLNK(mode):
                files[relative] = {"symlink": os.readlink(path)}
            elif stat.S_ISREG(mode):
                files[relative] = _hash(path)
    return files


def _temporary(name: str) -> bool:
    return name.startswith(".") and name.endswith(".tmp")


def _hash(path: Path) -> dict[str, Any]:
    try:
        return {"size": path.stat().st_size, "sha256": sha256_file(path)}
    except OSError as exc:
        # Recorded rather than raised: one unreadable file must not cost the manifest of everything else.
        log.warning("file not hashed", path=str(path), error=str(exc))
        return {"size": None, "sha256": None, "error": str(exc)}


def _describe(entry: Mapping[str, Any]) -> str:
    if "symlink" in entry:
        return f"link to {entry['symlink']}"
    return f"{entry.get('size')} bytes, sha256 {str(entry.get('sha256'))[:12]}"


def git_revision(directory: Path) -> dict[str, Any] | None:
    """``{revision, dirty}`` of the git checkout holding ``directory``; None when it is not one (an installed
    wheel) or git is missing. Never raises: provenance is best effort, the run's data matter more."""
    try:
        head = _git(directory, "rev-parse", "HEAD")
        if head.returncode != 0:
            return None
        status = _git(directory, "status", "--porcelain")
    except ToolError as exc:
        log.info("no git revision for the manifest", error=str(exc))
        return None
    return {
        "revision": head.stdout.strip(),
        # Untracked files count: a new module not yet committed changes what ran as much as an edit does.
        "dirty": bool(status.stdout.strip()) if status.returncode == 0 else None,
    }


def _git(directory: Path, *arguments: str) -> Completed:
    argv = ["git", "-C", str(directory), *arguments]
    return run(argv, timeout=GIT_TIMEOUT, what="read the agent's git revision", check=False)

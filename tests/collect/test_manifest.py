from __future__ import annotations

import json
import os
import re
from pathlib import Path

import pytest

import g5kdeploy
from g5kdeploy.collect import verify_manifest, write_manifest
from g5kdeploy.collect.manifest import git_revision
from g5kdeploy.errors import ConfigError
from tests.collect.runs import JOB_UID

REPO = Path(g5kdeploy.__file__).resolve().parents[1]


def test_manifest_lists_every_file_and_verifies_clean(run_dir):
    (run_dir / "bench" / ".sweep.json.x1y2.tmp").write_text("in flight")
    (run_dir / "ctl").symlink_to("/nix/store/abc-nixos-system")
    (run_dir / "testbed").mkdir()
    (run_dir / "testbed" / "sshd.log").write_text("a live daemon's log keeps growing\n")
    path = write_manifest(run_dir, agent_version="0.1.0", extra={"collector": "prometheus"})
    manifest = json.loads(path.read_text())
    names = [entry["path"] for entry in manifest["files"]]
    assert names == sorted(names)
    assert "bench/sweep.json" in names and "bench.csv" in names
    # The live ledger and the local testbed's daemons change after collect: the manifest carries their facts.
    assert "run.json" not in names and not any(name.startswith("testbed/") for name in names)
    assert "bench/threads-2_ebpf-on_rep-2/gros-3.nancy.grid5000.fr.json" in names
    assert not {"manifest.json", ".lock", "bench/.sweep.json.x1y2.tmp"} & set(names)
    entry = next(entry for entry in manifest["files"] if entry["path"] == "bench.csv")
    assert entry["size"] == (run_dir / "bench.csv").stat().st_size and re.fullmatch(r"[0-9a-f]{64}", entry["sha256"])
    assert next(e for e in manifest["files"] if e["path"] == "ctl") == {
        "path": "ctl",
        "symlink": "/nix/store/abc-nixos-system",
    }
    assert manifest["agent"]["version"] == "0.1.0"
    assert manifest["jobs"] == [{"site": "nancy", "uid": JOB_UID, "name": run_dir.name, "state": "running"}]
    assert manifest["deployments"] == ["nancy/D-42"]
    assert manifest["playbook"]["path"] == "playbooks/statx.yaml" and manifest["playbook"]["content"]["name"] == "statx"
    assert manifest["phases"]["bench"] == {"state": "done", "started_at": "2026-11-27T15:02:00Z",
                                           "finished_at": "2026-11-27T15:02:42Z"}  # fmt: skip
    assert manifest["extra"] == {"collector": "prometheus"} and manifest["created_at"].endswith("Z")
    assert verify_manifest(run_dir) == []
    # The lock and temporaries come and go without making the run look tampered with.
    (run_dir / ".lock").write_text("pid 4242")
    (run_dir / "bench" / ".sweep.json.x1y2.tmp").unlink()
    assert verify_manifest(run_dir) == []


@pytest.mark.skipif(not (REPO / ".git").exists(), reason="not a git checkout")
def test_git_revision_of_this_checkout(run_dir):
    git = json.loads(write_manifest(run_dir, agent_version="0.1.0").read_text())["agent"]["git"]
    assert re.fullmatch(r"[0-9a-f]{40}", git["revision"]) and isinstance(git["dirty"], bool)


def test_git_revision_outside_a_checkout_is_none(tmp_path):
    assert git_revision(tmp_path) is None


def test_tampered_deleted_and_added_files_are_named(run_dir):
    write_manifest(run_dir, agent_version="0.1.0")
    tampered = run_dir / "bench" / "threads-1_ebpf-off_rep-1" / "gros-2.nancy.grid5000.fr.json"
    size = tampered.stat().st_size
    text = tampered.read_text()
    tampered.write_text(text.replace('"p50": 1504.0', '"p50": 1404.0'))  # same size, other content
    assert tampered.stat().st_size == size
    (run_dir / "bench.csv").unlink()
    (run_dir / "bench" / "extra.json").write_text("{}")
    problems = verify_manifest(run_dir)
    assert len(problems) == 3, problems
    assert problems[0] == "missing: bench.csv"
    assert problems[1].startswith("changed: bench/threads-1_ebpf-off_rep-1/gros-2.nancy.grid5000.fr.json")
    assert problems[2] == "not in manifest: bench/extra.json"


def test_missing_or_damaged_manifest_is_a_config_error(run_dir):
    with pytest.raises(ConfigError) as missing:
        verify_manifest(run_dir)
    assert missing.value.hint
    (run_dir / "manifest.json").write_text('{"files": [{"no path": 1}]}')
    with pytest.raises(ConfigError, match="unreadable"):
        verify_manifest(run_dir)


def test_unreadable_file_is_recorded_not_fatal(run_dir):
    if os.geteuid() == 0:
        pytest.skip("root reads every file")
    secret = run_dir / "secret"
    secret.write_text("x")
    secret.chmod(0)
    manifest = json.loads(write_manifest(run_dir, agent_version="0").read_text())
    assert next(e for e in manifest["files"] if e["path"] == "secret")["sha256"] is None

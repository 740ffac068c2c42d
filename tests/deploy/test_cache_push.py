"""``g5k cache push``: the closure signed with the user's key and copied to the cache, by the real nix where it
runs here (Debian's 2.8, into a file:// cache); the key never reaches the output, and bad input is exit 2."""

from __future__ import annotations

import shutil
import subprocess

import pytest
from typer.testing import CliRunner

from g5kdeploy.cli import app
from g5kdeploy.playbook import load_playbook
from g5kdeploy.results import RunRecord, RunStore
from g5kdeploy.tools.nix import copy_argv, push_closure, sign_argv

NIX = shutil.which("nix") and shutil.which("nix-store")
PLAYBOOK = """\
version: 2
name: exp
testbed: grid5000
reservation:
  site: nancy
  roles:
    collector: {nodes: 1, cluster: gros}
  walltime: "1:00"
deploy:
  method: nxc
"""
#: No substituter: nothing in these tests may reach for cache.nixos.org.
OFFLINE = {"NIX_CONFIG": "substituters =\n"}


@pytest.fixture
def results(tmp_path, monkeypatch):
    monkeypatch.setenv("G5K_RESULTS_DIR", str(tmp_path / "results"))
    for name, value in OFFLINE.items():
        monkeypatch.setenv(name, value)
    return tmp_path / "results"


def g5k(*args: str):
    return CliRunner().invoke(app, list(args))


def test_one_of_run_or_flake_output_and_a_key_are_required(results, tmp_path):
    neither = g5k("cache", "push", "--key-file", str(tmp_path / "k"))
    assert neither.exit_code == 2 and "--flake-output" in neither.output
    no_key = g5k("cache", "push", "--flake-output", "kernel", "--to", "file:///tmp/x")
    assert no_key.exit_code == 2 and "--key-file" in no_key.output and "generate-binary-cache-key" in no_key.output
    missing = g5k(
        "cache", "push", "--flake-output", "kernel", "--to", "file:///tmp/x", "--key-file", str(tmp_path / "k")
    )
    assert missing.exit_code == 2 and f"--key-file: {tmp_path / 'k'} does not exist" in missing.output
    no_cache = g5k("cache", "push", "--flake-output", "kernel", "--key-file", str(tmp_path / "k"))
    assert no_cache.exit_code == 2 and "--to" in no_cache.output
    assert "Traceback" not in neither.output + no_key.output + missing.output + no_cache.output


def test_a_run_whose_playbook_names_no_cache_is_refused_naming_the_field(results, tmp_path):
    book = tmp_path / "exp.yaml"
    book.write_text(PLAYBOOK)
    record = RunRecord(
        run_id="exp-20261127T150000-ab12", playbook_path=str(book), playbook=load_playbook(book),
        testbed="grid5000", api_url="https://api.grid5000.fr/stable",
    )  # fmt: skip
    RunStore(results).create(record)
    key = tmp_path / "cache.sec"
    key.write_text("test-1:c2VjcmV0\n")
    result = g5k("cache", "push", record.run_id, "--key-file", str(key))
    assert result.exit_code == 2, result.output
    assert "deploy.binary_cache" in result.output and "--to URL" in result.output


@pytest.mark.skipif(not NIX, reason="nix (Debian nix-bin) is not installed")
def test_the_command_lines_parse_with_the_real_nix(tmp_path):
    invalid = "/nix/store/" + "0" * 32 + "-absent"
    for argv in (sign_argv(str(tmp_path / "k"), [invalid]), copy_argv(f"file://{tmp_path}/cache", [invalid])):
        done = subprocess.run(argv, check=False, capture_output=True, text=True, timeout=60, env=_env())
        # Parsed, then refused for the path: an unknown flag would be "unrecognised flag".
        assert ("unrecognised" not in done.stderr and "not valid" in done.stderr) or "no substituter" in done.stderr


@pytest.mark.skipif(not NIX, reason="nix (Debian nix-bin) is not installed")
def test_a_real_closure_is_signed_and_copied_and_the_key_never_shows(tmp_path, capfd):
    source = tmp_path / "payload.txt"
    source.write_text("the experiment\n")
    try:
        path = subprocess.run(
            ["nix-store", "--add", str(source)], capture_output=True, text=True, timeout=60, check=True, env=_env()
        ).stdout.strip()
    except subprocess.CalledProcessError as exc:
        pytest.skip(f"the local Nix store is not writable here: {exc.stderr.strip()[-200:]}")
    secret, public = tmp_path / "cache.sec", tmp_path / "cache.pub"
    subprocess.run(["nix-store", "--generate-binary-cache-key", "g5k-test-1", str(secret), str(public)],
                   capture_output=True, timeout=60, check=True, env=_env())  # fmt: skip
    cache = tmp_path / "cache"
    push_closure([path], key_file=str(secret), url=f"file://{cache}", frontend=None, timeout=120)
    narinfo = (cache / f"{path.removeprefix('/nix/store/')[:32]}.narinfo").read_text()
    assert "Sig: g5k-test-1:" in narinfo
    # The pushed path verifies against the public key: the signature is the key's.
    verify = subprocess.run(
        ["nix", "--extra-experimental-features", "nix-command", "store", "verify", "--store", f"file://{cache}",
         "--trusted-public-keys", public.read_text().strip(), "--no-contents", path],
        check=False, capture_output=True, text=True, timeout=60, env=_env(),
    )  # fmt: skip
    assert verify.returncode == 0, verify.stderr
    key_material = secret.read_text().split(":", 1)[1].strip()
    seen = capfd.readouterr()
    assert key_material not in seen.out + seen.err


def _env() -> dict[str, str]:
    import os

    return {**os.environ, **OFFLINE}

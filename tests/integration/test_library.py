"""The library API: ``from g5kdeploy import Experiment``, the README's example run as written, and the ``with`` block
releasing the run on an exception, Ctrl-C or SIGTERM. Runs on the loopback testbed (its own simulator and sshd nodes).
"""

from __future__ import annotations

import os
import re
import selectors
import signal
import subprocess
import sys
import time
from pathlib import Path

import pytest

from g5kdeploy import testbeds
from g5kdeploy.errors import ConfigError
from g5kdeploy.pipeline import release
from g5kdeploy.results import RunRecord, RunStore

REPO = Path(__file__).resolve().parents[2]
SMALL = """version: 2
name: lib
testbed: local
reservation:
  site: nancy
  roles:
    exporter: {nodes: 2, cluster: gros}
  walltime: "0:30"
  max_wait: "0:05"
"""
# Reserves, says which run, then waits for the test's signal (at most two minutes).
WAITING_SCRIPT = """
import sys, threading
from g5kdeploy import Experiment

with Experiment(sys.argv[1], results_dir=sys.argv[2]) as exp:
    exp.reserve()
    print(exp.run_id, flush=True)
    threading.Event().wait(120)
print("never interrupted", flush=True)
"""


def child_env() -> dict[str, str]:
    return {key: value for key, value in os.environ.items() if not key.startswith("G5K_")}


def assert_released(results: Path, run_id: str) -> RunRecord:
    record = RunStore(results).load(run_id)
    assert record.released_at is not None
    assert all(job.released for job in record.jobs)
    assert testbeds.testbed_for(record.testbed).running_daemons(record) == []
    return record


@pytest.fixture
def small_playbook(tmp_path: Path) -> Path:
    book = tmp_path / "lib.yaml"
    book.write_text(SMALL)
    return book


def test_import_stays_cheap_and_experiment_comes_on_first_use():
    code = (
        "import sys, g5kdeploy\n"
        "assert not [m for m in sys.modules if m.startswith('g5kdeploy.')], sorted(sys.modules)\n"
        "from g5kdeploy import Experiment\n"
        "print(Experiment.__module__)\n"
    )
    done = subprocess.run([sys.executable, "-c", code], check=False, capture_output=True, text=True, timeout=60)
    assert done.returncode == 0, done.stderr
    assert done.stdout.strip() == "g5kdeploy.experiment"


def test_a_bad_playbook_is_refused_before_any_run_exists(tmp_path):
    from g5kdeploy import Experiment

    book = tmp_path / "bad.yaml"
    book.write_text(SMALL.replace("nodes: 2", "nodes: two"))
    with pytest.raises(ConfigError, match=r"reservation\.roles\.exporter\.nodes"):
        Experiment(book, results_dir=tmp_path / "results")
    assert not (tmp_path / "results").exists()


def test_commands_on_a_role_then_an_exception_releases_the_run(small_playbook, tmp_path):
    from g5kdeploy import Experiment

    results = tmp_path / "results"
    handler = signal.getsignal(signal.SIGTERM)
    with (
        pytest.raises(RuntimeError, match="the experiment's own bug"),
        Experiment(small_playbook, results_dir=results) as exp,
    ):
        roles = exp.reserve()
        nodes = roles["exporter"]
        assert len(nodes) == 2 and exp.nodes() == sorted(nodes)
        named = exp.run('echo "$G5K_NODE"', role="exporter")
        assert {node: result.stdout.strip() for node, result in named.items()} == {node: node for node in nodes}
        # Each node's own exit code, the failing one included.
        checked = exp.run(f'test "$G5K_NODE" != {nodes[0]}', nodes=nodes, timeout=30)
        assert (checked[nodes[0]].exit_code, checked[nodes[1]].exit_code) == (1, 0)
        assert not checked[nodes[0]].ok and checked[nodes[1]].ok
        with pytest.raises(ConfigError, match="role 'collector' is not in the run; its roles: exporter"):
            exp.run("true", role="collector")
        run_id = exp.run_id
        raise RuntimeError("the experiment's own bug")
    assert_released(results, run_id)
    assert signal.getsignal(signal.SIGTERM) is handler, "the caller's SIGTERM handler is back"
    # The run stays readable from Python afterwards, as `g5k status` reads it.
    assert Experiment(run="latest", results_dir=results).roles == roles


def _first_line(process: subprocess.Popen[str], timeout: float) -> str:
    assert process.stdout is not None
    deadline = time.monotonic() + timeout
    with selectors.DefaultSelector() as selector:
        selector.register(process.stdout, selectors.EVENT_READ)
        while time.monotonic() < deadline:
            if selector.select(timeout=max(0.0, deadline - time.monotonic())):
                return process.stdout.readline().strip()
    raise AssertionError(f"the script printed nothing in {timeout} s")


@pytest.mark.parametrize("sig", [signal.SIGINT, signal.SIGTERM], ids=["SIGINT", "SIGTERM"])
def test_a_signal_inside_the_block_releases_the_run(small_playbook, tmp_path, sig):
    results = tmp_path / "results"
    process = subprocess.Popen(
        [sys.executable, "-c", WAITING_SCRIPT, str(small_playbook), str(results)],
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        env=child_env(),
    )
    try:
        run_id = _first_line(process, timeout=120)
        assert run_id.startswith("lib-"), process.stderr.read() if process.stderr else ""
        process.send_signal(sig)
        out, err = process.communicate(timeout=120)
    finally:
        if process.poll() is None:
            process.kill()
            process.wait()
        # Whatever the script failed to release is released here, as `g5k release --all` would, so that a failing
        # test leaves no simulator or sshd behind (the assertions below read the record the script left).
        store = RunStore(results)
        released = {record.run_id: record.released_at is not None for record in store.all()}
        for record in store.all():
            release(record, store, testbeds.testbed_for(record.testbed))
    assert released == {run_id: True}, err
    assert process.returncode != 0
    assert "never interrupted" not in out
    assert "KeyboardInterrupt" in err
    assert_released(results, run_id)


def readme_example() -> str:
    section = (REPO / "README.md").read_text().split("\n## Library use\n", 1)[1].split("\n## ", 1)[0]
    found = re.search(r"```python\n(.*?)```", section, re.S)
    assert found, "README.md's Library use section has no python block"
    return found[1]


def test_the_readme_example_runs(tmp_path):
    """The example as written, from a directory holding the repository's playbooks, as a user would run it."""
    (tmp_path / "playbooks").symlink_to(REPO / "playbooks")
    done = subprocess.run(
        [sys.executable, "-c", readme_example()],
        check=False,
        capture_output=True,
        text=True,
        cwd=tmp_path,
        env=child_env(),
        timeout=280,
    )
    assert done.returncode == 0, done.stdout + done.stderr
    lines = done.stdout.splitlines()
    # The loopback nodes run this machine's kernel.
    unames = [line.split() for line in lines if line.startswith("gros-")]
    assert len(unames) == 2 and all(rest == ["0", os.uname().release] for _node, *rest in unames), done.stdout
    report = Path(next(line for line in lines if line.startswith("report: ")).removeprefix("report: "))
    assert report.is_file() and report.is_relative_to(tmp_path / "results")
    assert_released(tmp_path / "results", report.parent.name)

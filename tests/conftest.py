"""Shared fixtures: a real simulator on loopback, and the environment that points the agent at it."""

from __future__ import annotations

import os
import signal
import subprocess
import sys
from pathlib import Path

import pytest
from typer.testing import CliRunner

from g5kdeploy.cli import app
from g5kdeploy.simulator import SimConfig, serve_in_thread

REPO = Path(__file__).resolve().parents[1]
PASSWORD = "pw-Zq81-never-logged"
USER = "jdoe"


@pytest.fixture
def sim():
    with serve_in_thread(SimConfig(launch_seconds=1.0, seed=7)) as server:
        yield server


@pytest.fixture
def agent_env(sim, tmp_path, monkeypatch):
    """Environment for the agent: the simulator's URL, credentials, an empty HOME, a results directory."""
    env = {
        "G5K_API_URL": sim.url,
        "G5K_USERNAME": USER,
        "G5K_PASSWORD": PASSWORD,
        "HOME": str(tmp_path / "home"),
        "G5K_RESULTS_DIR": str(tmp_path / "results"),
    }
    (tmp_path / "home" / ".ssh").mkdir(parents=True)
    # The agent only needs the key to exist for the ssh_config it writes; nothing connects to Grid'5000.
    (tmp_path / "home" / ".ssh" / "id_ed25519").write_text("not a real key\n")
    for key, value in env.items():
        monkeypatch.setenv(key, value)
    return env


@pytest.fixture
def g5k(agent_env):
    """Run the CLI in-process; returns the click Result."""
    runner = CliRunner()

    def invoke(*args: str):
        return runner.invoke(app, list(args), catch_exceptions=False)

    return invoke


def spawn_g5k(*args: str, env: dict[str, str]) -> subprocess.Popen[str]:
    """The CLI as a separate process, for tests that signal or kill it."""
    return subprocess.Popen(
        [sys.executable, "-m", "g5kdeploy", *args],
        env={**os.environ, **env},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        cwd=REPO,
    )


def write_playbook(directory: Path, body: str, name: str = "exp") -> Path:
    path = directory / f"{name}.yaml"
    path.write_text(body)
    return path


def playbook_text(*, nodes: int = 2, extra: str = "", site: str = "nancy", cluster: str = "gros") -> str:
    return (
        "version: 2\nname: exp\ntestbed: grid5000\nreservation:\n"
        f"  site: {site}\n  roles:\n    collector: {{nodes: 1, cluster: {cluster}}}\n"
        f"    exporter: {{nodes: {nodes}, cluster: {cluster}}}\n  walltime: 1:00\n  max_wait: 0:05\n{extra}"
    )


# Test tiers: the markers of pyproject.toml say what a test needs besides Python, a C compiler and the OpenSSH
# client, so that `pytest -m "not sshd and not prometheus and not clang and not vm"` runs on a machine without
# them. They are given here, in one place: for whole folders and modules; for the tests of a module that use a
# fixture starting the program (directly or through another fixture); for single tests (with the parameter's id
# when only some parameters need it). Paths are relative to tests/.
SSHD, PROMETHEUS, CLANG, VM = "sshd", "prometheus", "clang", "vm"
MODULE_NEEDS: dict[str, tuple[str, ...]] = {
    "remote": (SSHD,),
    "deploy/test_kadeploy_phase.py": (SSHD,),
    "deploy/test_nxc_image_standins.py": (SSHD,),
    "integration/test_bench.py": (SSHD,),
    "integration/test_cli_nodes.py": (SSHD,),
    "integration/test_remote_mux.py": (SSHD,),
    "integration/test_deploy_artifacts.py": (SSHD,),
    # Local runs whose playbook has a collect section: their collector runs Prometheus.
    "integration/test_local_faults.py": (SSHD, PROMETHEUS),
    "integration/test_local_testbed.py": (SSHD, PROMETHEUS),
    "integration/test_pipeline.py": (SSHD, PROMETHEUS),
    "integration/test_workloads.py": (SSHD, PROMETHEUS),
    "prometheus/test_prometheus_live.py": (PROMETHEUS,),
    # The collector is a loopback node with Prometheus; the guests load eBPF compiled against their kernel.
    "vm/test_vm_testbed.py": (VM, SSHD, PROMETHEUS, CLANG),
}
FIXTURE_NEEDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("deploy/test_nxc_standins.py", "bed"): (SSHD,),
    ("deploy/test_kernel_flake.py", "bed"): (SSHD,),
    ("ebpf/test_ebpf_flake.py", "bed"): (SSHD,),
    ("integration/test_library.py", "small_playbook"): (SSHD,),
    ("ebpf/test_ebpf_compile.py", "workdir"): (CLANG,),
    ("ebpf/test_ebpf_programs.py", "host_btf"): (CLANG,),
    ("payload/test_ebpf_exporter_standin.py", "statx_object"): (CLANG,),
}
TEST_NEEDS: dict[tuple[str, str], tuple[str, ...]] = {
    ("benchmarks/test_smoke.py", "test_benchmark_runs_at_its_smallest_size[collect.py]"): (SSHD, PROMETHEUS),
    ("benchmarks/test_smoke.py", "test_benchmark_runs_at_its_smallest_size[fanout.py]"): (SSHD,),
    ("integration/test_library.py", "test_the_readme_example_runs"): (SSHD, PROMETHEUS),
    ("integration/test_nightly.py", "test_local_nightly_runs_the_whole_pipeline_then_checks_and_attaches_again"): (
        SSHD,
        PROMETHEUS,
    ),
    ("nix/test_nix.py", "test_the_ebpf_programs_compile_under_a_standin_for_nixpkgs_clang_wrapper"): (CLANG,),
    # These two look the binaries up before the check they are about.
    ("prometheus/test_prometheus_unit.py", "test_missing_binary_names_the_packages"): (PROMETHEUS,),
    ("prometheus/test_prometheus_unit.py", "test_start_monitoring_refuses_non_loopback_addresses"): (PROMETHEUS,),
    # Kconfig on Debian's kernel source (the module's other tests need nothing).
    ("vm/test_kernel_config.py", "test_an_option_whose_dependency_was_removed_is_named_before_the_build"): (VM,),
    ("vm/test_kernel_config.py", "test_a_second_build_of_one_kernel_waits_for_the_first"): (VM,),
    # The playbook's kernel.patches and kernel.config on Debian's unpacked source (no build).
    ("vm/test_kernel_config.py", "test_the_playbooks_patches_and_config_apply_to_debians_source"): (VM,),
    ("vm/test_kernel_config.py", "test_a_patch_that_does_not_apply_is_named_with_patchs_output"): (VM,),
    ("vm/test_kernel_config.py", "test_a_run_whose_patch_does_not_apply_fails_before_building"): (VM,),
}
TESTS = Path(__file__).resolve().parent


def _needs(item: pytest.Function, path: str) -> list[str]:
    needs = [need for where, marks in MODULE_NEEDS.items() for need in marks
             if path == where or path.startswith(f"{where}/")]  # fmt: skip
    needs += [need for (where, fixture), marks in FIXTURE_NEEDS.items() for need in marks
              if where == path and fixture in item.fixturenames]  # fmt: skip
    needs += [need for (where, name), marks in TEST_NEEDS.items() for need in marks
              if where == path and name in (item.name, item.originalname)]  # fmt: skip
    return list(dict.fromkeys(needs))


def _check_tier_lists(items: list[pytest.Item]) -> None:
    """A renamed module, fixture or test would fall silently into the fast tier: the lists above must follow it."""
    for where in [*MODULE_NEEDS, *(where for where, _ in [*FIXTURE_NEEDS, *TEST_NEEDS])]:
        if not (TESTS / where).exists():
            raise pytest.UsageError(f"tests/conftest.py marks tests/{where}, which no longer exists")
    modules = {item.path: item.module for item in items if isinstance(item, pytest.Function)}
    for where, name in [*FIXTURE_NEEDS, *TEST_NEEDS]:
        module = modules.get(TESTS / where)
        if module is not None and not hasattr(module, name.split("[")[0]):
            raise pytest.UsageError(f"tests/conftest.py marks tests/{where}::{name}, which no longer exists")


@pytest.hookimpl(tryfirst=True)  # before `-m` deselects by these marks
def pytest_collection_modifyitems(session, config, items) -> None:
    _check_tier_lists(items)
    for item in items:
        if isinstance(item, pytest.Function) and item.path.is_relative_to(TESTS):
            for need in _needs(item, item.path.relative_to(TESTS).as_posix()):
                item.add_marker(need)


# The VM testbed's kernel takes minutes to build on a cold machine (CI): when VM tests are selected, its build
# starts in the background as the session starts, on CPU the other tests leave idle, into the cache the VM
# tests use (builds of one kernel are serialised: the first VM test waits for this one if it is not done).
_KERNEL_BUILD: dict[str, subprocess.Popen[bytes]] = {}


def pytest_collection_finish(session) -> None:
    # After `-m` and `-k` deselected: only the tests that will run count.
    selected = any(item.get_closest_marker(VM) for item in session.items)
    if selected and not session.config.option.collectonly and not _KERNEL_BUILD:
        # Its output is not needed: a build that fails here fails again, with its message, in the first VM test.
        _KERNEL_BUILD["process"] = subprocess.Popen(
            [sys.executable, "-m", "g5kdeploy", "vm", "kernel"],
            cwd=REPO,
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
        )


def pytest_sessionfinish(session, exitstatus) -> None:
    process = _KERNEL_BUILD.pop("process", None)
    if process is not None and process.poll() is None:
        # Ctrl-C, not SIGKILL: the build stops make and its compilers and leaves nothing in the cache.
        process.send_signal(signal.SIGINT)
        try:
            process.wait(timeout=60)
        except subprocess.TimeoutExpired:
            process.kill()
            process.wait()

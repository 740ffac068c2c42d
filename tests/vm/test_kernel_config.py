"""The VM kernel's configuration: every option the experiment needs survives Kconfig, or the error names it.

These run the kernel's own configuration tools on Debian's linux-source-6.1 (no build: seconds, not minutes).
"""

from __future__ import annotations

import fcntl
from pathlib import Path

import pytest

from g5kdeploy.deploy.artifacts import missing_option
from g5kdeploy.errors import DeadlineExceeded, KernelConfigError
from g5kdeploy.tools.kernel import (
    KernelSource,
    cache_key,
    check_config,
    config_fragment,
    debian_source,
    ensure_kernel,
    kernel_options,
    required_options,
)


@pytest.mark.timeout(900)
def test_an_option_whose_dependency_was_removed_is_named_before_the_build(tmp_path):
    # Without FUNCTION_TRACER, Kconfig drops KPROBES_ON_FTRACE silently (and the override silently fails at
    # run time, vm-kernel.md 4.4): configuring refuses, naming the option, before the long build, and leaves
    # nothing in the cache. (Every kernel the VM tests build shows the full list surviving.)
    options = {name: value for name, value in kernel_options().items() if name != "FUNCTION_TRACER"}
    cache = tmp_path / "cache"
    with pytest.raises(KernelConfigError, match=r"CONFIG_KPROBES_ON_FTRACE=unset \(asked: y\)") as caught:
        ensure_kernel(cache=cache, options=options)
    assert "nix/kernel-options.json" in (caught.value.hint or "")
    assert list((cache / "kernels").iterdir()) == []


def test_every_option_of_the_experiment_is_asked_for():
    required = required_options(config_fragment())
    assert {name: required[name] for name in kernel_options()} == kernel_options()


def test_check_config_names_each_lost_option_and_the_experiments_first():
    config = "CONFIG_BPF_SYSCALL=y\nCONFIG_64BIT=y\n# CONFIG_KPROBES is not set\n"
    with pytest.raises(KernelConfigError) as caught:
        check_config(config, {"BPF_SYSCALL": "y", "KPROBES": "y", "64BIT": "y", "VIRTIO": "y"})
    message = str(caught.value)
    assert "CONFIG_KPROBES=unset (asked: y)" in message
    # An option of the experiment's list is what the user must act on: it is named, not buried among others.
    assert "VIRTIO" not in message


def test_the_cache_key_follows_every_input():
    source = KernelSource(tarball=Path("/usr/src/linux-source-6.1.tar.xz"), package="linux-source-6.1", version="1")
    fragment = config_fragment()
    key = cache_key(source, fragment)
    assert key == cache_key(source, fragment)
    assert key != cache_key(KernelSource(source.tarball, source.package, "2"), fragment)
    assert key != cache_key(source, fragment + "CONFIG_X=y\n")
    assert key != cache_key(source, config_fragment({**kernel_options(), "NET_SCHED": "y"}))


@pytest.mark.parametrize(
    ("message", "option"),
    [
        ("5: (85) call bpf_override_return#58\nunknown func bpf_override_return#58", "BPF_KPROBE_OVERRIDE"),
        (
            "libbpf: kernel BTF is missing at '/sys/kernel/btf/vmlinux', was CONFIG_DEBUG_INFO_BTF enabled?",
            "DEBUG_INFO_BTF",
        ),
        ("libbpf: prog 'statx_enter': failed to create kprobe '__x64_sys_statx+0x0' perf event: -2", "KPROBES"),
    ],
)
def test_an_option_never_asked_for_is_named_when_the_program_cannot_attach(message, option):
    assert option in (missing_option(tuple(message.splitlines())) or "")


def test_an_ordinary_refusal_names_no_option():
    assert missing_option(("R0 invalid mem access 'map_value_or_null'",)) is None


def test_a_second_build_of_one_kernel_waits_for_the_first(tmp_path):
    cache = tmp_path / "cache"
    key = cache_key(debian_source(), config_fragment())
    (cache / "locks").mkdir(parents=True)
    steps: list[str] = []
    with (cache / "locks" / f"{key}.lock").open("a") as held:
        fcntl.flock(held, fcntl.LOCK_EX)  # another run is building this kernel
        with pytest.raises(DeadlineExceeded):
            ensure_kernel(cache=cache, timeout=1.5, on_progress=lambda step, _done, _total: steps.append(step))
    assert steps == ["waiting for another build of this kernel"]
    assert not (cache / "kernels").exists()

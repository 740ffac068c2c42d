"""A commented starting playbook per testbed, for ``g5k init``: the statx experiment, ready to run or to change.

Each is the repository's example for its testbed (``playbooks/statx.yaml``, ``statx-local.yaml``,
``statx-vm.yaml``), with a comment on every choice a new user makes; it passes ``g5k check`` as written.
"""

from __future__ import annotations

import re
from pathlib import Path
from typing import Literal

from g5kdeploy.errors import ConfigError

StarterTestbed = Literal["local", "grid5000", "vm"]
_HEADERS = {
    "local": (
        "# The statx experiment on the local testbed: the Grid'5000 API simulator assigns real node names, each node\n"
        "# is an sshd on a loopback address of this machine. No credentials needed: g5k run {path}"
    ),
    "grid5000": (
        "# The statx experiment on Grid'5000: a Prometheus collector and two exporter nodes booted on the\n"
        "# experiment's NixOS (kernel and eBPF programs). Needs your Grid'5000 credentials (G5K_USERNAME and\n"
        "# G5K_PASSWORD, or ~/.python-grid5000.yaml) and SSH key. First: g5k check {path}"
    ),
    "vm": (
        "# The statx experiment for real on this machine: the collector on a loopback node, the exporters as QEMU\n"
        "# guests booting the experiment's kernel, where the eBPF programs really attach. g5k run {path}"
    ),
}


def starter_playbook(testbed: StarterTestbed, *, name: str, path: str) -> str:
    """The text of a starting playbook for ``testbed``, its runs named ``name``."""
    grid5000 = testbed == "grid5000"
    vm = testbed == "vm"
    lines = [
        _HEADERS[testbed].format(path=path),
        "version: 2",
        f"# name: the runs are {name}-<date>-<id>, and so are their OAR jobs; testbed: grid5000, local or vm",
        f"name: {name}",
        f"testbed: {testbed}",
        "reservation:",
        "  site: nancy              # a site, a list of sites, or auto (g5k sites lists them)",
        "  roles:                   # a role is a name and its nodes (g5k clusters nancy: what each cluster has)",
        "    collector: {nodes: 1, cluster: gros}",
        "    exporter: {nodes: 2, cluster: gros}",
        '  walltime: "1:00"         # H:MM; long jobs belong to nights and weekends (g5k nightly plan)',
    ]
    if grid5000:
        lines += [
            '  start_deadline: "2:00"   # give up (and delete the job) rather than wait all day for a busy cluster',
            '  max_wait: "3:00"',
        ]
    else:
        lines.append('  max_wait: "0:10"')
    if vm:
        lines += [
            "vm:",
            "  roles: [exporter]        # these roles boot as guests (1 vCPU each); the collector stays on loopback",
            "  memory: 1024             # MiB per guest",
            "  boot_timeout: 300",
        ]
    lines += [
        "ebpf:",
        "  programs: [statx-override]   # each <name>.bpf.c + <name>.yaml (its ebpf_exporter config)",
        "  directory: null          # where they are, relative to this file; default: the agent's nix/ebpf",
        "deploy:",
    ]
    if grid5000:
        lines += [
            "  # The NixOS closure (kernel, eBPF programs, exporter, benchmark) of the agent's flake (its",
            "  # nxc/composition.nix), substituted from your binary cache on the frontend, then kexec'd on every node.",
            "  method: nxc",
            "  flavour: g5k-nfs-store",
            "  composition: nxc/composition.nix",
            '  # binary_cache: {url: "https://cache.example.org", public_key: "cache.example.org-1:BASE64KEY="}',
            "  retries: 2",
            "  timeout: 1800",
        ]
    else:
        lines += [
            "  # No Nix or kexec here: statx-bench and the eBPF objects are compiled on this machine and pushed.",
            "  method: artifacts",
        ]
    iterations, threads = ("100000", "[1]") if vm else ("200000", "[1, 2]")
    lines += [
        "bench:",
        "  roles: [exporter]",
        "  workload:",
        "    # Run on every exporter node for each combination of the parameters; {threads} is one of them.",
        "    # statx-bench times statx(2) on both paths: the eBPF program overrides the answer for the first.",
        f'    command: "statx-bench --json --iterations {iterations} --warmup 1000 --threads {{threads}} '
        '--path /tmp/g5k-statx-target --path /etc/hostname"',
        "    output: json            # json | csv | regex (with pattern: named groups become metrics)",
        "    metrics: {calls_per_s: calls_per_s, p50_ns: latency_ns.p50, p99_ns: latency_ns.p99}   # name: JSON path",
        "    artifacts: [statx-bench]   # files the command needs, pushed by the deploy phase",
        "  parameters:               # the sweep: every combination, each a column of bench.csv",
        f"    threads: {threads}",
        '    ebpf: ["off", "on"]      # reserved: detach (off) or attach (on) the eBPF programs around each run',
        "  repetitions: 2",
        "  timeout: 300             # seconds per run on a node",
        "collect:",
        "  role: collector          # the node whose Prometheus is snapshotted and exported to CSV",
    ]
    if grid5000:
        lines.append("  port: 9090")
    metrics = "[p50_ns, p99_ns, calls_per_s, override_total]" if vm else "[p50_ns, p99_ns, calls_per_s]"
    lines += [
        "  step: 1",
        "nightly:                   # g5k nightly install runs it every night and looks for regressions",
        '  start: "19:05"',
        '  walltime: "1:00"',
        "  keep: 60",
        f"  metrics: {metrics}",
        "  threshold: 0.05",
    ]
    return "\n".join(lines) + "\n"


def run_name(path: Path) -> str:
    """A playbook name from a file name: ``My Exp.yaml`` gives ``my-exp``."""
    name = re.sub(r"[^a-z0-9_-]+", "-", path.stem.lower()).strip("-_")[:63]
    return name or "experiment"


def write_starter(path: Path, testbed: StarterTestbed) -> str:
    """Write the starting playbook for ``testbed`` to ``path``, which must not exist; its text."""
    text = starter_playbook(testbed, name=run_name(path), path=str(path))
    try:
        # "x": never over a file, even one created a moment ago.
        with path.open("x", encoding="utf-8") as handle:
            handle.write(text)
    except FileExistsError:
        raise ConfigError(
            f"PATH: {path} already exists; g5k init never overwrites a file",
            hint="give another PATH, or remove that file first",
        ) from None
    except OSError as exc:
        raise ConfigError(
            f"PATH: cannot write {path}: {exc.strerror}", hint="give a path in a writable directory"
        ) from None
    return text

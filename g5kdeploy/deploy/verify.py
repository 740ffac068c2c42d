"""Proving what each node runs: one probe over a fresh command per node, checked against an Expectation.

A node is verified only when everything the method promised holds: a reboot shows as a new boot id and
the run's marker on the kernel command line (a node that silently stayed on its old system fails here),
the kernel carries the override's options, /run/current-system is the expected toplevel, the exporter
answers with our program attached, the pushed files have their checksums.

The probe reads ``$G5K_PROC`` (default /proc) and ``$G5K_CURRENT_SYSTEM`` (default /run/current-system):
stand-in tests point them at files they control, since loopback nodes share the host's kernel.
"""

from __future__ import annotations

import shlex
from collections.abc import Mapping
from dataclasses import dataclass

from g5kdeploy.deploy.base import EXPORTER_PORT, Expectation
from g5kdeploy.remote import CommandResult, SshRunner
from g5kdeploy.results import NodeFacts
from g5kdeploy.tools.kernel import kernel_options

PROBE_TIMEOUT = 60.0
_METRICS = f"http://127.0.0.1:{EXPORTER_PORT}/metrics"
# Relative paths (pushed files, a stand-in's $G5K_PROC) are the node's working directory's.
_IN_WORKDIR = 'if [ -n "${G5K_NODE_DIR:-}" ]; then cd "$G5K_NODE_DIR" || exit 1; fi'


@dataclass(frozen=True)
class Verdict:
    ok: bool
    reason: str | None
    facts: NodeFacts


def probe_script(expectation: Expectation) -> str:
    """The shell text that prints one ``key=value`` fact per line."""
    lines = [
        _IN_WORKDIR,
        'P="${G5K_PROC:-/proc}"',
        'echo "boot_id=$(cat "$P/sys/kernel/random/boot_id")"',
        'echo "cmdline=$(cat "$P/cmdline")"',
        'echo "kernel=$(cat "$P/sys/kernel/osrelease")"',
        'CS="${G5K_CURRENT_SYSTEM:-/run/current-system}"',
        'if [ -e "$CS" ]; then echo "system=$(readlink -f "$CS")"; fi',
    ]
    if expectation.kernel_options:
        pattern = "|".join(sorted(kernel_options()))
        lines.append(
            f'[ -r "$P/config.gz" ] && zcat "$P/config.gz" | grep -E "^CONFIG_({pattern})=" | sed "s/^/config:/"'
        )
    if expectation.exporter:
        fetch = f"(curl -sf --max-time 5 {_METRICS} || wget -q -T 5 -O- {_METRICS})"
        wanted = "^ebpf_exporter_(ebpf_program_attached|enabled_configs)|^ebpf_exporter_statx"
        lines.append(f"{fetch} 2>/dev/null | grep -E '{wanted}' | sed 's/^/metric:/'")
    for path in sorted(expectation.files):
        quoted = shlex.quote(path)
        lines.append(f'echo "sha256:{path}=$(sha256sum {quoted} 2>/dev/null | cut -d" " -f1)"')
    lines.append("true")
    return "\n".join(lines)


def parse_facts(stdout: str) -> NodeFacts:
    facts = NodeFacts()
    plain = {"boot_id", "cmdline", "kernel", "system"}
    for line in stdout.splitlines():
        if line.startswith("config:CONFIG_"):
            name, _, value = line.removeprefix("config:CONFIG_").partition("=")
            facts.config[name] = value
        elif line.startswith("metric:"):
            facts.metrics.append(line.removeprefix("metric:"))
        elif line.startswith("sha256:"):
            path, _, digest = line.removeprefix("sha256:").rpartition("=")
            facts.sha256[path] = digest
        elif (key := line.partition("=")[0]) in plain:
            setattr(facts, key, line.partition("=")[2])
    return facts


def judge(node: str, facts: NodeFacts, expectation: Expectation, *, marker: str, boot_id_before: str | None) -> Verdict:
    """Every failed promise, in one reason."""
    problems: list[str] = []
    if expectation.rebooted and boot_id_before and facts.boot_id == boot_id_before:
        problems.append("boot id unchanged: the node did not reboot")
    if expectation.marker and f"g5k.run={marker}" not in (facts.cmdline or "").split():
        problems.append(f"g5k.run={marker} missing from /proc/cmdline: the node runs another system")
    ebpf = expectation.ebpf_nodes is None or node in expectation.ebpf_nodes
    if expectation.kernel_options and ebpf:
        wrong = [
            f"CONFIG_{name}={facts.config.get(name, 'unset')}"
            for name, value in sorted(kernel_options().items())
            if facts.config.get(name) != value
        ]
        if wrong:
            problems.append("kernel config lacks " + ", ".join(wrong))
    wanted = expectation.toplevel.get(node)
    if wanted and facts.system != wanted:
        problems.append(f"/run/current-system is {facts.system or 'absent'}, expected {wanted}")
    if expectation.exporter and ebpf:
        attached = [m for m in facts.metrics if m.startswith("ebpf_exporter_ebpf_program_attached")]
        if not facts.metrics:
            problems.append(f"ebpf_exporter does not answer on {_METRICS}")
        elif not attached or any(not m.rstrip().endswith(" 1") for m in attached):
            problems.append("ebpf_exporter answers but our program is not attached")
    for path, digest in sorted(expectation.files.items()):
        if facts.sha256.get(path) != digest:
            problems.append(f"{path}: sha256 {facts.sha256.get(path) or 'missing'} != {digest}")
    return Verdict(ok=not problems, reason="; ".join(problems) or None, facts=facts)


def boot_ids(runner: SshRunner, nodes: list[str], *, env: Mapping[str, str] | None = None) -> dict[str, str | None]:
    """Each node's boot id before the method acts (None where it cannot be read).

    Read with the probe's ``env`` and working directory, or the "before" id comes from another place than
    the "after" one and the reboot check compares unrelated values.
    """
    command = f'{_IN_WORKDIR}\ncat "${{G5K_PROC:-/proc}}/sys/kernel/random/boot_id"'
    results = runner.run(nodes, command, timeout=PROBE_TIMEOUT, env=env)
    return {node: results[node].stdout.strip() if results[node].ok else None for node in nodes}


def verify(
    runner: SshRunner,
    nodes: list[str],
    expectation: Expectation,
    *,
    marker: str,
    boot_ids_before: Mapping[str, str | None],
    env: Mapping[str, str] | None = None,
) -> dict[str, Verdict]:
    results = runner.run(nodes, probe_script(expectation), timeout=PROBE_TIMEOUT, env=env)
    verdicts: dict[str, Verdict] = {}
    for node in nodes:
        result: CommandResult = results[node]
        if not result.ok:
            reason = "probe timed out" if result.timed_out else (result.error or f"probe exit {result.exit_code}")
            verdicts[node] = Verdict(ok=False, reason=f"cannot probe the node: {reason}", facts=NodeFacts())
            continue
        facts = parse_facts(result.stdout)
        verdicts[node] = judge(node, facts, expectation, marker=marker, boot_id_before=boot_ids_before.get(node))
    return verdicts

"""How much does a short command on every node cost, with warm multiplexed masters versus new connections?

On 32 and 256 loopback sshd nodes, in the same run: ``SshRunner.run`` (what ``g5k exec`` and the phases use:
one ControlMaster per node, warm after a first untimed command),
execo ``Remote`` with a new connection per command, and fabric ``ThreadingGroup`` with new connections per
command. Each runs ``true`` on every node, sequentially; the slow baselines run fewer commands
(``--baseline-commands``), one per round, each round also timing its share of this layer's commands, so that
the machine's other work weighs on all three alike. Reported: seconds per command (one fan-out to all nodes),
the ratios, and the failed node-commands (this layer's warm-up command included). Also the client side's CPU
seconds per command (this process, the ssh clients and launchers it started, this layer's SSH masters): here
the nodes' sshd share the machine's cores with the client, while on Grid'5000 they run on the nodes, and the
client's CPU is what a frontend pays.

Target: this layer at least 10x faster per command than execo at 256 nodes, and no failure at 256 nodes.

    .venv/bin/python benchmarks/fanout.py [--commands 20] [--baseline-commands 2] [--nodes 32 256] [--smoke]

``--smoke``: 4 nodes, 5 commands, 1 for the baselines; the same lines, and an exit status that only says
whether it ran, not whether the target was met.
"""

from __future__ import annotations

import argparse
import resource
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko
import psutil
from execo import Host, Remote
from fabric import Config, ThreadingGroup
from fabric.exceptions import GroupException

from g5kdeploy.remote import SshRunner
from g5kdeploy.testbeds.loopback import LoopbackNodes, start_nodes, stop_nodes

TARGET_RATIO = 10.0
TARGET_NODES = 256
# Seconds for every sshd to answer: 256 of them start on 2 cores.
START_TIMEOUT = 120.0
COMMAND_TIMEOUT = 60.0


@dataclass(frozen=True)
class Measure:
    seconds: float
    commands: int
    failures: int
    #: CPU seconds on the client side.
    cpu: float = 0.0

    @property
    def seconds_per_command(self) -> float:
        return self.seconds / self.commands

    @property
    def cpu_per_command(self) -> float:
        return self.cpu / self.commands

    def __add__(self, other: Measure) -> Measure:
        return Measure(
            self.seconds + other.seconds,
            self.commands + other.commands,
            self.failures + other.failures,
            self.cpu + other.cpu,
        )


def client_cpu(control_dir: str | None = None) -> float:
    """CPU seconds so far of this process, of its children that ended (ssh clients, launchers), and of the SSH
    masters whose sockets are in ``control_dir`` (they run detached, so only /proc knows them)."""
    used = sum(
        usage.ru_utime + usage.ru_stime
        for usage in (resource.getrusage(resource.RUSAGE_SELF), resource.getrusage(resource.RUSAGE_CHILDREN))
    )
    if control_dir is not None:
        for process in psutil.process_iter(["name", "cmdline", "cpu_times"]):
            if process.info["name"] == "ssh" and control_dir in " ".join(process.info["cmdline"] or []):
                times = process.info["cpu_times"]
                used += times.user + times.system
    return used


def control_dir(runner: SshRunner) -> str:
    path = next(option for option in runner.ssh_options if option.startswith("ControlPath="))
    return path.removeprefix("ControlPath=").rsplit("/", 1)[0]


def this_layer(runner: SshRunner, names: list[str], commands: int) -> Measure:
    failures = 0
    masters = control_dir(runner)
    cpu = client_cpu(masters)
    start = time.monotonic()
    for _ in range(commands):
        failures += sum(not result.ok for result in runner.run(names, "true", timeout=COMMAND_TIMEOUT).values())
    return Measure(time.monotonic() - start, commands, failures, client_cpu(masters) - cpu)


def execo_remote(nodes: LoopbackNodes) -> Measure:
    params = {"ssh_options": ("-F", str(nodes.ssh_config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10")}
    hosts = [Host(node.name) for node in nodes.nodes]
    cpu = client_cpu()
    start = time.monotonic()
    remote = Remote("true", hosts, connection_params=params, process_args={"timeout": COMMAND_TIMEOUT})
    remote.run()
    failures = sum(not process.ok for process in remote.processes)
    return Measure(time.monotonic() - start, 1, failures, client_cpu() - cpu)


def fabric_group(nodes: LoopbackNodes) -> Measure:
    config = Config(runtime_ssh_path=str(nodes.ssh_config))
    failures = 0
    cpu = client_cpu()
    start = time.monotonic()
    group = ThreadingGroup(*(node.name for node in nodes.nodes), config=config)
    for connection in group:
        connection.client.load_host_keys(str(nodes.known_hosts))
        connection.client.set_missing_host_key_policy(paramiko.RejectPolicy())
    try:
        group.run("true", hide=True, in_stream=False, timeout=COMMAND_TIMEOUT)
    except GroupException as error:
        failures += sum(isinstance(result, Exception) for result in error.result.values())
    finally:
        group.close()
    return Measure(time.monotonic() - start, 1, failures, client_cpu() - cpu)


def bench(directory: Path, count: int, commands: int, baseline_commands: int) -> dict[str, Measure]:
    """The three, interleaved round by round: a burst of load on the machine weighs on each alike."""
    names = [f"gros-{i}.nancy.grid5000.fr" for i in range(1, count + 1)]
    nodes = start_nodes(directory / f"n{count}", names, timeout=START_TIMEOUT)
    try:
        with SshRunner(nodes.ssh_config) as runner:
            # Untimed: it opens the masters, which every later command reuses.
            warm = this_layer(runner, names, 1)
            measures = {
                "this": Measure(0.0, 0, warm.failures),
                "execo": Measure(0.0, 0, 0),
                "fabric": Measure(0.0, 0, 0),
            }
            rounds = max(1, baseline_commands)
            for round_ in range(rounds):
                share = commands // rounds + (round_ < commands % rounds)
                measures["this"] += this_layer(runner, names, share)
                measures["execo"] += execo_remote(nodes)
                measures["fabric"] += fabric_group(nodes)
            return measures
    finally:
        stop_nodes(node.pid for node in nodes.nodes)


def report(count: int, measures: dict[str, Measure]) -> None:
    this = measures["this"].seconds_per_command
    for name, measure in measures.items():
        print(
            f"  {count:3d} nodes  {name:7s} {measure.seconds_per_command:8.3f} s/command"
            f"  {measure.cpu_per_command:8.3f} client CPU s/command"
            f"  ({measure.commands} commands, {measure.failures} failed node-commands)"
        )
    print(
        f"  {count:3d} nodes  ratios: execo/this {measures['execo'].seconds_per_command / this:5.1f}x,"
        f"  fabric/this {measures['fabric'].seconds_per_command / this:5.1f}x"
    )
    cpu = measures["this"].cpu_per_command
    print(
        f"  {count:3d} nodes  client CPU ratios: execo/this {measures['execo'].cpu_per_command / cpu:5.1f}x,"
        f"  fabric/this {measures['fabric'].cpu_per_command / cpu:5.1f}x"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=20)
    parser.add_argument("--baseline-commands", type=int, default=2)
    parser.add_argument("--nodes", type=int, nargs="+", default=[32, TARGET_NODES])
    parser.add_argument("--smoke", action="store_true", help="smallest sizes; exit 0 whatever the verdict")
    args = parser.parse_args(argv)
    if args.smoke:
        args.nodes, args.commands, args.baseline_commands = [4], 5, 1
    print(
        f"`true` on every node, {args.commands} sequential commands for this layer (masters warmed by one untimed"
        f" command), {args.baseline_commands} for execo Remote and fabric ThreadingGroup (new connections each"
        " time); per-command averages"
    )
    results = {}
    with tempfile.TemporaryDirectory(prefix="g5k-fanout-") as scratch:
        for count in args.nodes:
            results[count] = bench(Path(scratch), count, args.commands, args.baseline_commands)
            report(count, results[count])
    largest = max(results)
    met = results[largest]["this"].failures == 0
    if TARGET_NODES in results:
        ratio = results[TARGET_NODES]["execo"].seconds_per_command / results[TARGET_NODES]["this"].seconds_per_command
        met &= ratio >= TARGET_RATIO
        print(f"execo/this at {TARGET_NODES} nodes: {ratio:.1f}x per command")
        ratio_target = f">= {TARGET_RATIO:g}x execo at {TARGET_NODES} nodes"
    else:
        ratio_target = f">= {TARGET_RATIO:g}x execo at {TARGET_NODES} nodes: not measured at these sizes"
    print(f"target ({ratio_target}, 0 failures at {largest} nodes): {'met' if met else 'MISSED'}")
    return 0 if met or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())

"""How much does a short command on every node cost, with warm multiplexed masters versus new connections?

On 8, 32 and 64 loopback sshd nodes, in the same run: ``SshRunner.run`` (one ControlMaster per node, warm
after a first untimed command), execo ``Remote`` with a new connection per command, and fabric
``ThreadingGroup`` with new connections per command. Each runs ``true`` on every node, sequentially; the
slow baselines run fewer commands (``--baseline-commands``) and the output says so. Reported: seconds per
command (one fan-out to all nodes), the ratios, and the failed node-commands.

Target: this layer at least 5x faster per command than execo at 32 nodes, and no failure at 64 nodes.

    .venv/bin/python benchmarks/fanout.py [--commands 100] [--baseline-commands 5] [--nodes 8 32 64] [--smoke]

``--smoke``: 4 nodes, 5 commands, 1 for the baselines; the same lines, and an exit status that only says
whether it ran, not whether the target was met.
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import time
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path

import paramiko
from execo import Host, Remote
from fabric import Config, ThreadingGroup
from fabric.exceptions import GroupException

from g5kdeploy.remote import SshRunner
from g5kdeploy.testbeds.loopback import LoopbackNodes, start_nodes, stop_nodes

TARGET_RATIO = 5.0
TARGET_NODES = 32
COMMAND_TIMEOUT = 60.0


@dataclass(frozen=True)
class Measure:
    seconds_per_command: float
    commands: int
    failures: int


def this_layer(nodes: LoopbackNodes, commands: int) -> Measure:
    names = [node.name for node in nodes.nodes]
    with SshRunner(nodes.ssh_config) as runner:
        failures = sum(not result.ok for result in runner.run(names, "true").values())
        start = time.monotonic()
        for _ in range(commands):
            failures += sum(not result.ok for result in runner.run(names, "true", timeout=COMMAND_TIMEOUT).values())
        return Measure((time.monotonic() - start) / commands, commands, failures)


def execo_remote(nodes: LoopbackNodes, commands: int) -> Measure:
    params = {"ssh_options": ("-F", str(nodes.ssh_config), "-o", "BatchMode=yes", "-o", "ConnectTimeout=10")}
    hosts = [Host(node.name) for node in nodes.nodes]
    failures = 0
    start = time.monotonic()
    for _ in range(commands):
        remote = Remote("true", hosts, connection_params=params, process_args={"timeout": COMMAND_TIMEOUT})
        remote.run()
        failures += sum(not process.ok for process in remote.processes)
    return Measure((time.monotonic() - start) / commands, commands, failures)


def fabric_group(nodes: LoopbackNodes, commands: int) -> Measure:
    config = Config(runtime_ssh_path=str(nodes.ssh_config))
    failures = 0
    start = time.monotonic()
    for _ in range(commands):
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
    return Measure((time.monotonic() - start) / commands, commands, failures)


def bench(directory: Path, count: int, commands: int, baseline_commands: int) -> dict[str, Measure]:
    names = [f"gros-{i}.nancy.grid5000.fr" for i in range(1, count + 1)]
    nodes = start_nodes(directory / f"n{count}", names, timeout=60.0)
    try:
        return {
            "this": this_layer(nodes, commands),
            "execo": execo_remote(nodes, baseline_commands),
            "fabric": fabric_group(nodes, baseline_commands),
        }
    finally:
        stop_nodes(node.pid for node in nodes.nodes)


def report(count: int, measures: dict[str, Measure]) -> None:
    this = measures["this"].seconds_per_command
    for name, measure in measures.items():
        print(
            f"  {count:3d} nodes  {name:7s} {measure.seconds_per_command:8.3f} s/command"
            f"  ({measure.commands} commands, {measure.failures} failed node-commands)"
        )
    print(
        f"  {count:3d} nodes  ratios: execo/this {measures['execo'].seconds_per_command / this:5.1f}x,"
        f"  fabric/this {measures['fabric'].seconds_per_command / this:5.1f}x"
    )


def main(argv: Sequence[str] | None = None) -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--commands", type=int, default=100)
    parser.add_argument("--baseline-commands", type=int, default=5)
    parser.add_argument("--nodes", type=int, nargs="+", default=[8, 32, 64])
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
    met = True
    if TARGET_NODES in results:
        ratio = results[TARGET_NODES]["execo"].seconds_per_command / results[TARGET_NODES]["this"].seconds_per_command
        met &= ratio >= TARGET_RATIO
    largest = max(results)
    met &= results[largest]["this"].failures == 0
    print(f"target (>= {TARGET_RATIO:g}x execo at {TARGET_NODES} nodes, 0 failures at {largest} nodes): ", end="")
    print("met" if met else "MISSED")
    return 0 if met or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())

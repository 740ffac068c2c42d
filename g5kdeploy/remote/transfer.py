"""Files and trees to and from nodes, every byte checked with sha256 on the side that receives it.

Single files go with scp (execo ``Put``/``Get``) over the hosts' masters. Trees go as one tar stream per
host (a local ``tar | ssh`` or ``ssh | tar`` pipeline run by execo), carrying a per-file sha256 manifest
that the receiving side checks before the transfer counts as done.
"""

from __future__ import annotations

import shlex
import tempfile
from collections.abc import Callable, Mapping, Sequence
from pathlib import Path
from typing import TYPE_CHECKING

from execo import Get, Host, Process, Put
from execo.process import ProcessBase

from g5kdeploy.errors import ConfigError
from g5kdeploy.files import sha256_file
from g5kdeploy.remote import manifest
from g5kdeploy.remote.batch import Collector, collect_processes
from g5kdeploy.remote.manifest import MANIFEST_NAME
from g5kdeploy.remote.results import Outcome, TransferResult

if TYPE_CHECKING:
    from g5kdeploy.remote.ssh import SshRunner, Starter

CHECK_TIMEOUT = 120.0


def put(
    runner: SshRunner, hosts: Sequence[str], local: Path, remote: str, *, timeout: float
) -> dict[str, TransferResult]:
    if not local.is_file():
        raise ConfigError(f"no such local file: {local}")
    expected = sha256_file(local)
    size = local.stat().st_size

    def start(ready: Sequence[str]) -> Collector:
        action = Put([Host(h) for h in ready], [str(local)], remote, connection_params=runner.connection_params)
        return _started(action.processes)

    copied = runner.fanout(hosts, start, limit=timeout)
    remote_sums = _remote_sha256(runner, [h for h, o in copied.items() if o.exit_code == 0], remote)
    results = {}
    for host, outcome in copied.items():
        actual, error = remote_sums.get(host, (None, _failure(outcome, "scp")))
        if error is None and actual != expected:
            error = f"sha256 mismatch on the node: sent {expected}, found {actual}"
        results[host] = TransferResult(host, error is None, actual, size, error, outcome.duration)
    return results


def get(
    runner: SshRunner, hosts: Sequence[str], remote: str, local_dir: Path, *, timeout: float
) -> dict[str, TransferResult]:
    remote_sums = _remote_sha256(runner, hosts, remote)
    ready = [host for host, (_, error) in remote_sums.items() if error is None]
    for host in ready:
        (local_dir / host).mkdir(parents=True, exist_ok=True)

    def start(batch: Sequence[str]) -> Collector:
        # execo replaces {{{host}}} with each host's address: one destination directory per host.
        target = f"{local_dir}/{{{{{{host}}}}}}/"
        action = Get([Host(h) for h in batch], [remote], target, connection_params=runner.connection_params)
        return _started(action.processes)

    copied = runner.fanout(ready, start, limit=timeout) if ready else {}
    results = {}
    for host, (expected, error) in remote_sums.items():
        local = local_dir / host / Path(remote).name
        actual = sha256_file(local) if error is None and local.is_file() else None
        duration = copied[host].duration if host in copied else 0.0
        if error is None and copied[host].exit_code != 0:
            error = _failure(copied[host], "scp")
        elif error is None and actual != expected:
            error = f"sha256 mismatch: the node has {expected}, received {actual}"
        size = local.stat().st_size if actual else 0
        results[host] = TransferResult(host, error is None, actual, size, error, duration)
    return results


def put_tree(
    runner: SshRunner, hosts: Sequence[str], local_dir: Path, remote_dir: str, *, timeout: float
) -> dict[str, TransferResult]:
    if not local_dir.is_dir():
        raise ConfigError(f"no such local directory: {local_dir}")
    tree, size = manifest.build(local_dir)
    with tempfile.TemporaryDirectory(prefix="g5k-manifest-") as scratch:
        (Path(scratch) / MANIFEST_NAME).write_text(tree.text())
        directory = remote_path(remote_dir)
        check = (
            f"mkdir -p {directory} && tar -C {directory} -xf - && cd {directory} && "
            f"sha256sum --quiet --strict -c {MANIFEST_NAME}; status=$?; rm -f {MANIFEST_NAME}; exit $status"
        )
        send = shlex.join(["tar", "-C", str(local_dir), "-cf", "-", ".", "-C", scratch, MANIFEST_NAME])

        def pipeline(host: str) -> str:
            return f"{send} | {shlex.join(['ssh', *runner.ssh_options, host, check])}"

        sent = runner.fanout(hosts, _pipelines(pipeline), limit=timeout)
    return {
        host: TransferResult(
            host,
            outcome.exit_code == 0 and outcome.error is None,
            tree.sha256 if outcome.exit_code == 0 else None,
            size,
            None if outcome.exit_code == 0 else _failure(outcome, "tree upload"),
            outcome.duration,
        )
        for host, outcome in sent.items()
    }


def get_tree(
    runner: SshRunner, hosts: Sequence[str], remote_dir: str, local_dir: Path, *, timeout: float
) -> dict[str, TransferResult]:
    directory = remote_path(remote_dir)
    # The manifest travels as the last member of the stream, from a scratch directory on the node.
    send = (
        f"cd {directory} && scratch=$(mktemp -d) && "
        f"find . -type f ! -name {MANIFEST_NAME} -exec sha256sum {{}} + > $scratch/{MANIFEST_NAME} && "
        f'tar -cf - . -C $scratch {MANIFEST_NAME}; status=$?; rm -rf "$scratch"; exit $status'
    )
    for host in dict.fromkeys(hosts):
        (local_dir / host).mkdir(parents=True, exist_ok=True)

    def pipeline(host: str) -> str:
        receive = shlex.join(["tar", "-C", str(local_dir / host), "-xf", "-"])
        return f"{shlex.join(['ssh', *runner.ssh_options, host, send])} | {receive}"

    received = runner.fanout(hosts, _pipelines(pipeline), limit=timeout)
    return {host: _check_received(host, local_dir / host, outcome) for host, outcome in received.items()}


def _check_received(host: str, target: Path, outcome: Outcome) -> TransferResult:
    listing = target / MANIFEST_NAME
    if outcome.exit_code != 0 or not listing.is_file():
        return TransferResult(host, False, None, 0, _failure(outcome, "tree download"), outcome.duration)
    tree = manifest.parse(listing.read_text())
    listing.unlink()
    bad, size = manifest.verify(target, tree)
    error = f"sha256 mismatch or missing after download: {', '.join(sorted(bad)[:5])}" if bad else None
    return TransferResult(host, not bad, tree.sha256, size, error, outcome.duration)


def _pipelines(script_for: Callable[[str], str]) -> Starter:
    def start(ready: Sequence[str]) -> Collector:
        return _started_by_host(
            {host: Process(("bash", "-o", "pipefail", "-c", script_for(host)), nolog_exit_code=True) for host in ready}
        )

    return start


def _remote_sha256(runner: SshRunner, hosts: Sequence[str], remote: str) -> dict[str, tuple[str | None, str | None]]:
    """Each host's sha256 of ``remote``, or why there is none."""
    sums: dict[str, tuple[str | None, str | None]] = {}
    if not hosts:
        return sums
    for host, result in runner.run(hosts, f"sha256sum -- {remote_path(remote)}", timeout=CHECK_TIMEOUT).items():
        digest = result.stdout.split(" ", 1)[0] if result.ok else None
        error = None if result.ok else (result.error or result.stderr.strip() or f"sha256sum exit {result.exit_code}")
        sums[host] = (digest, error)
    return sums


def _started(processes: Sequence[ProcessBase]) -> Collector:
    return _started_by_host({process.host.address: process for process in processes})


def _started_by_host(processes: Mapping[str, ProcessBase]) -> Collector:
    for process in processes.values():
        process.nolog_exit_code = True
        process.start()
    return collect_processes(processes)


def _failure(outcome: Outcome, what: str) -> str:
    if outcome.timed_out:
        return f"{what} timed out"
    detail = (outcome.stderr.strip().splitlines() or [outcome.stdout.strip()])[-1:]
    return f"{what} failed (exit {outcome.exit_code}): {' '.join(detail) or outcome.error or 'no output'}"


def remote_path(path: str) -> str:
    """``path`` quoted for the remote shell, keeping a leading ``~/`` expandable."""
    if path.startswith("~/"):
        return "~/" + shlex.quote(path[2:])
    return shlex.quote(path)

"""The collect phase: the run's measurements and provenance, back into ``results/<run>/``.

Each step is idempotent and recorded, so an interrupted collect is simply run again: a snapshot already
taken on the collector is fetched (not taken twice), one already fetched and checked is not fetched again,
and the snapshot is removed from the node only once its copy here has been verified.
"""

from __future__ import annotations

import json
import shlex
import tarfile
import tempfile
from collections.abc import Callable, Iterator
from contextlib import contextmanager
from dataclasses import dataclass, field
from datetime import UTC, datetime
from pathlib import Path
from typing import Any

from g5kdeploy import __version__
from g5kdeploy.collect.data import load_results
from g5kdeploy.collect.finalize import finalize_report
from g5kdeploy.collect.sbom import collect_sboms
from g5kdeploy.errors import CollectError, ConfigError, DeadlineExceeded, G5kError, PrometheusError
from g5kdeploy.files import atomic_write_text, sha256_file
from g5kdeploy.log import get_logger
from g5kdeploy.playbook import Collect
from g5kdeploy.remote import SshRunner
from g5kdeploy.remote.session import connect, forward_local
from g5kdeploy.results import (
    ExportSummary,
    NodeAccess,
    RunRecord,
    RunStore,
    finish_phase,
    start_phase,
)
from g5kdeploy.testbeds.api import Api
from g5kdeploy.testbeds.base import PrometheusEndpoint, Testbed
from g5kdeploy.tools.prometheus import PrometheusClient, write_csv

log = get_logger(__name__)
PHASE = "collect"
STEP_TIMEOUT = 300.0
#: Wall seconds to wait for every target's first scrape after the bench (a few scrape intervals at most).
SCRAPE_WAIT = 60.0
#: Called with the name of the step that starts.
OnStep = Callable[[str], None]


@dataclass
class CollectSummary:
    snapshot: Path | None = None
    exports: dict[str, Path] = field(default_factory=dict)
    plots: list[Path] = field(default_factory=list)
    #: ``sbom/<role-or-node>.cdx.json``: what each node booted.
    sboms: list[Path] = field(default_factory=list)
    report: Path | None = None
    manifest: Path | None = None
    #: What the user must know about the data: targets not scraped, queries that returned nothing.
    warnings: list[str] = field(default_factory=list)


def run_collect(
    record: RunRecord, store: RunStore, testbed: Testbed, *, on_step: OnStep | None = None
) -> CollectSummary:
    collect = record.playbook.collect
    if collect is None:
        raise ConfigError(
            f"{record.playbook_path}: no collect section", hint="add collect: {role: collector, port: 9090}"
        )
    if not record.roles.get(collect.role):
        raise ConfigError(f"run {record.run_id} has no {collect.role} node", hint="g5k reserve and g5k deploy first")
    step = on_step or (lambda _name: None)
    run_dir = store.directory(record.run_id)
    summary = CollectSummary()
    problems: list[str] = []
    results = load_results(run_dir, problems)
    start_phase(record, PHASE)
    record.collected.warnings = []
    store.save(record)
    error: str | None = None
    try:
        access = testbed.access(record, store)
        endpoint = testbed.prometheus(record, store)
        api = testbed.open(record, store)
        nodes = sorted({node for members in record.roles.values() for node in members})
        with SshRunner(Path(access.ssh_config)) as runner, _prometheus(endpoint, access) as client:
            step("waiting for the last scrapes")
            summary.warnings += _await_scrapes(client)
            step("snapshot")
            summary.snapshot = _snapshot(record, store, runner, client, endpoint)
            step("node facts")
            facts = _node_facts(runner, nodes, api, run_dir)
            step("sbom")
            summary.sboms, notes = collect_sboms(record, run_dir, facts)
            summary.warnings += notes
            step("exports")
            summary.exports, notes = _exports(record, collect, client, run_dir, testbed.ebpf_unavailable(record))
            summary.warnings += notes
        step("plots")
        from g5kdeploy.collect.plots import plot_run  # matplotlib: 0.5 s

        plots_dir = run_dir / "plots"
        plots_dir.mkdir(exist_ok=True)
        summary.plots = plot_run(results, plots_dir)
    except BaseException as exc:
        error = str(exc) or type(exc).__name__
        raise
    finally:
        record.collected.warnings = summary.warnings
        finish_phase(record, PHASE, error=error)
        store.save(record)
        for warning in summary.warnings:
            log.warning("collect", note=warning)
    step("report")
    summary.report, summary.manifest = finalize_report(
        run_dir, agent_version=__version__, results=results, problems=problems
    )
    return summary


@contextmanager
def _prometheus(endpoint: PrometheusEndpoint, access: NodeAccess) -> Iterator[PrometheusClient]:
    """The collector's Prometheus API, through an SSH port forward to the collector node."""
    if access.known_hosts is None:
        raise CollectError("no known_hosts recorded for the run's nodes", hint="g5k reserve --run RUN")
    connection = connect(endpoint.node, Path(access.ssh_config), known_hosts=Path(access.known_hosts))
    try:
        with (
            forward_local(connection, endpoint.port, remote_host=endpoint.address) as local_port,
            PrometheusClient(f"http://127.0.0.1:{local_port}") as client,
        ):
            yield client
    finally:
        connection.close()


def _await_scrapes(client: PrometheusClient) -> list[str]:
    """Wait until every target has been scraped after this moment, so the bench's last seconds are in the TSDB.

    "This moment" is Prometheus' own clock, read now that the bench is over: no clock skew between the
    controller and the collector can make an older scrape pass. Returns warnings (targets that were down).
    """
    after = client.server_time()
    try:
        targets = client.wait_scraped(after=after, deadline_s=SCRAPE_WAIT, healthy=False)
    except DeadlineExceeded as exc:
        return [f"the snapshot may miss the bench's last seconds: {exc}"]
    return [f"target {target.describe()} was down at the end of the run" for target in targets if target.health != "up"]


def _snapshot(
    record: RunRecord, store: RunStore, runner: SshRunner, client: PrometheusClient, endpoint: PrometheusEndpoint
) -> Path:
    """The collector's TSDB snapshot as ``prometheus/<name>.tar.gz``, checked, then removed from the node."""
    state = record.collected
    out_dir = store.directory(record.run_id) / "prometheus"
    done = out_dir / (state.tarball or "-")
    if state.tarball and done.exists() and sha256_file(done) == state.sha256:
        _remove_remote_snapshot(record, store, runner, endpoint)
        return done
    node = endpoint.node
    if not state.snapshot:
        try:
            state.snapshot = client.snapshot()
        except PrometheusError as exc:
            raise CollectError(
                f"cannot take a Prometheus snapshot on {node}: {exc}",
                hint="is the collector up and its Prometheus started with --web.enable-admin-api?",
            ) from None
        store.save(record)
    name = state.snapshot
    remote = f"{endpoint.data_dir}/snapshots/{name}"
    with tempfile.TemporaryDirectory(dir=store.directory(record.run_id), prefix=".snapshot-") as scratch:
        fetched = runner.get_tree([node], remote, Path(scratch), timeout=STEP_TIMEOUT)[node]
        if not fetched.ok:
            raise CollectError(f"cannot fetch snapshot {name} from {node}: {fetched.error}")
        out_dir.mkdir(exist_ok=True)
        partial = out_dir / f".{name}.tar.gz.partial"
        with tarfile.open(partial, "w:gz") as archive:
            archive.add(Path(scratch) / node, arcname=name)
        tarball = out_dir / f"{name}.tar.gz"
        partial.replace(tarball)
    state.tarball, state.sha256, state.tree_sha256 = tarball.name, sha256_file(tarball), fetched.sha256
    atomic_write_text(out_dir / f"{name}.tar.gz.sha256", f"{state.sha256}  {tarball.name}\n")
    store.save(record)
    _remove_remote_snapshot(record, store, runner, endpoint)
    return tarball


def _remove_remote_snapshot(
    record: RunRecord, store: RunStore, runner: SshRunner, endpoint: PrometheusEndpoint
) -> None:
    state = record.collected
    if state.removed or not state.snapshot:
        return
    remote = shlex.quote(f"{endpoint.data_dir}/snapshots/{state.snapshot}")
    removed = runner.run([endpoint.node], f"rm -rf {remote}", timeout=STEP_TIMEOUT)[endpoint.node]
    if removed.ok:
        state.removed = True
        store.save(record)
    else:
        log.warning("snapshot left on the collector", node=endpoint.node, path=remote, error=removed.error)


FACTS_SCRIPT = r"""
echo "kernel=$(uname -r)"
if [ -r /proc/config.gz ]; then echo "config_sha256=$(zcat /proc/config.gz | sha256sum | cut -d' ' -f1)"; fi
if [ -e /run/current-system ]; then echo "system=$(readlink -f /run/current-system)"; fi
echo "cpu=$(grep -m1 'model name' /proc/cpuinfo | cut -d: -f2- | sed 's/^ *//')"
echo "cpus=$(grep -c ^processor /proc/cpuinfo)"
echo "memory_kib=$(grep MemTotal /proc/meminfo | tr -s ' ' | cut -d' ' -f2)"
echo "boot_id=$(cat /proc/sys/kernel/random/boot_id)"
"""


def _node_facts(runner: SshRunner, nodes: list[str], api: Api, run_dir: Path) -> dict[str, dict[str, Any]]:
    """Each node's kernel, system, CPU and memory as it reports them, plus its reference-API description."""
    results = runner.run(nodes, FACTS_SCRIPT, timeout=STEP_TIMEOUT)
    facts: dict[str, dict[str, Any]] = {}
    for node in nodes:
        result = results[node]
        entry: dict[str, Any] = {"node": node, "reachable": result.ok}
        if result.ok:
            entry |= dict(line.split("=", 1) for line in result.stdout.splitlines() if "=" in line)
        else:
            entry["error"] = result.error or result.stderr.strip()
        short, site = node.split(".")[0], node.split(".")[1]
        try:
            entry["reference"] = api.node_reference(site, short.rsplit("-", 1)[0], short)
        except G5kError as exc:
            entry["reference_error"] = str(exc)
        facts[node] = entry
        atomic_write_text(run_dir / "nodes" / f"{node}.json", json.dumps(entry, indent=2, sort_keys=True) + "\n")
    return facts


def _run_window(record: RunRecord) -> tuple[float, float]:
    """From the end of the reservation (nodes up) to now: the span the experiment's metrics cover."""
    begin = record.phases.get("reserve")
    stamp = (begin.finished_at or begin.started_at) if begin else record.created_at
    start = datetime.strptime(stamp, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=UTC).timestamp()
    return start, datetime.now(UTC).timestamp()


def _exports(
    record: RunRecord, collect: Collect, client: PrometheusClient, run_dir: Path, ebpf_unavailable: str | None
) -> tuple[dict[str, Path], list[str]]:
    """Every query over the run's span into ``exports/<name>.csv``; warnings for the ones that came back empty.

    Each export's row and series counts (and, when empty, why) go into ``run.json`` for the report.
    """
    start, end = _run_window(record)
    out_dir = run_dir / "exports"
    out_dir.mkdir(exist_ok=True)
    written: dict[str, Path] = {}
    warnings: list[str] = []
    described: dict[str, ExportSummary] = {}
    for name, expr in collect.queries.items():
        series = client.query_range(expr, start, end, collect.step)
        path = out_dir / f"{name}.csv"
        rows = write_csv(series, path)
        written[name] = path
        entry = ExportSummary(rows=rows, series=len(series))
        if rows == 0:
            if ebpf_unavailable and "ebpf_exporter" in expr:
                entry.empty = f"no samples, as expected: {ebpf_unavailable}"
            else:
                entry.empty = "no samples: check the query, and that its targets were scraped during the run"
                warnings.append(f"export {name} ({expr}) is empty: {entry.empty}")
        described[name] = entry
    record.collected.exports = described
    return written, warnings

"""``g5k sites``, ``g5k clusters`` and ``g5k nodes``: what the platform has and what is free, as tables or JSON.

They read the API a run on the chosen testbed would use: Grid'5000's by default (``G5K_API_URL`` or
``~/.python-grid5000.yaml``, with the user's credentials; none on a frontend), as Grid'5000 users expect of a
Grid'5000 tool. Without credentials that is an error, not a silent switch to simulated data: ``--testbed local``
asks a simulator of its own, with the real inventory and no other users.
"""

from __future__ import annotations

from collections.abc import Iterator
from contextlib import contextmanager
from dataclasses import asdict
from datetime import UTC, datetime
from enum import StrEnum
from typing import Annotated

import typer
from rich import box
from rich.table import Column, Table

from g5kdeploy.cli.common import handle_errors, print_json, settings
from g5kdeploy.errors import ConfigError, CredentialsError
from g5kdeploy.reserve import inventory
from g5kdeploy.reserve.policy import label
from g5kdeploy.reserve.scratch import discovery_api
from g5kdeploy.signals import terminate_as_interrupt
from g5kdeploy.testbeds.api import Api
from g5kdeploy.walltime import MAX_WALLTIME, format_duration, parse_duration


class DiscoveryTestbed(StrEnum):
    grid5000 = "grid5000"
    local = "local"
    vm = "vm"


Testbed = Annotated[
    DiscoveryTestbed,
    typer.Option(
        "--testbed", help="grid5000: the API and your credentials; local or vm: a simulator started for the purpose."
    ),
]
JsonFlag = Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")]


def register(app: typer.Typer) -> None:
    app.command("sites")(sites_command)
    app.command("clusters")(clusters_command)
    app.command("nodes")(nodes_command)


@contextmanager
def _api(testbed: DiscoveryTestbed) -> Iterator[Api]:
    """The discovery API, with the way out of a missing credential spelt out."""
    # A local simulator is a daemon: SIGTERM must unwind to stop it.
    terminate_as_interrupt()
    try:
        with discovery_api(testbed.value) as api:
            yield api
    except CredentialsError as exc:
        raise CredentialsError(
            str(exc), hint=f"{exc.hint}; or --testbed local for the simulator's copy of the inventory"
        ) from None


@handle_errors
def sites_command(ctx: typer.Context, testbed: Testbed = DiscoveryTestbed.grid5000, as_json: JsonFlag = False) -> None:
    """The sites, with their clusters and nodes alive and free now."""
    state = settings(ctx)
    with _api(testbed) as api:
        found = inventory.sites(api)
    if as_json:
        print_json([asdict(site) for site in found])
        return
    table = Table(Column("site", no_wrap=True), "clusters", "nodes", "alive", "free now", box=box.SIMPLE_HEAD)
    for site in found:
        table.add_row(site.uid, str(site.clusters), str(site.nodes), str(site.alive), str(site.free))
    state.out.print(table)


@handle_errors
def clusters_command(
    ctx: typer.Context,
    site: Annotated[str | None, typer.Argument(help="One site (default: every site).")] = None,
    testbed: Testbed = DiscoveryTestbed.grid5000,
    as_json: JsonFlag = False,
) -> None:
    """The clusters (of SITE), with their hardware, queues (exotic: needs the exotic job type), nodes and free now."""
    state = settings(ctx)
    with _api(testbed) as api:
        found = inventory.clusters(api, site)
    if as_json:
        print_json([asdict(cluster) for cluster in found])
        return
    # Names are never cut: the other columns wrap instead.
    table = Table(Column("cluster", no_wrap=True), "nodes", "free", "cpu", "cores", Column("RAM", no_wrap=True), "GPUs",
                  "queues", box=box.SIMPLE_HEAD)  # fmt: skip
    for cluster in found:
        hardware = cluster.hardware
        # Every cluster takes admin jobs: the queues a user picks from are the others.
        queues = [queue for queue in cluster.queues if queue != "admin"] + (["exotic"] if cluster.exotic else [])
        table.add_row(
            f"{cluster.site}/{cluster.uid}",
            str(cluster.nodes),
            str(cluster.free),
            hardware.cpu or "?",
            str(hardware.cores or "?"),
            f"{hardware.memory_gib} GiB" if hardware.memory_gib else "?",
            str(hardware.gpus or ""),
            ", ".join(queues),
        )
    state.out.print(table)


@handle_errors
def nodes_command(
    ctx: typer.Context,
    site_cluster: Annotated[str, typer.Argument(metavar="SITE/CLUSTER", help="e.g. nancy/gros")],
    free: Annotated[
        bool, typer.Option("--free", help="Only the nodes free now for the whole walltime (status API).")
    ] = False,
    walltime: Annotated[
        str, typer.Option("--walltime", metavar="H:MM", help="How long a node must stay free.")
    ] = "1:00",
    testbed: Testbed = DiscoveryTestbed.grid5000,
    as_json: JsonFlag = False,
) -> None:
    """The nodes of a cluster: state, running or next job, and whether each is free now for the walltime."""
    state = settings(ctx)
    site, cluster = inventory.parse_site_cluster(site_cluster)
    try:
        seconds = parse_duration(walltime, maximum=MAX_WALLTIME, kind="walltime")
    except ValueError as exc:
        raise ConfigError(f"--walltime: {exc}") from None
    with _api(testbed) as api:
        found = inventory.nodes(api, site, cluster, walltime=seconds)
    shown = [node for node in found.nodes if node.free or not free]
    if as_json:
        print_json({**asdict(found), "nodes": [asdict(node) for node in shown]})
        return
    summary = found.cluster
    hardware = summary.hardware
    when = label(datetime.fromtimestamp(found.now, UTC))
    state.out.print(
        f"{site}/{cluster}: {summary.nodes} nodes, {hardware.cpu or '?'}, {hardware.cores or '?'} cores, "
        f"{hardware.memory_gib or '?'} GiB; {sum(node.free for node in found.nodes)} free from {when} "
        f"(Europe/Paris) for {format_duration(seconds)}",
        highlight=False,
        markup=False,
    )
    table = Table(Column("node", no_wrap=True), "state", f"free for {format_duration(seconds)}", "jobs",
                  box=box.SIMPLE_HEAD)  # fmt: skip
    for node in shown:
        table.add_row(node.name, f"{node.hard}/{node.soft}", "yes" if node.free else "no", _jobs(node))
    state.out.print(table)


def _jobs(node: inventory.NodeSummary) -> str:
    parts = []
    if node.busy_until:
        parts.append(f"busy until {label(datetime.fromtimestamp(node.busy_until, UTC))}")
    if node.next_job_at:
        parts.append(f"next job at {label(datetime.fromtimestamp(node.next_job_at, UTC))}")
    return "; ".join(parts)

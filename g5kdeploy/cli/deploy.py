"""``g5k deploy``: the experiment's system on every node of a run, with one live line per node."""

from __future__ import annotations

from typing import Annotated, Any

import typer
import yaml
from rich.progress import Progress, SpinnerColumn, TextColumn, TimeElapsedColumn

from g5kdeploy.cli.common import handle_errors, print_json, settings
from g5kdeploy.deploy.phase import DeploySummary, run_deploy
from g5kdeploy.signals import terminate_as_interrupt
from g5kdeploy.testbeds import testbed_for


def register(app: typer.Typer) -> None:
    app.command("deploy")(deploy_command)


@handle_errors
def deploy_command(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Argument(help="The run to deploy (default: the latest).")] = None,
    dry_run: Annotated[bool, typer.Option("--dry-run", help="Print the plan; touch no node.")] = False,
    as_json: Annotated[bool, typer.Option("--json", help="Print the result as JSON on stdout.")] = False,
) -> None:
    """Deploy the playbook's system on the run's nodes, verify each, retry or drop the failed ones."""
    state = settings(ctx)
    store = state.store
    record = store.load(run) if run else store.latest()
    testbed = testbed_for(record.testbed)
    terminate_as_interrupt()
    columns = (SpinnerColumn(), TextColumn("{task.description}"), TimeElapsedColumn())
    with Progress(*columns, console=state.err, transient=True) as progress:
        lines: dict[str, Any] = {}

        def on_node(node: str, step: str, attempt: int) -> None:
            if node not in lines:
                lines[node] = progress.add_task(node, total=None)
            progress.update(lines[node], description=f"{node}: {step} (attempt {attempt})")

        summary = run_deploy(record, store, testbed, dry_run=dry_run, on_node=on_node)
    if as_json:
        print_json(_summary_json(record.run_id, summary))
        return
    if summary.dry_run:
        plan = summary.plan.model_dump(mode="json")
        if "descriptor" in plan:
            # Every node's address and role: in --json; here, how many nodes it names.
            plan["descriptor"] = f"{len(plan['descriptor'].get('deployment', {}))} nodes (nxc's descriptor; see --json)"
        # YAML, not Python reprs: nested commands, files and nodes read as what they are.
        text = yaml.safe_dump(plan, sort_keys=False, default_flow_style=False, allow_unicode=True, width=1000)
        state.out.print(text.rstrip(), highlight=False, markup=False)
        return
    state.out.print(
        f"{record.run_id}: {len(summary.verified)} nodes verified, {len(summary.dropped)} dropped",
        highlight=False,
        markup=False,
    )
    deployed = record.deploy
    for node, reason in sorted(summary.dropped.items()):
        state.out.print(f"  dropped {node}: {reason}", highlight=False, markup=False)
        for line in deployed.nodes[node].log_tail if deployed else []:
            state.out.print(f"    | {line}", highlight=False, markup=False)


def _summary_json(run_id: str, summary: DeploySummary) -> dict[str, Any]:
    return {
        "run_id": run_id,
        "dry_run": summary.dry_run,
        "plan": summary.plan.model_dump(mode="json"),
        "verified": summary.verified,
        "dropped": summary.dropped,
    }

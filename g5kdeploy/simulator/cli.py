"""`g5k sim serve` (also `python -m g5kdeploy.simulator`): run the simulator until SIGTERM/SIGINT.

The simulator is a program of its own: this module (and what it imports) knows nothing of the agent, so a
simulator process loads only what it serves with.
"""

from __future__ import annotations

import ipaddress
import signal
import sys
import threading
from pathlib import Path
from types import FrameType
from typing import Annotated

import typer
import yaml

from g5kdeploy.simulator.config import SimConfig
from g5kdeploy.simulator.server import base_url, build_server

app = typer.Typer(help="Local Grid'5000 REST API simulator (python-grid5000 works against it).")


def _fail(message: str) -> typer.Exit:
    typer.echo(f"Error: {message}", err=True)
    return typer.Exit(code=2)


def _load_users(path: Path) -> dict[str, str]:
    try:
        # Every scalar as the text written: a password 0123 or yes is that text, not the number 83 or True.
        data = yaml.load(path.read_text(encoding="utf-8"), Loader=yaml.BaseLoader)
    except (OSError, UnicodeDecodeError, yaml.YAMLError) as exc:
        raise _fail(f"--users: cannot read {path}: {exc}") from exc
    if not isinstance(data, dict) or not data or not all(isinstance(v, str) for v in data.values()):
        raise _fail(f"--users: {path} must be a YAML mapping login: password")
    return dict(data)


def _is_loopback(host: str) -> bool:
    if host == "localhost":
        return True
    try:
        return ipaddress.ip_address(host).is_loopback
    except ValueError:
        return False


@app.callback(invoke_without_command=True)
def _root(ctx: typer.Context) -> None:
    """Keep `serve` a named subcommand even though it is the only one."""
    if ctx.invoked_subcommand is None:
        typer.echo(ctx.get_help())


@app.command()
def serve(
    host: Annotated[str, typer.Option(help="Address to bind; loopback unless --allow-remote.")] = "127.0.0.1",
    port: Annotated[int, typer.Option(help="Port to bind; 0 picks a free one.")] = 0,
    state: Annotated[Path | None, typer.Option(help="State file kept across restarts.")] = None,
    speed: Annotated[float, typer.Option(help="Simulated seconds per real second.")] = 1.0,
    faults: Annotated[str, typer.Option(help="Fault rules: 'METHOD GLOB:500=0.1,delay=1,...;...'.")] = "",
    users: Annotated[Path | None, typer.Option(help="YAML mapping login: password; default accepts any.")] = None,
    background_load: Annotated[float, typer.Option(help="Fraction of nodes kept busy by other users.")] = 0.0,
    reference: Annotated[Path | None, typer.Option(help="Reference directory instead of the bundle.")] = None,
    seed: Annotated[int | None, typer.Option(help="Seed for every random draw.")] = None,
    deploy_ko_rate: Annotated[float, typer.Option(help="Probability that a node's deployment is KO.")] = 0.0,
    allow_remote: Annotated[bool, typer.Option(help="Allow binding a non-loopback address.")] = False,
    trust_user_header: Annotated[
        bool, typer.Option(help="Take the login from X-Api-User-CN, as behind a frontend's proxy (no Basic auth).")
    ] = False,
    prediction_delay: Annotated[
        float, typer.Option(help="Simulated seconds before a waiting job gets scheduled_at and predicted nodes.")
    ] = 0.0,
) -> None:
    """Serve the API; the first line of stdout is the base URL."""
    if not allow_remote and not _is_loopback(host):
        raise _fail(f"--host {host} is not a loopback address; pass --allow-remote to expose the simulator")
    if reference is not None and not reference.is_dir():
        raise _fail(f"--reference: {reference} is not a directory")
    config = SimConfig(
        reference=reference,
        speed=speed,
        faults=faults,
        users=_load_users(users) if users is not None else None,
        background_load=background_load,
        state_file=state,
        seed=seed,
        deploy_ko_rate=deploy_ko_rate,
        trust_user_header=trust_user_header,
        prediction_delay=prediction_delay,
    )
    try:
        config.validate()
        server, sim = build_server(config, host, port)
    except ValueError as exc:
        option = str(exc).split(" ")[0].replace("_", "-")
        prefix = "--faults: " if str(exc).startswith("fault rule") else f"--{option}: "
        raise _fail(prefix + str(exc)) from exc
    except OSError as exc:
        raise _fail(f"--host/--port: cannot bind {host}:{port}: {exc}") from exc
    print(base_url(server, sim), flush=True)

    def stop(_signum: int, _frame: FrameType | None) -> None:
        # shutdown() waits for serve_forever to return, so it must run outside the serving thread.
        threading.Thread(target=server.shutdown, daemon=True).start()

    signal.signal(signal.SIGTERM, stop)
    signal.signal(signal.SIGINT, stop)
    try:
        server.serve_forever()
    finally:
        server.server_close()
        sim.save()
    sys.stdout.flush()

"""``g5k cache push``: the experiment's closure, signed, into the playbook's binary cache, so that the deploy's
cache query finds it and nxc substitutes rather than builds (the custom kernel is on no public cache)."""

from __future__ import annotations

import shlex
from pathlib import Path
from typing import Annotated

import typer

from g5kdeploy.cli.common import handle_errors, print_json, settings
from g5kdeploy.errors import ConfigError
from g5kdeploy.plans import NxcImagePlan, NxcKexecPlan
from g5kdeploy.remote import SshRunner
from g5kdeploy.results import RunRecord
from g5kdeploy.tools.frontend import Frontend
from g5kdeploy.tools.nix import build_output, push_closure

app = typer.Typer(help="The experiment's binary cache.", no_args_is_help=True)
#: The ssh_config the nxc deploy wrote for the site's frontend.
FRONTEND_SSH_CONFIG = "ssh_config.frontend"
KEY_HINT = (
    "make a key pair with `nix-store --generate-binary-cache-key NAME-1 cache.sec cache.pub`, put cache.pub's "
    "line in deploy.binary_cache.public_key, and pass --key-file cache.sec"
)


def register(root: typer.Typer) -> None:
    root.add_typer(app, name="cache")


@app.command("push")
@handle_errors
def push_command(
    ctx: typer.Context,
    run: Annotated[str | None, typer.Argument(help="A deployed nxc run: its composition's closure.")] = None,
    flake_output: Annotated[
        str | None, typer.Option("--flake-output", metavar="OUT", help="Build this flake output here and push it.")
    ] = None,
    key_file: Annotated[
        Path | None,
        typer.Option("--key-file", help="The cache's secret signing key (on the frontend for a Grid'5000 run)."),
    ] = None,
    to: Annotated[str | None, typer.Option("--to", metavar="URL", help="The cache (default: the playbook's).")] = None,
    as_json: Annotated[bool, typer.Option("--json", help="Print what was pushed as JSON on stdout.")] = False,
) -> None:
    """Sign the experiment's closure and copy it to the binary cache (`nix store sign`, `nix copy --to`)."""
    state = settings(ctx)
    if (run is None) == (flake_output is None):
        raise ConfigError("give a RUN or --flake-output OUT (one of them)", hint="g5k cache push latest --key-file KEY")
    if key_file is None:
        raise ConfigError("--key-file: no signing key named", hint=KEY_HINT)
    if run is not None:
        record = state.store.load(run)
        url = to or _playbook_cache(record)
        paths, frontend_host = _run_closure(record)
        if frontend_host is None:
            _require_key(key_file)
            push_closure(paths, key_file=str(key_file), url=url, frontend=None)
        else:
            config = state.store.directory(record.run_id) / FRONTEND_SSH_CONFIG
            with SshRunner(config) as runner:
                frontend = Frontend(runner=runner, host=frontend_host, directory=".")
                probe = frontend.attempt(f"test -r {shlex.quote(str(key_file))}", timeout=60)
                if not probe.ok:
                    raise ConfigError(f"--key-file: {key_file} is not readable on {frontend_host}", hint=KEY_HINT)
                push_closure(paths, key_file=str(key_file), url=url, frontend=frontend)
    else:
        assert flake_output is not None
        if to is None:
            raise ConfigError("--to: no cache named", hint="--to URL, the playbook's deploy.binary_cache.url")
        _require_key(key_file)
        url = to
        paths = build_output(flake_output)
        push_closure(paths, key_file=str(key_file), url=url, frontend=None)
    if as_json:
        print_json({"cache": url, "paths": paths})
    else:
        state.out.print(f"pushed the closure of {', '.join(paths)} to {url}", highlight=False, markup=False)


def _playbook_cache(record: RunRecord) -> str:
    deploy = record.playbook.deploy
    if deploy is None or deploy.binary_cache is None:
        raise ConfigError(
            f"deploy.binary_cache: {record.playbook_path} names no binary cache",
            hint="add deploy.binary_cache: {url: ..., public_key: ...} to the playbook, or pass --to URL",
        )
    return deploy.binary_cache.url


def _run_closure(record: RunRecord) -> tuple[list[str], str | None]:
    """The run's composition (whose closure is everything its nodes boot) and the frontend holding it."""
    plan = record.deploy.plan if record.deploy else None
    if not isinstance(plan, NxcKexecPlan | NxcImagePlan):
        raise ConfigError(
            f"run {record.run_id} has no nxc deploy plan: nothing of it is a Nix closure",
            hint="g5k deploy RUN with deploy.method nxc first, or push a flake output: --flake-output OUT",
        )
    return [plan.composition], plan.frontend if record.testbed == "grid5000" else None


def _require_key(key_file: Path) -> None:
    if not key_file.is_file():
        raise ConfigError(f"--key-file: {key_file} does not exist or is not a file", hint=KEY_HINT)

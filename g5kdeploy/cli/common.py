"""What every command shares: options from the top-level callback, output consoles, error display."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from g5kdeploy.errors import G5kError
from g5kdeploy.log import redact
from g5kdeploy.results import RunStore

P = ParamSpec("P")
R = TypeVar("R")
INTERRUPTED = 130


@dataclass
class Settings:
    results_dir: Path = Path("results")
    log_json: bool = False
    verbose: int = 0
    out: Console = field(default_factory=lambda: Console(soft_wrap=True))
    err: Console = field(default_factory=lambda: Console(stderr=True, soft_wrap=True))

    @property
    def store(self) -> RunStore:
        return RunStore(self.results_dir)


def settings(ctx: typer.Context) -> Settings:
    found = ctx.find_object(Settings)
    return found if found is not None else Settings()


def print_json(value: Any) -> None:
    """Machine-readable output: one JSON document on stdout, nothing else there."""
    typer.echo(json.dumps(value, indent=2, sort_keys=True))


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Show a G5kError as one red line and a hint, with its exit code; Ctrl-C exits 130."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        err = Console(stderr=True, soft_wrap=True)
        try:
            return command(*args, **kwargs)
        except G5kError as exc:
            err.print(f"[bold red]error:[/] {escape(redact(str(exc)))}", highlight=False)
            if exc.hint:
                err.print(f"[yellow]hint:[/] {escape(redact(exc.hint))}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            err.print("[bold red]interrupted[/]")
            raise typer.Exit(INTERRUPTED) from None

    return wrapper

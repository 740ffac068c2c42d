"""What every command shares: options from the top-level callback, output consoles, error display."""

from __future__ import annotations

import functools
import json
from collections.abc import Callable
from contextvars import ContextVar
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, ParamSpec, TypeVar

import typer
from rich.console import Console
from rich.markup import escape

from g5kdeploy.credentials import resolve_endpoint
from g5kdeploy.errors import ConfigError, G5kError
from g5kdeploy.log import get_logger, redact
from g5kdeploy.playbook import LOCAL_TESTBEDS, Playbook, load_playbook
from g5kdeploy.reserve.phase import create_run
from g5kdeploy.results import RunRecord, RunStore

log = get_logger("g5k")
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

    def tell(self, message: str, *, level: str = "info", label: str | None = None, **fields: Any) -> None:
        """A message for the user on stderr: a JSON log line with ``--log-json``, else a (labelled) line."""
        if self.log_json:
            getattr(log, level)(message, **fields)
            return
        colour = {"warning": "yellow", "error": "bold red"}.get(level, "bold")
        prefix = f"[{colour}]{escape(label)}:[/] " if label else ""
        extra = "".join(f" {escape(str(value))}" for value in fields.values())
        self.err.print(f"{prefix}{escape(redact(message))}{extra}", highlight=False)


#: This invocation's global options, set by the top-level callback, for code that has no context at hand.
CURRENT: ContextVar[Settings | None] = ContextVar("g5k_settings", default=None)


def settings(ctx: typer.Context) -> Settings:
    found = ctx.find_object(Settings)
    return found if found is not None else Settings()


def api_url_for(book: Playbook) -> str:
    """The API a new run will use; resolving it checks the credentials before anything is created."""
    # The local testbed's simulator is started with the run; its URL is recorded once it is up.
    return "local simulator" if book.testbed in LOCAL_TESTBEDS else resolve_endpoint().url


def start_or_resume(state: Settings, playbook: Path | None, run: str | None, *, option: str) -> RunRecord:
    """The run named by ``option`` (``--run``/``--resume``), or a new one for ``playbook``; exactly one of them."""
    if (playbook is None) == (run is None):
        raise ConfigError(f"give a PLAYBOOK to start a run, or {option} RUN to resume one (not both)")
    if run is not None:
        return state.store.load(run)
    assert playbook is not None
    book = load_playbook(playbook)
    record = create_run(state.store, book, playbook, api_url=api_url_for(book))
    state.tell(f"run {record.run_id} in {state.store.directory(record.run_id)}", run=record.run_id)
    return record


def print_json(value: Any) -> None:
    """Machine-readable output: one JSON document on stdout, nothing else there."""
    typer.echo(json.dumps(value, indent=2, sort_keys=True))


def handle_errors(command: Callable[P, R]) -> Callable[P, R]:
    """Show a G5kError as one red line and a hint, with its exit code; Ctrl-C exits 130."""

    @functools.wraps(command)
    def wrapper(*args: P.args, **kwargs: P.kwargs) -> R:
        state = CURRENT.get() or Settings()
        try:
            return command(*args, **kwargs)
        except G5kError as exc:
            if state.log_json:
                log.error(redact(str(exc)), hint=redact(exc.hint) if exc.hint else None, exit_code=exc.exit_code)
            else:
                state.err.print(f"[bold red]error:[/] {escape(redact(str(exc)))}", highlight=False)
                if exc.hint:
                    state.err.print(f"[yellow]hint:[/] {escape(redact(exc.hint))}", highlight=False)
            raise typer.Exit(exc.exit_code) from None
        except KeyboardInterrupt:
            state.tell("interrupted", level="error", exit_code=INTERRUPTED)
            raise typer.Exit(INTERRUPTED) from None

    return wrapper

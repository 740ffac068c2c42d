"""Live progress for long commands: one line per phase, per deploying node, and the sweep's bar with its ETA."""

from __future__ import annotations

from typing import Any

from rich.console import Console
from rich.progress import (
    BarColumn,
    MofNCompleteColumn,
    Progress,
    ProgressColumn,
    SpinnerColumn,
    Task,
    TaskID,
    TextColumn,
    TimeElapsedColumn,
    TimeRemainingColumn,
)
from rich.text import Text

from g5kdeploy.pipeline import Watchers
from g5kdeploy.results import JobEntry
from g5kdeploy.walltime import format_duration


class _WhenCounted(ProgressColumn):
    """Another column, shown only on lines that count something (the sweep), blank on the others."""

    def __init__(self, column: ProgressColumn) -> None:
        super().__init__()
        self._column = column

    def render(self, task: Task) -> Any:
        return self._column.render(task) if task.total is not None else Text("")


def job_line(entry: JobEntry, job: dict[str, Any], now: float) -> str:
    """``nancy/1234: waiting, start predicted in 0:12:00``: one job as the reserve phase last saw it."""
    line = f"{entry.label}: {job.get('state')}"
    scheduled = job.get("scheduled_at")
    if scheduled and job.get("state") not in ("running",):
        line += f", start predicted in {format_duration(max(0, int(scheduled - now)))}"
    return line


class PipelineDisplay:
    """The whole pipeline on the terminal: the current phase, its nodes or its sweep, updated in place."""

    def __init__(self, console: Console, *, now: Any) -> None:
        self._now = now
        self._progress = Progress(
            SpinnerColumn(),
            TextColumn("{task.description}"),
            _WhenCounted(BarColumn()),
            _WhenCounted(MofNCompleteColumn()),
            TimeElapsedColumn(),
            _WhenCounted(TextColumn("eta")),
            _WhenCounted(TimeRemainingColumn()),
            console=console,
            transient=True,
        )
        self._phase: TaskID | None = None
        self._phase_name = "starting"
        self._details: dict[str, TaskID] = {}

    def __enter__(self) -> PipelineDisplay:
        self._progress.__enter__()
        self._phase = self._progress.add_task("starting", total=None)
        return self

    def __exit__(self, *exc_info: object) -> None:
        self._progress.__exit__(None, None, None)

    @property
    def watchers(self) -> Watchers:
        return Watchers(
            phase=self.phase, job=self.job, node=self.node, sweep=self.sweep, step=self.step, build=self.build
        )

    def phase(self, name: str) -> None:
        # A new phase: the previous one's node lines and bar are done with.
        for task in self._details.values():
            self._progress.remove_task(task)
        self._details.clear()
        self._phase_name = name
        self._describe(name)

    def job(self, entry: JobEntry, job: dict[str, Any]) -> None:
        self._describe(f"{self._phase_name}: {job_line(entry, job, self._now())}")

    def node(self, node: str, step: str, attempt: int) -> None:
        line = f"  {node}: {step}" + (f" (attempt {attempt})" if attempt > 1 else "")
        self._detail(node, line, total=None)

    def sweep(self, done: int, total: int, what: str) -> None:
        task = self._detail("sweep", f"  {what}", total=total)
        self._progress.update(task, completed=done)

    def build(self, what: str, done: int, total: int | None) -> None:
        """The VM testbed's kernel build (before anything is reserved): a bar once it compiles."""
        task = self._detail("build", f"  {what}", total=total)
        self._progress.update(task, completed=done)

    def step(self, name: str) -> None:
        self._describe(f"{self._phase_name}: {name}")

    def _describe(self, text: str) -> None:
        if self._phase is not None:
            self._progress.update(self._phase, description=text)

    def _detail(self, key: str, text: str, *, total: int | None) -> TaskID:
        if key not in self._details:
            self._details[key] = self._progress.add_task(text, total=total)
        self._progress.update(self._details[key], description=text, total=total)
        return self._details[key]

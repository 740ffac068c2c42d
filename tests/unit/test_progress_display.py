"""``g5k run``'s display: each phase's own progress (jobs, deploying nodes, the sweep's count and ETA)."""

from __future__ import annotations

import io

from rich.console import Console

from g5kdeploy.cli.progress import PipelineDisplay
from g5kdeploy.results import JobEntry


def shown(display: PipelineDisplay, console: Console) -> str:
    console.print(display._progress.get_renderable())
    return console.file.getvalue()  # type: ignore[attr-defined]


def test_the_display_follows_each_phase_with_its_own_detail():
    console = Console(file=io.StringIO(), force_terminal=True, width=160, color_system=None)
    with PipelineDisplay(console, now=lambda: 1000.0) as display:
        watch = display.watchers
        watch.phase("reserve")
        watch.job(JobEntry(site="nancy", name="r", resources="nodes=3", walltime=3600, uid=42),
                  {"state": "waiting", "scheduled_at": 1720})  # fmt: skip
        assert "reserve: nancy/42: waiting, start predicted in 0:12:00" in shown(display, console)

        watch.phase("deploy")
        watch.node("gros-1.nancy.grid5000.fr", "booting", 1)
        watch.node("gros-2.nancy.grid5000.fr", "verifying", 2)
        text = shown(display, console)
        assert "gros-1.nancy.grid5000.fr: booting" in text
        assert "gros-2.nancy.grid5000.fr: verifying (attempt 2)" in text

        watch.phase("bench")
        watch.sweep(3, 12, "threads-2_ebpf-off_rep-1")
        console.file = io.StringIO()
        text = shown(display, console)
        assert "3/12" in text and "eta" in text and "threads-2_ebpf-off_rep-1" in text
        # The deploy phase's node lines are gone once the bench runs.
        assert "gros-1.nancy.grid5000.fr" not in text

        watch.phase("collect")
        watch.step("snapshot")
        console.file = io.StringIO()
        text = shown(display, console)
        assert "collect: snapshot" in text and "3/12" not in text

"""How quickly, and how gently, does the agent notice that a job started?

A job is booked to start two simulated hours after submission (an advance reservation, so the API gives
its ``scheduled_at`` at once). Three pollers watch three such jobs in the same run, against the same
simulator: the agent's own wait (the real reserve phase), a fixed 5 s poller, and EnOSlib's backoff
(5, 10, ... 45 s, then 150 s). For each: the delay between the job entering ``running`` and the poller
seeing it, in simulated seconds, and the GETs it spent on the job.

Target: the agent detects the start within 1 simulated second, with no more GETs than the backoff poller.
The agent runs as from a fresh clone: a temporary HOME with a throw-away SSH key (the grid5000 testbed
writes an ``ssh_config`` naming one; nothing connects to a node).

    .venv/bin/python benchmarks/wait_latency.py [--speed 60] [--lead 7200] [--smoke]

``--smoke`` books the job 2 simulated minutes ahead instead (a few wall seconds): the same lines, and an
exit status that only says whether it ran, not whether the target was met.
"""

from __future__ import annotations

import argparse
import subprocess
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import grid5000

from g5kdeploy.playbook import PARIS, parse_playbook
from g5kdeploy.reserve.phase import create_run, reserve
from g5kdeploy.results import RunStore
from g5kdeploy.simulator import SimConfig, SimServer, serve_in_thread
from g5kdeploy.simulator.clock import ScaledClock
from g5kdeploy.testbeds import Grid5000Testbed

LEAD = 7200.0
SMOKE_LEAD = 120.0
SITE = "nancy"
# How long after the job's start a naive poller keeps looking, in simulated seconds (its longest interval is 150).
POLLER_GRACE = 600.0


def fixed_intervals() -> Iterator[float]:
    while True:
        yield 5.0


def backoff_intervals() -> Iterator[float]:
    yield from range(5, 50, 5)
    while True:
        yield 150.0


def naive_poller(
    url: str,
    clock: ScaledClock,
    uid: int,
    intervals: Iterator[float],
    deadline: float,
    stop: threading.Event,
    seen: dict[str, float],
) -> None:
    """Poll until the job runs, the simulated ``deadline`` passes, or ``stop`` is set (the run is over)."""
    job = grid5000.Grid5000(uri=url, username="poller", password="x").sites[SITE].jobs[uid]
    while not stop.is_set() and clock.now() < deadline:
        job.refresh()
        if job.state == "running":
            seen["at"] = clock.now()
            return
        stop.wait(next(intervals) / clock.speed)


def throwaway_key(home: Path) -> None:
    """An SSH key where the grid5000 testbed looks for one (``~/.ssh/id_ed25519``)."""
    (home / ".ssh").mkdir(mode=0o700, parents=True)
    key = home / ".ssh" / "id_ed25519"
    subprocess.run(["ssh-keygen", "-q", "-t", "ed25519", "-N", "", "-f", str(key)], check=True, timeout=60)


def submit_reserved(url: str, user: str, when: str) -> int:
    site = grid5000.Grid5000(uri=url, username=user, password="x").sites[SITE]
    body = {"resources": "nodes=1,walltime=3:00", "command": "sleep 10000", "reservation": when, "name": user}
    return int(site.jobs.create(body).uid)


def running_since(server: SimServer, uid: int) -> float:
    return next(at for state, at in server.simulator.job_history(SITE, uid) if state == "running")


def job_gets(server: SimServer, uid: int) -> int:
    return server.simulator.request_count("GET", f"/sites/{SITE}/jobs/{uid}")


def measure(scratch: Path, speed: float, lead: float) -> list[tuple[str, float, int]]:
    """(poller, detection delay in simulated s, GETs on its job) for the agent, then the two naive pollers."""
    home = scratch / "home"
    throwaway_key(home)
    with serve_in_thread(SimConfig(speed=speed, launch_seconds=5.0, seed=3)) as server:
        clock = server.simulator.clock
        start = datetime.fromtimestamp(clock.now() + lead, PARIS).replace(microsecond=0)
        when = start.strftime("%Y-%m-%d %H:%M:%S")

        names = ("fixed 5 s", "backoff 5..45, 150 s")
        pollers: dict[str, dict[str, float]] = {name: {} for name in names}
        uids = {
            names[0]: submit_reserved(server.url, "fixed", when),
            names[1]: submit_reserved(server.url, "backoff", when),
        }
        # Every poller stops at the end of the run, whatever happens: none polls a simulator that is gone.
        stop = threading.Event()
        deadline = start.timestamp() + POLLER_GRACE
        threads = [
            threading.Thread(
                target=naive_poller, args=(server.url, clock, uids[name], make(), deadline, stop, pollers[name])
            )
            for name, make in zip(names, (fixed_intervals, backoff_intervals), strict=True)
        ]
        for thread in threads:
            thread.start()
        try:
            playbook = parse_playbook(
                "version: 2\nname: bench\ntestbed: grid5000\nreservation:\n  site: nancy\n"
                f"  roles:\n    node: {{nodes: 1}}\n  walltime: '3:00'\n  reservation: '{when}'\n"
            )
            store = RunStore(scratch / "results")
            record = create_run(store, playbook, Path("bench.yaml"), api_url=server.url)
            env = {"G5K_API_URL": server.url, "G5K_USERNAME": "agent", "G5K_PASSWORD": "x", "HOME": str(home)}
            seen: dict[str, float] = {}

            def detect(_entry: object, job: dict) -> None:
                if job.get("state") == "running":
                    seen.setdefault("at", clock.now())

            reserve(record, store, Grid5000Testbed(env=env, clock=clock), on_update=detect)
            for thread in threads:
                thread.join()
        finally:
            stop.set()
            for thread in threads:
                thread.join()

        missed = [name for name in names if "at" not in pollers[name]]
        if missed or "at" not in seen:
            raise SystemExit(f"no start seen by: {', '.join(missed or ['the agent'])}")
        uid = record.jobs[0].uid
        assert uid is not None
        rows = [("agent", seen["at"] - running_since(server, uid), job_gets(server, uid))]
        rows += [
            (name, pollers[name]["at"] - running_since(server, uids[name]), job_gets(server, uids[name]))
            for name in names
        ]
    return rows


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    parser.add_argument("--lead", type=float, default=LEAD, help="simulated seconds from submission to start")
    parser.add_argument("--smoke", action="store_true", help=f"--lead {SMOKE_LEAD:g}; exit 0 whatever the verdict")
    args = parser.parse_args()
    lead = SMOKE_LEAD if args.smoke else args.lead
    with tempfile.TemporaryDirectory(prefix="wait-latency-") as scratch:
        rows = measure(Path(scratch), args.speed, lead)

    print(f"job starting {lead:g} simulated s after submission; simulator at speed {args.speed:g}")
    print(f"{'poller':<22}{'detection delay (sim s)':>26}{'GETs on the job':>18}")
    for name, delay, gets in rows:
        print(f"{name:<22}{delay:>26.2f}{gets:>18}")
    agent, fixed, backoff = rows
    print(
        f"ratios  agent/fixed GETs {agent[2] / fixed[2]:.3f}  agent/backoff GETs {agent[2] / backoff[2]:.3f}  "
        f"agent/backoff delay {agent[1] / max(backoff[1], 1e-9):.4f}"
    )
    met = agent[1] <= 1.0 and agent[2] <= backoff[2]
    print(f"target (delay <= 1 sim s and GETs <= backoff's): {'met' if met else 'MISSED'}")
    return 0 if met or args.smoke else 1


if __name__ == "__main__":
    sys.exit(main())

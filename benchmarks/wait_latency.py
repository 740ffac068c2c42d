"""How quickly, and how gently, does the agent notice that a job started?

A job is booked to start two simulated hours after submission (an advance reservation, so the API gives
its ``scheduled_at`` at once). Three pollers watch three such jobs in the same run, against the same
simulator: the agent's own wait (the real reserve phase), a fixed 5 s poller, and EnOSlib's backoff
(5, 10, ... 45 s, then 150 s). For each: the delay between the job entering ``running`` and the poller
seeing it, in simulated seconds, and the GETs it spent on the job.

Target: the agent detects the start within 1 simulated second, with no more GETs than the backoff poller.

    .venv/bin/python benchmarks/wait_latency.py [--speed 60]
"""

from __future__ import annotations

import argparse
import sys
import tempfile
import threading
from collections.abc import Iterator
from datetime import datetime
from pathlib import Path

import grid5000

from g5kdeploy.clock import ScaledClock
from g5kdeploy.phases.reserve import create_run, reserve
from g5kdeploy.playbook import PARIS, parse_playbook
from g5kdeploy.results import RunStore
from g5kdeploy.simulator import SimConfig, serve_in_thread
from g5kdeploy.testbeds import Grid5000Testbed

LEAD = 7200.0
SITE = "nancy"


def fixed_intervals() -> Iterator[float]:
    while True:
        yield 5.0


def backoff_intervals() -> Iterator[float]:
    yield from range(5, 50, 5)
    while True:
        yield 150.0


def naive_poller(url: str, clock: ScaledClock, uid: int, intervals: Iterator[float], seen: dict[str, float]) -> None:
    job = grid5000.Grid5000(uri=url, username="poller", password="x").sites[SITE].jobs[uid]
    while True:
        job.refresh()
        if job.state == "running":
            seen["at"] = clock.now()
            return
        clock.sleep(next(intervals))


def submit_reserved(url: str, user: str, when: str) -> int:
    site = grid5000.Grid5000(uri=url, username=user, password="x").sites[SITE]
    body = {"resources": "nodes=1,walltime=3:00", "command": "sleep 10000", "reservation": when, "name": user}
    return int(site.jobs.create(body).uid)


def running_since(server, uid: int) -> float:
    return next(at for state, at in server.simulator.job_history(SITE, uid) if state == "running")


def job_gets(server, uid: int) -> int:
    return server.simulator.request_count("GET", f"/sites/{SITE}/jobs/{uid}")


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--speed", type=float, default=60.0, help="simulated seconds per real second")
    speed = parser.parse_args().speed
    results = Path(tempfile.mkdtemp(prefix="wait-latency-"))
    with serve_in_thread(SimConfig(speed=speed, launch_seconds=5.0, seed=3)) as server:
        clock = server.simulator.clock
        start = datetime.fromtimestamp(clock.now() + LEAD, PARIS).replace(microsecond=0)
        when = start.strftime("%Y-%m-%d %H:%M:%S")

        pollers: dict[str, dict[str, float]] = {"fixed 5 s": {}, "backoff 5..45, 150 s": {}}
        uids = {
            "fixed 5 s": submit_reserved(server.url, "fixed", when),
            "backoff 5..45, 150 s": submit_reserved(server.url, "backoff", when),
        }
        threads = [
            threading.Thread(target=naive_poller, args=(server.url, clock, uids[name], make(), pollers[name]))
            for name, make in (("fixed 5 s", fixed_intervals), ("backoff 5..45, 150 s", backoff_intervals))
        ]
        for thread in threads:
            thread.start()

        playbook = parse_playbook(
            "version: 1\nname: bench\ntestbed: grid5000\nreservation:\n  site: nancy\n"
            f"  roles:\n    node: {{nodes: 1}}\n  walltime: '3:00'\n  reservation: '{when}'\n"
        )
        store = RunStore(results)
        record = create_run(store, playbook, Path("bench.yaml"), api_url=server.url)
        env = {"G5K_API_URL": server.url, "G5K_USERNAME": "agent", "G5K_PASSWORD": "x", "HOME": str(results)}
        seen: dict[str, float] = {}

        def detect(_entry: object, job: dict) -> None:
            if job.get("state") == "running":
                seen.setdefault("at", clock.now())

        reserve(record, store, Grid5000Testbed(env=env, clock=clock), on_update=detect)
        agent_seen = seen["at"]
        for thread in threads:
            thread.join()

        uid = record.jobs[0].uid
        assert uid is not None
        rows: list[tuple[str, float, int]] = [("agent", agent_seen - running_since(server, uid), job_gets(server, uid))]
        rows += [
            (name, seen["at"] - running_since(server, uids[name]), job_gets(server, uids[name]))
            for name, seen in pollers.items()
        ]

    print(f"job starting {LEAD / 3600:.0f} simulated h after submission; simulator at speed {speed:g}")
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
    return 0 if met else 1


if __name__ == "__main__":
    sys.exit(main())

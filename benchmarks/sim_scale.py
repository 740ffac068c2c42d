"""How long does the simulator take to accept, then delete, 1,000 one-node jobs on one site?

Each POST or DELETE of a job replans the site's waiting jobs. The original pass planned every waiting
job again from scratch, each on the whole gantt, so a site with hundreds of waiting jobs took seconds per
request (issue 17: 300 jobs took 61 s to submit and 55 s to delete). The incremental pass keeps the
previous predictions up to the first job that could now be planned differently.

The jobs go through python-grid5000 over HTTP to a simulator serving in this process, as a user's script
would send them, one after another; they are deleted oldest first, the order that replans the most (each
deletion moves every later prediction). Both passes run in the same process: the original one at a size
it finishes in seconds, the incremental one at that size (their ratio) and at 1,000 jobs (the target).

    .venv/bin/python benchmarks/sim_scale.py [--jobs 1000] [--baseline-jobs 300] [--site nancy] [--smoke]

Target: 1,000 jobs submitted then deleted in <= 10 s. ``--smoke`` runs 40 jobs with both passes: the
same lines, and an exit status that only says whether it ran, not whether the target was met.
"""

from __future__ import annotations

import argparse
import sys
import time

import grid5000

from g5kdeploy.simulator import SimConfig, serve_in_thread

TARGET_SECONDS = 10.0
SMOKE_JOBS = 40


def submit_then_delete(jobs: int, site_name: str, incremental: bool) -> tuple[float, float]:
    """Wall seconds to submit `jobs` one-node jobs, then to delete them all (oldest first)."""
    with serve_in_thread(SimConfig(speed=1.0, seed=1)) as server:
        server.simulator.plan_incrementally(incremental)
        site = grid5000.Grid5000(uri=server.url, username="bench", password="pw").sites[site_name]
        begin = time.perf_counter()
        created = [site.jobs.create({"command": "sleep 3000", "resources": "nodes=1,walltime=1"}) for _ in range(jobs)]
        submitted = time.perf_counter()
        for job in created:
            job.delete()
        deleted = time.perf_counter()
        left = [j for j in server.simulator.live_jobs(site_name) if j["user"] == "bench"]
        if left:
            raise SystemExit(f"{len(left)} jobs still live after deleting them all")
        return submitted - begin, deleted - submitted


def report(label: str, jobs: int, times: tuple[float, float]) -> float:
    total = sum(times)
    print(f"{label:<24}{jobs:>6} jobs  submit {times[0]:7.2f} s  delete {times[1]:7.2f} s  total {total:7.2f} s")
    return total


def main() -> int:
    parser = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    parser.add_argument("--jobs", type=int, default=1000)
    parser.add_argument("--baseline-jobs", type=int, default=300, help="size both passes run at, for the ratio")
    parser.add_argument("--site", default="nancy")
    parser.add_argument("--smoke", action="store_true")
    args = parser.parse_args()
    jobs, baseline_jobs = (SMOKE_JOBS, SMOKE_JOBS) if args.smoke else (args.jobs, args.baseline_jobs)

    original = report("original (from scratch)", baseline_jobs, submit_then_delete(baseline_jobs, args.site, False))
    same_size = report("incremental", baseline_jobs, submit_then_delete(baseline_jobs, args.site, True))
    print(f"ratio original/incremental at {baseline_jobs} jobs: {original / same_size:.1f}x")
    full = report("incremental", jobs, submit_then_delete(jobs, args.site, True))
    met = full <= TARGET_SECONDS and jobs >= 1000
    verdict = "met" if met else "MISSED"
    print(f"target ({jobs} jobs submitted then deleted <= {TARGET_SECONDS:g} s, at 1000 jobs): {verdict}")
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""The scheduler at OAR job counts (issue 17, defect 5): incremental passes plan exactly as full ones.

Every POST/DELETE used to plan every waiting job again from scratch, each on the whole gantt. The
incremental pass keeps what the previous pass planned up to the first job that could now be planned
differently; these tests drive two job books through the same random history, one planning from scratch
(the original algorithm) and one incrementally, and require the same predictions after every step.
The 1,000-job speed target lives in benchmarks/sim_scale.py.
"""

from __future__ import annotations

import random

import pytest

from g5kdeploy.simulator.jobbook import JobBook
from g5kdeploy.simulator.oarsub import ALL
from g5kdeploy.simulator.records import Job
from g5kdeploy.simulator.scheduler import PartNeed

SITE = "nancy"
CLUSTERS = {"c1": 6, "c2": 4, "c3": 3}
NODES = tuple((c, f"{c}-{i}") for c, n in CLUSTERS.items() for i in range(1, n + 1))


def _random_needs(rng: random.Random) -> list[PartNeed]:
    """One-node jobs mostly (the common case), then several nodes, `cluster=1`, ALL and two-part requests."""
    kind = rng.random()
    if kind < 0.5:
        return [PartNeed(NODES, 1)]
    if kind < 0.7:
        return [PartNeed(NODES, rng.randint(2, 5))]
    if kind < 0.8:
        return [PartNeed(NODES, rng.randint(2, 3), same_cluster=True)]
    if kind < 0.85:
        cluster = rng.choice(list(CLUSTERS))
        return [PartNeed(tuple(n for n in NODES if n[0] == cluster), ALL)]
    first = tuple(n for n in NODES if n[0] != "c3")
    return [PartNeed(first, rng.randint(1, 3), same_cluster=rng.random() < 0.5), PartNeed(NODES, rng.randint(1, 2))]


class Twins:
    """Two job books fed the same history; `full` plans from scratch, `fast` incrementally."""

    def __init__(self, prediction_delay: float) -> None:
        self.full = JobBook(launch_seconds=5.0, prediction_delay=prediction_delay)
        self.full.incremental = False
        self.fast = JobBook(launch_seconds=5.0, prediction_delay=prediction_delay)
        self.t = 1_000_000.0

    def books(self) -> tuple[JobBook, JobBook]:
        return self.full, self.fast

    def submit(self, rng: random.Random) -> None:
        needs = _random_needs(rng)
        walltime = rng.choice([600, 1800, 3600, 3600, 7200])
        command = rng.choice(["sleep 100", "sleep 1000", "hold"])
        for book in self.books():
            job = Job(
                uid=book.take_uid(),
                site=SITE,
                user="jdoe",
                command=command,
                resources="",
                properties="",
                walltime=walltime,
                submitted_at=self.t,
            )
            book.add(job, list(needs), self.t)
            book.reschedule(SITE, self.t)

    def delete(self, rng: random.Random) -> None:
        live = sorted(j.uid for j in self.full.live(SITE))
        if not live:
            return
        uid = rng.choice(live)
        for book in self.books():
            job = book.jobs[uid]
            if job.state == "waiting":
                job.scheduled_at, job.nodes = None, []
            book.finish(job, self.t, "error")
            book.reschedule(SITE, self.t)

    def advance(self, rng: random.Random) -> None:
        """Move time forward, replaying every event on the way as the simulator does."""
        self.t += rng.choice([0.0, 1.0, 30.0, 400.0, 2000.0])
        for book in self.books():
            while (due := book.next_event()) is not None and due <= self.t:
                book.step(due, book.reschedule)

    def predictions(self, book: JobBook) -> list[tuple[int, str, float | None, list[str]]]:
        return [(j.uid, j.state, j.scheduled_at, j.nodes) for j in book.sorted_jobs(SITE)]


@pytest.mark.parametrize("seed", range(12))
@pytest.mark.parametrize("prediction_delay", [0.0, 20.0])
def test_incremental_passes_plan_exactly_like_full_ones(seed: int, prediction_delay: float) -> None:
    rng = random.Random(seed)
    twins = Twins(prediction_delay)
    actions = [twins.submit] * 5 + [twins.delete] * 2 + [twins.advance] * 3
    for step in range(250):
        rng.choice(actions)(rng)
        assert twins.predictions(twins.fast) == twins.predictions(twins.full), f"seed {seed}, step {step}"
    # The history must have exercised what the shortcut skips: jobs waiting behind others.
    assert len(twins.full.jobs) > 100


def test_alike_waiting_jobs_queue_in_submission_order_behind_busy_nodes() -> None:
    """1,000 one-node jobs on 13 nodes: 13 start now, then each later hour 13 more, in uid order."""
    book = JobBook(launch_seconds=5.0, prediction_delay=0.0)
    t = 1_000_000.0
    for _ in range(1000):
        book.add(Job(book.take_uid(), SITE, "jdoe", "hold", "", "", 3600, submitted_at=t), [PartNeed(NODES, 1)], t)
        book.reschedule(SITE, t)
    jobs = sorted(book.jobs.values(), key=lambda j: j.uid)
    assert [j.scheduled_at for j in jobs] == [t + 3600 * (i // len(NODES)) for i in range(1000)]
    assert [j.nodes for j in jobs[: len(NODES)]] == [[n] for _, n in NODES]


def test_a_later_pass_replans_a_request_whose_fit_is_not_monotonic() -> None:
    """`{cluster=1}/nodes=2 + {host in (a, z)}/nodes=1`: a node getting busy can make it fit sooner.

    At t0 the first part takes c1's a and x (first cluster with two free nodes) and the second part finds
    `a` taken and `z` running a job; 200 s later x is busy with a reservation over the job's walltime, the
    first part takes c2, the second one `a`, and the job fits at once. A pass at t0 + 200 must see it, as
    planning from scratch does.
    """
    nodes = (("c1", "a"), ("c1", "x"), ("c2", "b"), ("c2", "y"), ("c3", "z"))
    t0 = 1_000_000.0
    books = (JobBook(5.0, 0.0), JobBook(5.0, 0.0))
    books[0].incremental = False
    for book in books:
        running = Job(book.take_uid(), SITE, "jdoe", "hold", "", "", 3600, t0 - 100, state="running")
        running.scheduled_at = running.started_at = t0 - 100
        running.nodes = ["z"]
        book.add(running, [PartNeed(nodes[4:], 1)], t0)
        held = Job(book.take_uid(), SITE, "jdoe", "hold", "", "", 3600, t0, reservation=t0 + 1000)
        held.scheduled_at, held.nodes = t0 + 1000, ["x"]
        book.add(held, [PartNeed(nodes[1:2], 1)], t0)
        picky = Job(book.take_uid(), SITE, "jdoe", "hold", "", "", 900, t0)
        book.add(picky, [PartNeed(nodes[:4], 2, same_cluster=True), PartNeed((nodes[0], nodes[4]), 1)], t0)
        book.reschedule(SITE, t0)
        assert picky.scheduled_at is not None and picky.scheduled_at > t0
        other = Job(book.take_uid(), SITE, "jdoe", "hold", "", "", 600, t0 + 200)
        book.add(other, [PartNeed(nodes, 1)], t0 + 200)
        book.reschedule(SITE, t0 + 200)
        assert picky.scheduled_at == t0 + 200 and sorted(picky.nodes) == ["a", "b", "y"]

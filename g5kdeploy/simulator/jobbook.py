"""Every site's OAR jobs and their state machine: FIFO scheduling with conservative backfilling.

Catching up simulated time replays events one at a time, so each step must stay cheap: live (not final)
jobs are indexed per site, each site caches its next event time until one of its jobs changes, and a
step only looks at the sites that have something due. Finished background jobs are forgotten at once:
nobody asks for other users' finished jobs, and keeping them would make every scan grow with time.
"""

from __future__ import annotations

from collections.abc import Callable, Iterator
from dataclasses import dataclass
from typing import Any

from g5kdeploy.simulator import kavlan
from g5kdeploy.simulator.records import ACTIVE_STATES, Job
from g5kdeploy.simulator.scheduler import Gantt, PartNeed, Planner, earliest, grows_monotonically

FIRST_JOB_UID = 1894417
# Distinct requests whose needs are shared between alike jobs; beyond that the table starts afresh (sharing
# only saves time: the planner recognises alike requests by identity).
SHARED_NEEDS_LIMIT = 256
# A started job or reservation as the gantt holds it: uid, start, end, nodes and VLAN slots.
Booked = tuple[int, float, float, tuple[str, ...]]


@dataclass(frozen=True)
class Placement:
    """One waiting job's prediction as a scheduling pass made it (`start` None: not seen yet)."""

    uid: int
    needs: list[PartNeed]
    walltime: int
    start: float | None
    nodes: list[str]


@dataclass
class Plan:
    """A site's last scheduling pass: when, over which started jobs, its predictions and resulting gantt."""

    t: float
    booked: list[Booked]
    placements: list[Placement]
    gantt: Gantt


def held(job: Job) -> list[str]:
    """What `job` books on its site's gantt: its nodes and its VLANs."""
    return job.nodes + kavlan.slots(job.vlans) if job.vlans else job.nodes


class JobBook:
    """Jobs, their requirements and state history; callers hold the simulator lock."""

    def __init__(self, launch_seconds: float, prediction_delay: float) -> None:
        self.launch_seconds = launch_seconds
        self.prediction_delay = prediction_delay
        self.jobs: dict[int, Job] = {}
        self.history: dict[int, list[tuple[str, float]]] = {}
        self.next_uid = FIRST_JOB_UID
        self.next_event_uid = 0
        self._needs: dict[int, list[PartNeed]] = {}
        self._live: dict[str, dict[int, Job]] = {}
        # site -> its next event time (None: nothing due); a missing key means "recompute".
        self._site_next: dict[str, float | None] = {}
        self._plans: dict[str, Plan] = {}
        self._shared_needs: dict[tuple[PartNeed, ...], list[PartNeed]] = {}
        # False: every pass plans every waiting job from scratch (the original algorithm, kept for comparison).
        self.incremental = True

    # ---- bookkeeping --------------------------------------------------------------------------------

    def take_uid(self) -> int:
        self.next_uid += 1
        return self.next_uid - 1

    def event_uid(self) -> int:
        self.next_event_uid += 1
        return self.next_event_uid

    def add(self, job: Job, needs: list[PartNeed], now: float) -> None:
        self.jobs[job.uid] = job
        self.history.setdefault(job.uid, [("waiting", job.submitted_at)])
        if job.state != "waiting" and len(self.history[job.uid]) == 1:
            self.history[job.uid].append((job.state, now))
        if not job.final:
            self._needs[job.uid] = self._share(needs)
            self._live.setdefault(job.site, {})[job.uid] = job
        self.touch(job.site)

    def _share(self, needs: list[PartNeed]) -> list[PartNeed]:
        """The same list for alike requests, so that the planner knows them apart from others at once."""
        if len(self._shared_needs) >= SHARED_NEEDS_LIMIT:
            self._shared_needs.clear()
        return self._shared_needs.setdefault(tuple(needs), needs)

    def touch(self, site: str) -> None:
        """Forget `site`'s cached next event: one of its jobs changed."""
        self._site_next.pop(site, None)

    def live(self, site: str) -> Iterator[Job]:
        return iter(self._live.get(site, {}).values())

    def all_live(self) -> Iterator[Job]:
        for jobs in self._live.values():
            yield from jobs.values()

    def sorted_jobs(self, site: str | None) -> list[Job]:
        return sorted(
            (j for j in self.jobs.values() if site is None or j.site == site), key=lambda j: j.uid, reverse=True
        )

    def set_state(self, job: Job, state: str, t: float) -> None:
        job.state = state
        self.history.setdefault(job.uid, []).append((state, t))
        self.touch(job.site)

    def finish(self, job: Job, t: float, state: str) -> None:
        self.set_state(job, state, t)
        job.stopped_at = t
        if state == "terminated":
            job.exit_code = 0
        self._needs.pop(job.uid, None)
        self._live.get(job.site, {}).pop(job.uid, None)
        if job.background:
            self.jobs.pop(job.uid, None)
            self.history.pop(job.uid, None)

    def drop_background(self) -> None:
        """Forget every background job, e.g. before jumping over a long stretch of time."""
        for site, jobs in self._live.items():
            for uid in [uid for uid, job in jobs.items() if job.background]:
                del jobs[uid]
                self.jobs.pop(uid, None)
                self.history.pop(uid, None)
                self._needs.pop(uid, None)
            self.touch(site)

    # ---- placement ----------------------------------------------------------------------------------

    @staticmethod
    def start_of(job: Job) -> float:
        start = job.started_at if job.started_at is not None else job.reservation
        assert start is not None
        return start

    def gantt(self, site: str, exclude: int | None = None, predicted: bool = False) -> Gantt:
        """Started jobs and reservations of `site`; with `predicted`, waiting jobs where they are planned."""
        gantt = Gantt()
        for job in self.live(site):
            if job.uid == exclude:
                continue
            if job.state in ACTIVE_STATES or job.reservation is not None:
                gantt.add(held(job), self.start_of(job), self.start_of(job) + job.walltime)
            elif predicted and job.scheduled_at is not None:
                gantt.add(held(job), job.scheduled_at, job.scheduled_at + job.walltime)
        return gantt

    def reschedule(self, site: str, t: float) -> Gantt:
        """Predict every waiting job in submission order without delaying the ones before it.

        A job submitted less than `prediction_delay` ago has not been seen by the scheduler yet: it gets
        neither `scheduled_at` nor nodes, as on a busy OAR server between two scheduler passes.
        The result is the same as planning every waiting job from scratch (`plan_from_scratch`), but a pass
        keeps the predictions of the previous one up to the first job that could now be planned differently.
        """
        if not self.incremental:
            return self.plan_from_scratch(site, t)
        waiting = self._waiting(site)
        booked = self._booked(site)
        plan = self._plans.get(site)
        kept: list[Placement] = []
        if plan is not None and plan.booked == booked:
            gantt = plan.gantt
            kept = self._still_valid(plan, waiting, t)
            for old in plan.placements[len(kept) :]:
                if old.start is not None:
                    gantt.remove(old.nodes, old.start, old.start + old.walltime)
        else:
            gantt = self.gantt(site)
        planner = Planner(gantt)
        for job in waiting[len(kept) :]:
            needs = self._needs[job.uid]
            if job.submitted_at + self.prediction_delay > t:
                job.scheduled_at, job.nodes, job.vlans = None, [], []
            else:
                job.scheduled_at, placed = planner.place(needs, job.walltime, t)
                job.nodes, job.vlans = kavlan.split(placed)
            kept.append(Placement(job.uid, needs, job.walltime, job.scheduled_at, held(job)))
        self._plans[site] = Plan(t, booked, kept, gantt)
        self.touch(site)
        return gantt

    def _still_valid(self, plan: Plan, waiting: list[Job], t: float) -> list[Placement]:
        """The leading predictions of `plan` that planning at `t` from scratch would make again.

        A pass runs once every event due by `t` has been applied, so with the same started jobs and
        reservations no interval ended and no prediction came due since the previous pass: a later `t` only
        replaces each job's first candidate start, the old `t` where it did not fit, by the new one, where
        its nodes are at most as free. That cannot make it fit, unless its request is one whose fit is not
        monotonic (see `grows_monotonically`).
        """
        kept: list[Placement] = []
        for old, job in zip(plan.placements, waiting, strict=False):
            seen = job.submitted_at + self.prediction_delay <= t
            if old.uid != job.uid or old.needs is not self._needs[job.uid] or (old.start is not None) != seen:
                break
            if t != plan.t and old.start is not None and not grows_monotonically(old.needs):
                break
            kept.append(old)
        return kept

    def plan_from_scratch(self, site: str, t: float) -> Gantt:
        """The original pass: every waiting job planned again, each on the whole gantt."""
        gantt = self.gantt(site)
        for job in self._waiting(site):
            if job.submitted_at + self.prediction_delay > t:
                job.scheduled_at, job.nodes, job.vlans = None, [], []
                continue
            start, placed = earliest(gantt, self._needs[job.uid], job.walltime, t)
            job.scheduled_at = start
            job.nodes, job.vlans = kavlan.split(placed)
            gantt.add(placed, start, start + job.walltime)
        self._plans.pop(site, None)
        self.touch(site)
        return gantt

    def _waiting(self, site: str) -> list[Job]:
        return sorted(
            (j for j in self.live(site) if j.state == "waiting" and j.reservation is None), key=lambda j: j.uid
        )

    def _booked(self, site: str) -> list[Booked]:
        return [
            (job.uid, start, start + job.walltime, tuple(held(job)))
            for job in self.live(site)
            if job.state in ACTIVE_STATES or job.reservation is not None
            for start in (self.start_of(job),)
        ]

    # ---- time ---------------------------------------------------------------------------------------

    def _job_event(self, job: Job) -> float | None:
        if job.state == "waiting":
            if job.scheduled_at is not None:
                return job.scheduled_at
            return job.submitted_at + self.prediction_delay
        if job.state in ACTIVE_STATES:
            end = job.end_time(self.launch_seconds)[0]
            if job.state == "launching" and job.started_at is not None:
                return min(job.started_at + self.launch_seconds, end)
            return end
        return None

    def _next_of(self, site: str) -> float | None:
        if site not in self._site_next:
            times = (self._job_event(j) for j in self.live(site))
            self._site_next[site] = min((t for t in times if t is not None), default=None)
        return self._site_next[site]

    def next_event(self) -> float | None:
        times = (self._next_of(site) for site in list(self._live))
        return min((t for t in times if t is not None), default=None)

    def step(self, t: float, reschedule: Callable[[str, float], Any]) -> None:
        """Apply every job change due at or before `t`; `reschedule(site, t)` runs for each site that needs it."""
        launch = self.launch_seconds
        for site in list(self._live):
            due = self._next_of(site)
            if due is None or due > t:
                continue
            replan = False
            for job in list(self.live(site)):
                if job.state == "waiting":
                    if job.scheduled_at is not None and job.scheduled_at <= t:
                        job.started_at = job.scheduled_at
                        self.set_state(job, "launching", job.scheduled_at)
                    elif job.scheduled_at is None and job.submitted_at + self.prediction_delay <= t:
                        replan = True
                    continue
                end, final = job.end_time(launch)
                if end <= t:
                    self.finish(job, end, final)
                    replan = True
                elif job.state == "launching" and job.started_at is not None and job.started_at + launch <= t:
                    self.set_state(job, "running", job.started_at + launch)
            self.touch(site)
            if replan:
                reschedule(site, t)

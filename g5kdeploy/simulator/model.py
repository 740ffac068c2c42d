"""The simulated OAR + Kadeploy state of every site, driven by a scaled clock.

Time only moves forward through `_advance`, called under the lock by every public entry point: it
replays, in order, every state change due since the last call, so answers match what a server that
had been watching continuously would say whatever the `speed`. Every answer is rendered under the lock
too: the HTTP layer never sees a live Job or Deployment that another request could be changing.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from collections.abc import Callable, Mapping
from typing import Any, TypeVar

from g5kdeploy.simulator import kavlan, walltime
from g5kdeploy.simulator.background import BackgroundLoad
from g5kdeploy.simulator.clock import ScaledClock
from g5kdeploy.simulator.config import SimConfig
from g5kdeploy.simulator.deployments import DeploymentStore
from g5kdeploy.simulator.errors import FORBIDDEN, ApiError, job_not_found, oar_job_not_found
from g5kdeploy.simulator.jobbook import JobBook
from g5kdeploy.simulator.oarsub import paris_time
from g5kdeploy.simulator.persistence import load_state, restore, save_state, snapshot
from g5kdeploy.simulator.records import ACTIVE_STATES, FINAL_STATES, Job
from g5kdeploy.simulator.reference import load_reference
from g5kdeploy.simulator.render import deployment_item, job_item
from g5kdeploy.simulator.requirements import Requirements
from g5kdeploy.simulator.scheduler import PartNeed, earliest, fit
from g5kdeploy.simulator.status import build_status

# Beyond a simulated day of catch-up (a restart after a long stop, a huge speed), background jobs are not
# replayed one by one: they are dropped and the sites refilled at "now", which nobody can tell apart.
CATCHUP_LIMIT = 86400.0
T = TypeVar("T")


class Simulator:
    """Thread-safe model; the HTTP layer and tests call it, it never calls them."""

    def __init__(self, config: SimConfig) -> None:
        config.validate()
        self.config = config
        self.prefix = f"/{config.api_version}"
        self.reference = load_reference(config.reference)
        self.requirements = Requirements(self.reference, config.api_version)
        self.cores = {fqdn: node.cores for fqdn, node in self.reference.by_fqdn.items()}
        self._lock = threading.RLock()
        self._rng = random.Random(config.seed)
        self._book = JobBook(config.launch_seconds, config.prediction_delay)
        self._background = BackgroundLoad(self.reference, config.background_load, self._rng)
        self._filling = True
        self._requests: Counter[tuple[str, str]] = Counter()
        self.deployments = DeploymentStore(
            config.deploy_seconds, config.deploy_ko_rate, config.deploy_error_rate, config.api_version
        )
        saved = load_state(config.state_file) if config.state_file else None
        with self._lock:
            if saved is None:
                real = time.time()
                self.clock = ScaledClock(real, real if config.start is None else config.start, config.speed)
                self._processed = self.clock.now()
                self._fill_all(self._processed)
            else:
                self._restore(saved)
            self._save()

    # ---- introspection used by tests and benchmarks -------------------------------------------------

    def jobs(self, site: str | None = None) -> list[dict[str, Any]]:
        return self._locked(lambda: [self._render(j) for j in self._book.sorted_jobs(site)])

    def live_jobs(self, site: str | None = None) -> list[dict[str, Any]]:
        return [j for j in self.jobs(site) if j["state"] not in FINAL_STATES]

    def job_history(self, site: str, uid: int) -> list[tuple[str, float]]:
        return self._locked(lambda: list(self._book.history.get(self._job(site, uid).uid, [])))

    def record_request(self, method: str, path: str) -> None:
        with self._lock:
            self._requests[(method.upper(), path)] += 1

    def request_count(self, method: str | None = None, path_prefix: str | None = None) -> int:
        with self._lock:
            return sum(
                n
                for (m, p), n in self._requests.items()
                if (method is None or m == method.upper())
                and (path_prefix is None or p.startswith(path_prefix) or f"{self.prefix}{p}".startswith(path_prefix))
            )

    def now(self) -> float:
        return self._locked(lambda: self._processed)

    def plan_incrementally(self, incremental: bool) -> None:
        """Switch to the original from-scratch scheduling passes (False), which benchmarks compare against."""
        with self._lock:
            self._book.incremental = incremental

    # ---- jobs (every answer rendered under the lock) ------------------------------------------------

    def job(self, site: str, uid: int) -> dict[str, Any]:
        return self._locked(lambda: self._render(self._job(site, uid)))

    def list_jobs(
        self, site: str, keep: Callable[[Job], bool], offset: int, limit: int, resources: bool
    ) -> tuple[list[dict[str, Any]], int]:
        """One page of `site`'s jobs matching `keep` (newest first) and the number of matches."""

        def page() -> tuple[list[dict[str, Any]], int]:
            found = [j for j in self._book.sorted_jobs(site) if keep(j)]
            return [self._render(j, resources) for j in found[offset : offset + limit]], len(found)

        return self._locked(page)

    def submit(self, site: str, user: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._advance()
            now = self._processed
            spec = self.requirements.check(site, body, now)
            reserved, reserved_vlans = kavlan.split(
                self._check_reservation(site, spec.needs, spec.walltime, spec.reservation)
                if spec.reservation is not None
                else []
            )
            job = Job(
                uid=self._book.take_uid(),
                site=site,
                user=user,
                command=spec.command,
                resources=spec.resources,
                properties=spec.properties,
                walltime=spec.walltime,
                submitted_at=now,
                types=spec.types,
                queue=spec.queue,
                project=str(body.get("project") or "default"),
                name=str(body["name"]) if body.get("name") else None,
                directory=str(body["directory"]) if body.get("directory") else None,
                reservation=spec.reservation,
                scheduled_at=spec.reservation,
                nodes=reserved,
                vlans=reserved_vlans,
            )
            self._book.add(job, spec.needs, now)
            self._reschedule_and_fill(site, now)
            self._save()
            return self._render(job)

    def delete(self, site: str, uid: int, user: str) -> str:
        """Kill a job; returns the oardel output g5k-api puts in `X-Oar-Info`."""
        with self._lock:
            job = self._job(site, uid)
            if job.user != user:
                raise ApiError(403, FORBIDDEN)
            if job.final:
                raise self.requirements.relay(
                    site, f"jobs/{uid}.json", f"Cannot frag {uid} ; This job was already killed."
                )
            now = self._processed
            job.events.append(
                {
                    "uid": self._book.event_uid(),
                    "created_at": int(now),
                    "type": "FRAG_JOB_REQUEST",
                    "description": f"[oardel] Job {uid} has been deleted by {user}",
                }
            )
            if job.state == "waiting":
                # A job that never started holds no nodes: its prediction must not outlive it.
                job.scheduled_at, job.nodes, job.vlans = None, [], []
            self._book.finish(job, now, "error")
            self._reschedule_and_fill(site, now)
            self._save()
            return f"Deleting the job = {uid} ...REGISTERED. The job(s) [ {uid} ] will be deleted in a near future."

    def walltime_info(self, site: str, uid: int) -> dict[str, Any]:
        return self._locked(lambda: walltime.info(self._job(site, uid, oar_job_not_found), self.prefix))

    def change_walltime(self, site: str, uid: int, user: str, request: walltime.ChangeRequest) -> str:
        """OAR's answer to a change request; a change the nodes cannot take now is dropped, not kept pending."""
        with self._lock:
            job = self._job(site, uid, oar_job_not_found)
            delta = walltime.requested_delta(job, request.walltime)
            walltime.check_allowed(job, user, request)
            assert job.started_at is not None
            # OAR never lets a decrease end the job before now.
            delta = max(delta, -int(job.started_at + job.walltime - self._processed))
            text = walltime.answer(job)
            delay_next = request.delay_next_jobs == "yes"
            if walltime.apply_change(self._book, job, job.walltime + delta, delay_next, self._processed):
                self._reschedule_and_fill(site, self._processed)
                self._save()
            return text

    def vlan_holders(self, site: str) -> dict[str, tuple[str, list[str]]]:
        """Each VLAN of `site` a started job holds: (its owner, its nodes)."""

        def holders() -> dict[str, tuple[str, list[str]]]:
            return {
                vlan: (job.user, list(job.nodes))
                for job in self._book.live(site)
                if job.state in ACTIVE_STATES
                for vlan in job.vlans
            }

        return self._locked(holders)

    def status(self, site: str, cluster: str | None, query: Mapping[str, str], anonymous: bool) -> dict[str, Any]:
        """The site (or cluster) status; its `uid` and its jobs come from the same instant."""
        path = f"{self.prefix}/sites/{site}" + (f"/clusters/{cluster}" if cluster else "")
        nodes = [n for n in self.reference.nodes[site] if cluster is None or n.cluster == cluster]
        site_doc = None if cluster else self.reference.sites[site]
        return self._locked(
            lambda: build_status(
                nodes,
                self._book.live(site),
                self._processed,
                query,
                f"{path}/status",
                path,
                site_doc,
                anonymous=anonymous,
            )
        )

    # ---- deployments --------------------------------------------------------------------------------

    def deploy(self, site: str, user: str, body: dict[str, Any]) -> dict[str, Any]:
        with self._lock:
            self._advance()
            dep = self.deployments.create(site, user, body, self._book.live(site), self._processed, self._rng)
            self._save()
            return deployment_item(dep, self.prefix)

    def deployment(self, site: str, uid: str) -> dict[str, Any]:
        return self._locked(lambda: deployment_item(self.deployments.get(site, uid), self.prefix))

    def list_deployments(
        self, site: str, query: dict[str, str], offset: int, limit: int
    ) -> tuple[list[dict[str, Any]], int]:
        def page() -> tuple[list[dict[str, Any]], int]:
            found = self.deployments.listing(site, query)
            return [deployment_item(d, self.prefix) for d in found[offset : offset + limit]], len(found)

        return self._locked(page)

    def cancel_deployment(self, site: str, uid: str, user: str) -> None:
        with self._lock:
            self._advance()
            self.deployments.cancel(site, uid, user, self._processed)
            self._save()

    # ---- internals ----------------------------------------------------------------------------------

    def _locked(self, produce: Callable[[], T]) -> T:
        with self._lock:
            self._advance()
            return produce()

    def _render(self, job: Job, resources: bool = True) -> dict[str, Any]:
        return job_item(job, self.prefix, self.cores, resources=resources)

    def _job(self, site: str, uid: int, missing: Callable[[object], ApiError] = job_not_found) -> Job:
        self._advance()
        job = self._book.jobs.get(uid)
        if job is None or job.site != site:
            raise missing(uid)
        return job

    def _check_reservation(self, site: str, needs: list[PartNeed], walltime: int, start: float) -> list[str]:
        """The nodes (and VLAN slots) a reservation gets; OAR validates it against started jobs and reservations."""
        gantt = self._book.gantt(site)
        nodes = fit(gantt, needs, start, start + walltime)
        if nodes is None:
            could, _ = earliest(gantt, needs, walltime, start)
            raise self.requirements.relay(
                site,
                "jobs.json",
                "Oarsub command exited with status 1: [ADMISSION RULE] Set default walltime to 3600. "
                f"Reservation mode: waiting validation. Reservation not valid --> KO "
                f"(This reservation could run at {paris_time(could)})",
            )
        return nodes

    def _reschedule_and_fill(self, site: str, t: float) -> None:
        gantt = self._book.reschedule(site, t)
        if self._filling:
            self._background.refill(self._book, site, t, gantt)

    def _fill_all(self, t: float) -> None:
        for site in self.reference.nodes:
            self._background.refill(self._book, site, t, self._book.reschedule(site, t), initial=True)

    def _advance(self) -> None:
        now = self.clock.now()
        jump = now - self._processed > CATCHUP_LIMIT
        if jump:
            self._book.drop_background()
            self._filling = False
        try:
            while (t := self._next_event()) is not None and t <= now:
                t = max(t, self._processed)
                self._book.step(t, self._reschedule_and_fill)
                self.deployments.advance(t)
        finally:
            self._filling = True
        self._processed = max(self._processed, now)
        if jump:
            self._fill_all(self._processed)

    def _next_event(self) -> float | None:
        times = [t for t in (self._book.next_event(), self.deployments.next_event()) if t is not None]
        return min(times, default=None)

    # ---- persistence --------------------------------------------------------------------------------
    # Saved after each request that changes jobs or deployments, and at shutdown; changes that only come
    # from time passing are not saved: a restart replays them from the saved state and the clock.

    def save(self) -> None:
        with self._lock:
            self._save()

    def _save(self) -> None:
        if self.config.state_file is None:
            return
        save_state(
            self.config.state_file,
            snapshot(self.clock, self._processed, self._book, self.deployments, self._rng),
        )

    def _restore(self, saved: dict[str, Any]) -> None:
        clock, self._processed = restore(saved, self._book, self.deployments, self._rng, self._needs_for)
        if clock.speed != self.config.speed:
            # A new speed applies from now on; the simulated time reached so far is kept.
            clock = ScaledClock(time.time(), clock.now(), self.config.speed)
        self.clock = clock
        self._advance()

    def _needs_for(self, job: Job) -> list[PartNeed]:
        try:
            return self.requirements.needs_for(job)
        except (ApiError, ValueError):
            # Accepted by an older simulator or another inventory: keep the job, it just cannot be re-planned.
            return []

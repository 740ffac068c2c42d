"""The simulated OAR + Kadeploy state of every site, driven by a scaled clock.

Time only moves forward through `_advance`, called under the lock by every public entry point: it
replays, in order, every state change due since the last call, so answers match what a server that
had been watching continuously would say whatever the `speed`.
"""

from __future__ import annotations

import random
import threading
import time
from collections import Counter
from typing import Any

from g5kdeploy.clock import ScaledClock
from g5kdeploy.simulator.config import SimConfig
from g5kdeploy.simulator.deployments import DeploymentStore
from g5kdeploy.simulator.errors import ApiError
from g5kdeploy.simulator.persistence import load_state, save_state
from g5kdeploy.simulator.records import ACTIVE_STATES, Deployment, Job
from g5kdeploy.simulator.reference import load_reference
from g5kdeploy.simulator.render import job_item
from g5kdeploy.simulator.requirements import Requirements
from g5kdeploy.simulator.scheduler import Gantt, PartNeed, earliest, fit

FIRST_JOB_UID = 1894417
BACKGROUND_USERS = ("alice", "bob", "carol", "dave")
# Finished background jobs are forgotten after a simulated day so long runs stay small.
BACKGROUND_RETENTION = 86400.0


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
        self._jobs: dict[int, Job] = {}
        self._needs: dict[int, list[PartNeed]] = {}
        self._history: dict[int, list[tuple[str, float]]] = {}
        self._requests: Counter[tuple[str, str]] = Counter()
        self.deployments = DeploymentStore(
            config.deploy_seconds, config.deploy_ko_rate, config.deploy_error_rate, config.api_version
        )
        self._next_uid = FIRST_JOB_UID
        self._next_event_uid = 0
        saved = load_state(config.state_file) if config.state_file else None
        if saved is None:
            real = time.time()
            self.clock = ScaledClock(real, real, config.speed)
            self._processed = self.clock.now()
            for site in self.reference.nodes:
                self._refill(site, self._processed, self._reschedule(site, self._processed), initial=True)
            self._save()
        else:
            self._restore(saved)

    # ---- introspection used by tests and benchmarks -------------------------------------------------

    def jobs(self, site: str | None = None) -> list[dict[str, Any]]:
        with self._lock:
            self._advance()
            return [job_item(j, self.prefix, self.cores) for j in self._sorted_jobs(site)]

    def live_jobs(self, site: str | None = None) -> list[dict[str, Any]]:
        return [j for j in self.jobs(site) if j["state"] not in ("terminated", "error")]

    def job_history(self, site: str, uid: int) -> list[tuple[str, float]]:
        with self._lock:
            self._advance()
            self.job(site, uid)
            return list(self._history.get(uid, []))

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

    # ---- jobs ---------------------------------------------------------------------------------------

    def job(self, site: str, uid: int) -> Job:
        with self._lock:
            self._advance()
            job = self._jobs.get(uid)
            if job is None or job.site != site:
                raise ApiError(404, f"Couldn't find OAR::Job with 'job_id'={uid}")
            return job

    def list_jobs(self, site: str) -> list[Job]:
        with self._lock:
            self._advance()
            return self._sorted_jobs(site)

    def submit(self, site: str, user: str, body: dict[str, Any]) -> Job:
        with self._lock:
            self._advance()
            now = self._processed
            spec = self.requirements.check(site, body, now)
            reserved = (
                self._check_reservation(site, spec.needs, spec.walltime, spec.reservation)
                if spec.reservation is not None
                else []
            )
            job = Job(
                uid=self._next_uid,
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
            )
            self._next_uid += 1
            self._add(job, spec.needs, now)
            self._reschedule_and_fill(site, now)
            self._save()
            return job

    def delete(self, site: str, uid: int, user: str) -> str:
        """Kill a job; returns the oardel output g5k-api puts in `X-Oar-Info`."""
        with self._lock:
            job = self.job(site, uid)
            if job.user != user:
                raise ApiError(403, "You are not authorized to access this resource")
            if job.final:
                raise self.requirements.relay(
                    site, f"jobs/{uid}.json", f"Cannot frag {uid} ; This job was already killed."
                )
            now = self._processed
            job.events.append(
                {
                    "uid": self._event_uid(),
                    "created_at": int(now),
                    "type": "FRAG_JOB_REQUEST",
                    "description": f"[oardel] Job {uid} has been deleted by {user}",
                }
            )
            self._finish(job, now, "error")
            self._reschedule_and_fill(site, now)
            self._save()
            return f"Deleting the job = {uid} ...REGISTERED. The job(s) [ {uid} ] will be deleted in a near future."

    def walltime_info(self, site: str, uid: int) -> dict[str, Any]:
        with self._lock:
            job = self.job(site, uid)
            return {
                "uid": job.uid,
                "walltime": _hms(job.walltime),
                "possible": "UNLIMITED",
                "timeout": 0,
                "force": "NO",
                "delay_next_jobs": "NO",
                "whole": "NO",
                "granted": _hms(job.walltime - self._initial_walltime(job)),
                "pending": "0:0:0",
                "granted_with_whole": "0:0:0",
                "granted_with_force": "0:0:0",
                "granted_with_delay_next_jobs": "0:0:0",
                "links": [
                    {"rel": "self", "href": f"{self.prefix}/sites/{site}/jobs/{uid}/walltime"},
                    {"rel": "parent", "href": f"{self.prefix}/sites/{site}/jobs/{uid}"},
                ],
            }

    def change_walltime(self, site: str, uid: int, user: str, request: str) -> dict[str, Any]:
        with self._lock:
            job = self.job(site, uid)
            if job.user != user:
                raise ApiError(403, "You are not authorized to access this resource")
            what = f"jobs/{uid}/walltime.json"
            if job.state != "running":
                raise self.requirements.relay(site, what, f"Walltime change can only be done for running jobs ({uid})")
            new = self.requirements.new_walltime(site, what, job.walltime, request)
            assert job.started_at is not None
            gantt = self._gantt(site, exclude=job.uid)
            end = job.started_at + max(new, job.walltime)
            fits = all(gantt.is_free(node, job.started_at, end) for node in job.nodes)
            if fits:
                job.events.append(
                    {
                        "uid": self._event_uid(),
                        "created_at": int(self._processed),
                        "type": "WALLTIME_CHANGE",
                        "description": f"walltime changed from {job.walltime} to {new}",
                    }
                )
                job.walltime = new
                self._reschedule_and_fill(site, self._processed)
                self._save()
            return {
                "uid": uid,
                "status": "Accepted" if fits else "Delayed",
                "walltime": _hms(job.walltime),
                "message": f"walltime change request accepted for job {uid}, it will be handled shortly.",
            }

    # ---- deployments --------------------------------------------------------------------------------

    def deploy(self, site: str, user: str, body: dict[str, Any]) -> Deployment:
        with self._lock:
            self._advance()
            dep = self.deployments.create(site, user, body, self._jobs.values(), self._processed, self._rng)
            self._save()
            return dep

    def deployment(self, site: str, uid: str) -> Deployment:
        with self._lock:
            self._advance()
            return self.deployments.get(site, uid)

    def list_deployments(self, site: str, query: dict[str, str]) -> list[Deployment]:
        with self._lock:
            self._advance()
            return self.deployments.listing(site, query)

    def cancel_deployment(self, site: str, uid: str, user: str) -> Deployment:
        with self._lock:
            self._advance()
            dep = self.deployments.cancel(site, uid, user, self._processed)
            self._save()
            return dep

    def now(self) -> float:
        with self._lock:
            self._advance()
            return self._processed

    # ---- scheduling ---------------------------------------------------------------------------------

    def _sorted_jobs(self, site: str | None) -> list[Job]:
        return sorted(
            (j for j in self._jobs.values() if site is None or j.site == site), key=lambda j: j.uid, reverse=True
        )

    def _add(self, job: Job, needs: list[PartNeed], now: float) -> None:
        self._jobs[job.uid] = job
        self._needs[job.uid] = needs
        self._history[job.uid] = [("waiting", job.submitted_at)]
        if job.state != "waiting":
            self._history[job.uid].append((job.state, now))

    def _set_state(self, job: Job, state: str, t: float) -> None:
        job.state = state
        self._history.setdefault(job.uid, []).append((state, t))

    def _finish(self, job: Job, t: float, state: str) -> None:
        self._set_state(job, state, t)
        job.stopped_at = t
        if state == "terminated":
            job.exit_code = 0
        self._needs.pop(job.uid, None)

    def _check_reservation(self, site: str, needs: list[PartNeed], walltime: int, start: float) -> list[str]:
        """The nodes a reservation gets; OAR validates it against started jobs and other reservations only."""
        gantt = Gantt()
        for job in self._jobs.values():
            if job.site == site and not job.final and (job.state in ACTIVE_STATES or job.reservation is not None):
                gantt.add(job.nodes, self._start_of(job), self._start_of(job) + job.walltime)
        nodes = fit(gantt, needs, start, start + walltime)
        if nodes is None:
            could, _ = earliest(gantt, needs, walltime, start)
            raise self.requirements.relay(
                site,
                "jobs.json",
                "Oarsub command exited with status 1: [ADMISSION RULE] Set default walltime to 3600. "
                f"Reservation mode: waiting validation. Reservation not valid --> KO "
                f"(This reservation could run at {self.requirements.paris(could)})",
            )
        return nodes

    @staticmethod
    def _start_of(job: Job) -> float:
        start = job.started_at if job.started_at is not None else job.reservation
        assert start is not None
        return start

    def _gantt(self, site: str, exclude: int | None = None) -> Gantt:
        gantt = Gantt()
        for job in self._jobs.values():
            if job.site != site or job.final or job.uid == exclude:
                continue
            if job.state in ACTIVE_STATES or job.reservation is not None:
                gantt.add(job.nodes, self._start_of(job), self._start_of(job) + job.walltime)
        return gantt

    def _reschedule(self, site: str, t: float) -> Gantt:
        """Predict every waiting job in submission order without delaying the ones before it."""
        gantt = self._gantt(site)
        waiting = sorted(
            (j for j in self._jobs.values() if j.site == site and j.state == "waiting" and j.reservation is None),
            key=lambda j: j.uid,
        )
        for job in waiting:
            start, nodes = earliest(gantt, self._needs[job.uid], job.walltime, t)
            job.scheduled_at, job.nodes = start, nodes
            gantt.add(nodes, start, start + job.walltime)
        return gantt

    def _reschedule_and_fill(self, site: str, t: float) -> None:
        self._refill(site, t, self._reschedule(site, t))

    def _refill(self, site: str, t: float, gantt: Gantt, initial: bool = False) -> None:
        """Keep about `background_load` of the site's nodes busy with other users' jobs that start now."""
        load = self.config.background_load
        nodes = self.reference.nodes.get(site, [])
        if load <= 0 or not nodes:
            return
        candidates = tuple((n.cluster, n.fqdn) for n in nodes if n.props["exotic"] == "NO")
        target = round(load * len(nodes))
        busy = sum(len(j.nodes) for j in self._jobs.values() if j.site == site and j.state in ACTIVE_STATES)
        failures = 0
        while busy < target and failures < 3:
            count = self._rng.randint(1, min(8, target - busy))
            walltime = self._rng.randint(12, 72) * 300
            started = t - self._rng.uniform(0, 0.8 * walltime) if initial else t
            chosen = fit(gantt, [PartNeed(candidates, count)], t, started + walltime)
            if chosen is None:
                failures += 1
                continue
            job = Job(
                uid=self._next_uid,
                site=site,
                user=self._rng.choice(BACKGROUND_USERS),
                command=f"sleep {int(walltime * self._rng.uniform(0.5, 1.1))}",
                resources=f"nodes={count},walltime={walltime // 3600}:{walltime % 3600 // 60:02d}",
                properties="",
                walltime=walltime,
                submitted_at=started - 1,
                scheduled_at=started,
                started_at=started,
                state="running",
                nodes=chosen,
                background=True,
            )
            self._next_uid += 1
            self._add(job, [], started)
            gantt.add(chosen, started, started + walltime)
            busy += count

    def _next_event(self) -> float | None:
        times: list[float] = []
        for job in self._jobs.values():
            if job.state == "waiting" and job.scheduled_at is not None:
                times.append(job.scheduled_at)
            elif job.state == "launching" and job.started_at is not None:
                times.append(
                    min(job.started_at + self.config.launch_seconds, job.end_time(self.config.launch_seconds)[0])
                )
            elif job.state == "running":
                times.append(job.end_time(self.config.launch_seconds)[0])
        dep = self.deployments.next_event()
        if dep is not None:
            times.append(dep)
        return min(times, default=None)

    def _advance(self) -> None:
        now = self.clock.now()
        changed = False
        while (t := self._next_event()) is not None and t <= now:
            t = max(t, self._processed)
            self._step(t)
            changed = True
        self._processed = max(self._processed, now)
        if changed:
            self._save()

    def _step(self, t: float) -> None:
        launch = self.config.launch_seconds
        touched: set[str] = set()
        for job in list(self._jobs.values()):
            if job.state == "waiting" and job.scheduled_at is not None and job.scheduled_at <= t:
                job.started_at = job.scheduled_at
                self._set_state(job, "launching", job.scheduled_at)
            elif job.state in ACTIVE_STATES:
                end, final = job.end_time(launch)
                if end <= t:
                    self._finish(job, end, final)
                    touched.add(job.site)
                elif job.state == "launching" and job.started_at is not None and job.started_at + launch <= t:
                    self._set_state(job, "running", job.started_at + launch)
            elif job.background and job.final and (job.stopped_at or 0) < t - BACKGROUND_RETENTION:
                del self._jobs[job.uid]
                self._history.pop(job.uid, None)
        self.deployments.advance(t)
        for site in sorted(touched):
            self._reschedule_and_fill(site, t)

    def _event_uid(self) -> int:
        self._next_event_uid += 1
        return self._next_event_uid

    def _initial_walltime(self, job: Job) -> int:
        return self.requirements.initial_walltime(job.resources)

    # ---- persistence --------------------------------------------------------------------------------

    def save(self) -> None:
        with self._lock:
            self._save()

    def _save(self) -> None:
        if self.config.state_file is None:
            return
        save_state(
            self.config.state_file,
            {
                "format": 1,
                "clock": self.clock.to_dict(),
                "processed": self._processed,
                "next_uid": self._next_uid,
                "next_event_uid": self._next_event_uid,
                "jobs": [j.to_dict() for j in self._jobs.values()],
                "history": {str(k): v for k, v in self._history.items()},
                "deployments": [d.to_dict() for d in self.deployments.items.values()],
                "rng": [self._rng.getstate()[0], list(self._rng.getstate()[1]), self._rng.getstate()[2]],
            },
        )

    def _restore(self, saved: dict[str, Any]) -> None:
        clock = ScaledClock(**saved["clock"])
        if clock.speed != self.config.speed:
            # A new speed applies from now on; the simulated time reached so far is kept.
            real = time.time()
            clock = ScaledClock(real, clock.now(), self.config.speed)
        self.clock = clock
        self._processed = float(saved["processed"])
        self._next_uid = int(saved["next_uid"])
        self._next_event_uid = int(saved["next_event_uid"])
        version, internal, gauss = saved["rng"]
        self._rng.setstate((version, tuple(internal), gauss))
        for data in saved["jobs"]:
            job = Job.from_dict(data)
            self._jobs[job.uid] = job
            if not job.final and not job.background:
                self._needs[job.uid] = self.requirements.needs_for(job)
        self._history = {int(k): [(s, t) for s, t in v] for k, v in saved["history"].items()}
        for data in saved["deployments"]:
            dep = Deployment.from_dict(data)
            self.deployments.items[dep.uid] = dep
        with self._lock:
            self._advance()


def _hms(seconds: int) -> str:
    return f"{seconds // 3600}:{seconds % 3600 // 60}:{seconds % 60}"

"""Other users' jobs, so that a site is never empty: about `background_load` of its nodes stay busy."""

from __future__ import annotations

import random

from g5kdeploy.simulator.jobbook import JobBook
from g5kdeploy.simulator.records import ACTIVE_STATES, Job
from g5kdeploy.simulator.reference import Reference
from g5kdeploy.simulator.scheduler import Gantt, PartNeed, fit

# Logins no person or test logs in as: nobody may find these jobs among their own, delete them or change
# their walltime.
BACKGROUND_USERS = ("oar-bg-1", "oar-bg-2", "oar-bg-3", "oar-bg-4")
_TYPICAL_NODES = 8


class BackgroundLoad:
    """Starts background jobs on the nodes that waiting jobs leave free, never delaying them."""

    def __init__(self, reference: Reference, load: float, rng: random.Random) -> None:
        self.load = load
        self.rng = rng
        self.targets = {site: round(load * len(nodes)) for site, nodes in reference.nodes.items()}
        # Exotic nodes need an explicit job type, which background users do not ask for.
        self.candidates = {
            site: tuple((n.cluster, n.fqdn) for n in nodes if n.props["exotic"] == "NO")
            for site, nodes in reference.nodes.items()
        }

    def refill(self, book: JobBook, site: str, t: float, gantt: Gantt, initial: bool = False) -> None:
        """Start jobs at `t` (or, when `initial`, as if started a while ago) until the site is busy enough.

        `gantt` must hold every started job and every waiting job's prediction of the site.
        """
        target = self.targets.get(site, 0)
        if self.load <= 0 or target <= 0:
            return
        busy = sum(len(j.nodes) for j in book.live(site) if j.state in ACTIVE_STATES)
        # Refilling every freed node at once would shrink background jobs to one node each over time
        # (and multiply the jobs to replay): wait until a typical job's worth of nodes is free.
        if not initial and target - busy < min(_TYPICAL_NODES, max(1, target // 10)):
            return
        failures = 0
        while busy < target and failures < 3:
            count = self.rng.randint(1, min(8, target - busy))
            walltime = self.rng.randint(12, 72) * 300
            started = t - self.rng.uniform(0, 0.8 * walltime) if initial else t
            chosen = fit(gantt, [PartNeed(self.candidates[site], count)], t, started + walltime)
            if chosen is None:
                failures += 1
                continue
            job = Job(
                uid=book.take_uid(),
                site=site,
                user=self.rng.choice(BACKGROUND_USERS),
                command=f"sleep {int(walltime * self.rng.uniform(0.5, 1.1))}",
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
            book.add(job, [], started)
            gantt.add(chosen, started, started + walltime)
            busy += count

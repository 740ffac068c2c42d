"""Everything the reserve phase checks before its first POST, in one function that ``g5k check`` calls too.

The playbook's own form was checked when it was loaded. Here, what the reference API, the API's clock and the
usage policy can tell: the sites and clusters exist, each cluster takes jobs in the playbook's queue and has the
nodes the roles ask for, an advance reservation is not in the past, and the walltime against the usage policy.
Only reads: nothing is submitted.
"""

from __future__ import annotations

from dataclasses import dataclass

from g5kdeploy.playbook import Playbook
from g5kdeploy.reserve.placement import Placement, plan
from g5kdeploy.reserve.policy import PolicyCheck, check_walltime
from g5kdeploy.testbeds.api import Api


@dataclass(frozen=True)
class CheckReport:
    """Where the roles would go, and what was checked on the way."""

    placement: Placement
    #: None on a testbed without usage policy (local, vm).
    policy: PolicyCheck | None

    @property
    def checked(self) -> list[str]:
        """One line per check passed."""
        policy = [f"usage policy: {self.policy.summary}"] if self.policy else []
        return [*self.placement.checked, *policy]

    @property
    def notes(self) -> list[str]:
        """What is allowed but worth knowing: policy advice, placement choices, sites passed over and why."""
        rejected = [f"{site} not used: {why}" for site, why in self.placement.rejected.items()]
        return [*(self.policy.notes if self.policy else []), *self.placement.notes, *rejected]


def check_playbook(api: Api, playbook: Playbook, *, now: float, usage_policy: bool) -> CheckReport:
    """Check ``playbook`` against the API at ``now`` (the API's clock) and place its roles.

    :class:`~g5kdeploy.errors.ConfigError` names the field at fault; a set of sites where the roles do not fit
    now is a :class:`~g5kdeploy.errors.ReservationError`.
    """
    placement = plan(api, playbook.reservation, now=now)
    policy = check_walltime(playbook.reservation, now=now) if usage_policy else None
    return CheckReport(placement, policy)

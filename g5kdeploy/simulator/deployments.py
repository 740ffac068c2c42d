"""Kadeploy deployments: checked against the user's running deploy jobs, finished after a fixed duration."""

from __future__ import annotations

import hashlib
import random
import uuid
from collections.abc import Iterable
from typing import Any

from g5kdeploy.simulator.environments import ENVIRONMENTS
from g5kdeploy.simulator.errors import FORBIDDEN, ApiError
from g5kdeploy.simulator.records import Deployment, Job, as_flag

_NODES_INVALID = "The deployment you are trying to submit is not valid: nodes must be a non-empty list of node FQDN"
_OPTIONAL = ("version", "arch", "partition_label", "block_device", "vlan", "reformat_tmp")
FLAGS = ("disable_bootloader_install", "disable_disk_partitioning", "ignore_nodes_deploying")


def _known_environment(spec: str) -> bool:
    """A URL (an environment description Kadeploy fetches), or a public environment's name, alias or uid.

    `name@owner` names another user's environment, which the simulator cannot know: it is accepted.
    """
    if spec.startswith(("http://", "https://")) or "@" in spec:
        return True
    return any(spec in (env["name"], env.get("alias"), env["uid"]) for env in ENVIRONMENTS)


class DeploymentStore:
    """All deployments of all sites; callers hold the simulator lock."""

    def __init__(self, deploy_seconds: float, ko_rate: float, error_rate: float, api_version: str) -> None:
        self.items: dict[str, Deployment] = {}
        self.deploy_seconds = deploy_seconds
        self.ko_rate = ko_rate
        self.error_rate = error_rate
        self.api_version = api_version

    def create(
        self, site: str, user: str, body: dict[str, Any], jobs: Iterable[Job], now: float, rng: random.Random
    ) -> Deployment:
        nodes = body.get("nodes")
        if isinstance(nodes, str):
            # A form body with a single `nodes` field, or a JSON client sending one FQDN.
            nodes = [nodes]
        if not isinstance(nodes, list) or not nodes or not all(isinstance(n, str) and n for n in nodes):
            raise ApiError(400, _NODES_INVALID)
        environment = body.get("environment")
        if not isinstance(environment, str) or not environment:
            raise ApiError(400, "The deployment you are trying to submit is not valid: environment must be given")
        if not _known_environment(environment):
            raise ApiError(
                400,
                "Cannot launch deployment: Invalid environment specification -- "
                f"the environment {environment} does not exist",
            )
        allowed = {
            node
            for job in jobs
            if job.site == site and job.user == user and job.state == "running" and "deploy" in job.types
            for node in job.nodes
        }
        refused = sorted(set(nodes) - allowed)
        if refused:
            raise ApiError(
                400,
                "Cannot launch deployment: Kadeploy error #4: You do not have the rights to deploy on "
                f"the nodes {', '.join(refused)} (they must belong to one of your running deploy jobs)",
            )
        errored = rng.random() < self.error_rate
        ko = [] if errored else [n for n in nodes if rng.random() < self.ko_rate]
        dep = Deployment(
            uid=f"D-{uuid.UUID(int=rng.getrandbits(128), version=4)}",
            site=site,
            user=user,
            nodes=list(nodes),
            environment=environment,
            created_at=now,
            updated_at=now,
            end_at=now + self.deploy_seconds,
            planned_status="error" if errored else "terminated",
            planned_ko=ko,
            key=self._key_url(site, user, body.get("key")),
            extra={
                **{k: body[k] for k in _OPTIONAL if k in body},
                **{k: as_flag(body[k]) for k in FLAGS if k in body},
            },
        )
        self.items[dep.uid] = dep
        return dep

    def _key_url(self, site: str, user: str, key: object) -> str | None:
        """Key text is stored server-side and replaced by the URL of the stored file, as g5k-api does."""
        if not isinstance(key, str) or not key:
            return None
        if key.startswith(("http://", "https://")):
            return key
        digest = hashlib.sha1(key.encode()).hexdigest()
        return f"https://api.grid5000.fr/{self.api_version}/sites/{site}/files/{user}-key-{digest}"

    def get(self, site: str, uid: str) -> Deployment:
        dep = self.items.get(uid)
        if dep is None or dep.site != site:
            raise ApiError(404, f"Couldn't find Grid5000::Deployment with ID={uid}")
        return dep

    def cancel(self, site: str, uid: str, user: str, now: float) -> Deployment:
        dep = self.get(site, uid)
        if dep.user != user:
            raise ApiError(403, FORBIDDEN)
        if dep.status == "processing":
            dep.status = "canceled"
            dep.updated_at = now
        return dep

    def next_event(self) -> float | None:
        return min((d.end_at for d in self.items.values() if d.status == "processing"), default=None)

    def advance(self, t: float) -> None:
        for dep in self.items.values():
            if dep.status == "processing" and dep.end_at <= t:
                dep.status = dep.planned_status
                dep.updated_at = dep.end_at

    def listing(self, site: str, query: dict[str, str]) -> list[Deployment]:
        found = [
            d
            for d in self.items.values()
            if d.site == site
            and (not query.get("status") or d.status in query["status"].split(","))
            and (not query.get("user") or d.user == query["user"])
        ]
        # g5k-api's DeploymentsController#index: newest first, oldest first only for `reverse=true`.
        found.sort(key=lambda d: d.created_at, reverse=query.get("reverse") != "true")
        return found

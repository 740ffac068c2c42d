"""What the deploy tests share: fake store paths, a fake cache, a fake key, and a running job to deploy on."""

from __future__ import annotations

import time
from collections.abc import Sequence
from typing import Any

from g5kdeploy.testbeds.api import Api

ROOT = "/nix/store/aaaaaaaaaaaaaaaaaaaaaaaaaaaaaaaa-compose-info.json"
KERNEL = "/nix/store/bbbbbbbbbbbbbbbbbbbbbbbbbbbbbbbb-linux-6.12.30"
CACHE_URL = "https://cache.example.org"
CACHE_KEY = "cache.example.org-1:Zm9vYmFyYmF6cXV4Zm9vYmFyYmF6cXV4Zm9vYmFyYmE="
KEY = "ssh-ed25519 AAAAC3NzaC1lZDI1NTE5AAAAIFakeKeyForTheSimulatorOnly jdoe@test"


def deploy_job(api: Api, clock: Any, *, types: Sequence[str] = ("deploy",), name: str = "deploy-test") -> list[str]:
    """Submit a 3-node job on nancy and wait (bounded) until it runs; its nodes, sorted."""
    job = api.submit_job(
        "nancy",
        {"name": name, "resources": "nodes=3,walltime=1:00", "command": "sleep 3600", "types": list(types)},
    )
    deadline = time.monotonic() + 10
    while time.monotonic() < deadline:
        job = api.get_job("nancy", job["uid"])
        if job["state"] == "running":
            return sorted(job["assigned_nodes"])
        clock.sleep(5)
    raise AssertionError(f"job not running in time: {job['state']}")

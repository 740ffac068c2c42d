"""What a deploy method said it would do, as the run keeps it (``deploy.plan`` in ``run.json``).

One model per method, told apart by ``method`` and, for nxc, by ``flavour`` (kexec or Kadeploy image); the deploy
phase adds its deadline, retries and the nodes it deploys. The JSON is the one the agent wrote while plans were
plain dicts, so those runs still load; a plan that reads as none of the models (written by an older agent, or
damaged) loads as None, and the next deploy plans again.
"""

from __future__ import annotations

from typing import Annotated, Any, Literal

from pydantic import BaseModel, Field, ValidationError, ValidatorFunctionWrapHandler, WrapValidator


class PlanBase(BaseModel):
    method: str
    #: Set by the deploy phase: its deadline in seconds, retries per node, and the nodes not yet verified.
    deadline_s: int | None = None
    retries: int | None = None
    to_deploy: list[str] | None = None


class ArtifactsPlan(PlanBase):
    method: Literal["artifacts"] = "artifacts"
    nodes: list[str]
    #: Remote path (relative to the node's working directory) → sha256.
    files: dict[str, str]
    #: How the eBPF programs were built, or why they were not.
    ebpf: str


class KadeployPlan(PlanBase):
    method: Literal["kadeploy"] = "kadeploy"
    environment: str
    nodes: list[str]
    sites: dict[str, list[str]]
    poll_seconds: float


class NxcPlanBase(PlanBase):
    """What both nxc flavours plan: the closure checked in the cache and substituted, nxc's build, the descriptor."""

    method: Literal["nxc"] = "nxc"
    flavour: str
    frontend: str
    nodes: list[str]
    roles: dict[str, list[str]]
    #: The store path of the composition's compose-info, whose closure is everything the nodes boot.
    composition: str
    toplevels: dict[str, str]
    closure_paths: int
    closure_nar_size: int
    missing_paths: list[str]
    #: flake.lock's sha256, or why there is none.
    flake_lock: str
    #: nxc's deployment descriptor, kept as nxc's own JSON: its initrd reads it, keys we do not know included.
    descriptor: dict[str, Any]
    #: How ``deploy=`` reaches the nodes: inline on the kernel command line or over HTTP from the frontend.
    deploy_param: str
    #: Step → seconds it took.
    plan_seconds: dict[str, float]


class KexecPlan(BaseModel):
    """What nxc's kexec script loads: kernel, initrd and the command line, verbatim."""

    kernel: str
    initrd: str
    append: str


class KexecDeadlines(BaseModel):
    deploy_timeout: int
    settle_seconds: float
    probe_timeout: float


class NxcKexecPlan(NxcPlanBase):
    flavour: Literal["g5k-nfs-store", "g5k-ramdisk"]
    kexec: KexecPlan
    initrd_bytes: int
    ram_needed_bytes: int
    deadlines: KexecDeadlines


class ImagePlan(BaseModel):
    """The image published under ~/public, checked against its source by sha256."""

    source: str
    path: str
    url: str
    sha256: str


class ImageDeadlines(BaseModel):
    deploy_timeout: int
    poll_seconds: float


class NxcImagePlan(NxcPlanBase):
    flavour: Literal["g5k-image"]
    image: ImagePlan
    #: The architecture as Kadeploy names it.
    arch: str
    #: The public URL of the Kadeploy environment description written next to the image.
    environment: str
    deadlines: ImageDeadlines


NxcPlan = Annotated[NxcKexecPlan | NxcImagePlan, Field(discriminator="flavour")]
DeployPlan = Annotated[ArtifactsPlan | KadeployPlan | NxcPlan, Field(discriminator="method")]


def _readable_or_none(value: Any, handler: ValidatorFunctionWrapHandler) -> Any:
    # {} is what a deploy record held before its first plan.
    if value is None or value == {}:
        return None
    try:
        return handler(value)
    except ValidationError:
        return None


#: ``DeployRecord.plan``: a plan, or None before the first plan and for one that no longer reads.
StoredPlan = Annotated[DeployPlan | None, WrapValidator(_readable_or_none)]

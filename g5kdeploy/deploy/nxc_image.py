"""nxc's g5k-image flavour: the composition's image, installed by Kadeploy.

``plan`` finishes the shared half (:class:`~g5kdeploy.deploy.nxc.NxcMethod`, whose ``nxc build`` is ``-f
g5k-image``), makes the deployment descriptor itself and publishes the image under
``~/public/g5kdeploy/<run_id>/`` (checked by sha256): nxc 0.7.11 writes the descriptor and the Kadeploy
environment only in the ``nxc start`` that runs kadeploy3. ``boot`` writes the environment description next to
the image, with the descriptor and the run's marker on its kernel command line, and hands its public URL to
:class:`~g5kdeploy.deploy.kadeploy.KadeployMethod` (a deploy job; the orchestration retries KO nodes).
"""

from __future__ import annotations

from dataclasses import asdict
from typing import Any

from g5kdeploy.deploy import nxc_deployment
from g5kdeploy.deploy.base import BootOutcome, DeployContext
from g5kdeploy.deploy.kadeploy import POLL_SECONDS, KadeployMethod, site_of
from g5kdeploy.deploy.nxc import QUERY_TIMEOUT, Built, NxcMethod, timed
from g5kdeploy.errors import ConfigError
from g5kdeploy.log import get_logger
from g5kdeploy.plans import ImageDeadlines, ImagePlan, NxcImagePlan
from g5kdeploy.tools import kadeploy_image, nxc

log = get_logger(__name__)


class NxcImageMethod(NxcMethod[NxcImagePlan]):
    flavours = (nxc.IMAGE_FLAVOUR,)
    plan_type = NxcImagePlan

    def _finish_plan(self, context: DeployContext, nodes: list[str], built: Built) -> NxcImagePlan:
        common = self._plan_common(context, nodes, built)
        with timed(built.steps, "descriptor"):
            descriptor = self._descriptor(context, built)
        site = site_of(built.machines[0])
        login = self._login(context)
        run_id = context.record.run_id
        with timed(built.steps, "publish"):
            image = kadeploy_image.publish_image(
                self.frontend,
                built.compose_info,
                run_id=run_id,
                site=site,
                login=login,
                timeout=float(built.deploy.timeout),
            )
        log.info("g5k-image published", url=image.url, sha256=image.sha256)
        description = f"{kadeploy_image.public_run_dir(run_id)}/{kadeploy_image.DESCRIPTION_NAME}"
        others = self._other_params(context, kadeploy_image.IMAGE_KERNEL_PARAMS)
        return NxcImagePlan(
            **common,
            image=ImagePlan(**asdict(image)),
            arch=kadeploy_image.kadeploy_arch(built.compose_info),
            environment=kadeploy_image.public_url(site, login, description),
            descriptor=descriptor,
            deploy_param=self._deploy_param_plan(descriptor, others),
            deadlines=ImageDeadlines(deploy_timeout=built.deploy.timeout, poll_seconds=POLL_SECONDS),
            plan_seconds=built.plan_seconds(),
        )

    def _kernel_params(self, plan: NxcImagePlan) -> str:  # noqa: ARG002 - the interface's signature
        return kadeploy_image.IMAGE_KERNEL_PARAMS

    def _boot(
        self,
        context: DeployContext,
        plan: NxcImagePlan,
        nodes: list[str],
        *,
        deploy_param: str,
        marker: str,
        deadline: float,
    ) -> dict[str, BootOutcome]:
        """Write the environment description next to the image, then let Kadeploy install it."""
        text = kadeploy_image.environment_description(
            image_url=plan.image.url,
            arch=plan.arch,
            author=self._login(context),
            kernel_params=f"{kadeploy_image.IMAGE_KERNEL_PARAMS} deploy={deploy_param} g5k.run={marker}",
        )
        kadeploy_image.publish_text(
            self.frontend,
            f"{kadeploy_image.public_run_dir(context.record.run_id)}/{kadeploy_image.DESCRIPTION_NAME}",
            text,
            timeout=QUERY_TIMEOUT,
            what="writing the environment description under ~/public",
        )
        kadeploy = KadeployMethod(public_key_text=self.public_key_text, environment=plan.environment)
        return kadeploy.boot(context, nodes, deadline=deadline)

    def _descriptor(self, context: DeployContext, built: Built) -> dict[str, Any]:
        if not self.public_key_text:
            raise ConfigError("g5k-image needs your public key for root on the nodes", hint="set ssh.key")
        ips = nxc_deployment.resolve_ips(self.frontend, built.machines, timeout=QUERY_TIMEOUT)
        placements = nxc_deployment.place(built.roles_in_order, context.record.roles, ips)
        return nxc_deployment.descriptor(
            built.compose_info, placements, ssh_key=self.public_key_text, user=self._login(context)
        )

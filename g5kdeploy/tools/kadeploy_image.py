"""A NixOS image for Kadeploy: nxc's g5k-image tarball published under ``~/public`` on the frontend, and the
Kadeploy environment description that points at it, as nxc's own Grid'5000 flavour writes it
(``flavours/grid5000.py``, ``KADEPLOY_ENV_DESC``).

The site's public web server serves ``~/public/x`` as ``http://public.<site>.grid5000.fr/~<login>/x``; each run
publishes under ``~/public/g5kdeploy/<run_id>/``, and both files are checked by sha256 once written.
"""

from __future__ import annotations

import hashlib
import re
import shlex
from collections.abc import Mapping
from dataclasses import dataclass
from typing import Any

import yaml

from g5kdeploy.errors import ConfigError, G5kError
from g5kdeploy.remote.transfer import remote_path
from g5kdeploy.tools.frontend import Frontend
from g5kdeploy.tools.nix import SYSTEM
from g5kdeploy.tools.nxc import IMAGE_FLAVOUR, locate_command

IMAGE_NAME = "nixos.tar.xz"
DESCRIPTION_NAME = "nixos.yaml"
#: Where published images go, under the user's home on the frontend; served as http://public.<site>/~<login>/.
PUBLIC_DIR = "public/g5kdeploy"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: What nxc's own environment puts before ``deploy=`` (flavours/grid5000.py, KADEPLOY_ENV_DESC).
IMAGE_KERNEL_PARAMS = "boot.shell_on_fail console=tty0 console=ttyS0,115200 check_kernel_initrd"
#: nxc's KADEPLOY_ARCH: compose-info's system → the architecture Kadeploy names.
KADEPLOY_ARCH = {"x86_64-linux": "x86_64", "aarch64-linux": "aarch64", "powerpc64le-linux": "ppc64le"}


@dataclass(frozen=True)
class PublishedImage:
    """The image copied under ~/public, checked against its source by sha256."""

    source: str
    path: str
    url: str
    sha256: str


def image_source(compose_info: dict[str, Any], composition: str = "composition") -> str:
    """The image tarball: compose-info's ``all.image`` (a store path), else the artifact directory's copy."""
    image = (compose_info.get("all") or {}).get("image") if isinstance(compose_info, dict) else None
    if isinstance(image, str) and image:
        return image
    return f"artifact/{composition}/{IMAGE_FLAVOUR}/{IMAGE_NAME}"


def kadeploy_arch(compose_info: Mapping[str, Any]) -> str:
    """The architecture Kadeploy names for the composition's system."""
    system = str(compose_info.get("system") or SYSTEM)
    if system not in KADEPLOY_ARCH:
        raise G5kError(f"Kadeploy has no architecture for the composition's system {system}")
    return KADEPLOY_ARCH[system]


def public_url(site: str, login: str, relative: str) -> str:
    """``~/<relative>`` (a path under ``public/``) as the site's public web server serves it: ``~/public/x`` is
    ``http://public.<site>.grid5000.fr/~<login>/x``."""
    if not relative.startswith("public/"):
        raise ValueError(f"{relative!r} is not under ~/public")
    return f"http://public.{site}.grid5000.fr/~{login}/{relative.removeprefix('public/')}"


def public_run_dir(run_id: str) -> str:
    """``public/g5kdeploy/<run_id>``, relative to the home directory; the run id must be a plain name."""
    if not _SAFE_NAME.fullmatch(run_id):
        raise ConfigError(f"run id {run_id!r} cannot name a directory under ~/public")
    return f"{PUBLIC_DIR}/{run_id}"


def publish_image_command(source: str, directory: str) -> str:
    """Copy the image to ``~/<directory>/nixos.tar.xz`` (world-readable) and print where it was found and both
    sha256 sums. A store path is looked for the way nxc does (``locate_command``)."""
    home_dir = remote_path(f"~/{directory}")
    target = f"{home_dir}/{IMAGE_NAME}"
    return (
        f"set -e; {locate_command(shlex.quote(source), f'image {source} not found in any Nix store')}; "
        f"mkdir -p {home_dir} && chmod 755 ~/public ~/{PUBLIC_DIR} {home_dir}; "
        f'cp -L "$src" {target}.part && chmod 644 {target}.part && mv -f {target}.part {target}; '
        f'echo "$src"; sha256sum "$src" {target}'
    )


def publish_image(
    frontend: Frontend,
    compose_info: dict[str, Any],
    *,
    run_id: str,
    site: str,
    login: str,
    timeout: float,
    composition: str = "composition",
) -> PublishedImage:
    """Publish the image under ``~/public/g5kdeploy/<run_id>/``, checked by sha256 against its source."""
    directory = public_run_dir(run_id)
    source = image_source(compose_info, composition)
    result = frontend.run(
        publish_image_command(source, directory), timeout=timeout, what="publishing the g5k-image under ~/public"
    )
    lines = result.stdout.strip().splitlines()
    if len(lines) != 3:
        raise G5kError(f"unexpected output while publishing the image: {result.stdout[:300]!r}")
    found = lines[0]
    sums = [line.split()[0] for line in lines[1:]]
    if sums[0] != sums[1] or not re.fullmatch(r"[0-9a-f]{64}", sums[0]):
        raise G5kError(f"the published image's sha256 {sums[1]} differs from its source's {sums[0]} ({found})")
    return PublishedImage(
        source=found,
        path=f"~/{directory}/{IMAGE_NAME}",
        url=public_url(site, login, f"{directory}/{IMAGE_NAME}"),
        sha256=sums[0],
    )


def environment_description(*, image_url: str, arch: str, author: str, kernel_params: str) -> str:
    """The Kadeploy environment nxc would write for the image (flavours/grid5000.py, KADEPLOY_ENV_DESC)."""
    description = {
        "name": "NixOS",
        "version": 1,
        "description": "NixOS",
        "author": author,
        "visibility": "shared",
        "destructive": False,
        "os": "linux",
        "arch": arch,
        "image": {"file": image_url, "kind": "tar", "compression": "xz"},
        "boot": {"kernel": "/boot/bzImage", "initrd": "/boot/initrd", "kernel_params": kernel_params},
        "filesystem": "ext4",
        "partition_type": 131,
        "multipart": False,
    }
    text: str = yaml.safe_dump(description, sort_keys=False, default_flow_style=False, width=1 << 16)
    return text


def publish_text(frontend: Frontend, relative: str, text: str, *, timeout: float, what: str) -> str:
    """Write ``~/<relative>`` world-readable and atomically; its sha256 on the frontend must be ``text``'s."""
    home_path = remote_path(f"~/{relative}")
    written = frontend.run(
        f"printf %s {shlex.quote(text)} > {home_path}.part && chmod 644 {home_path}.part && "
        f"mv -f {home_path}.part {home_path} && sha256sum {home_path}",
        timeout=timeout,
        what=what,
    )
    expected = hashlib.sha256(text.encode()).hexdigest()
    got = written.stdout.split()[0] if written.stdout.split() else ""
    if got != expected:
        raise G5kError(f"~/{relative} has sha256 {got or 'missing'} on {frontend.host}, not {expected}")
    return expected

"""Nix on the frontend, one function per invocation, each returning what it printed, parsed.

Every command runs in the flake directory on the frontend over SSH (:class:`~g5kdeploy.tools.frontend.Frontend`),
with the experimental features it needs enabled on the command line, so that no user ``nix.conf`` is assumed.
The command lines are built by the ``*_command`` functions so that the plan and the tests can show them exactly.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Sequence
from dataclasses import dataclass
from typing import Any

from g5kdeploy.errors import G5kError
from g5kdeploy.tools.frontend import Frontend, describe_failure

NIX = "nix --extra-experimental-features 'nix-command flakes'"
SYSTEM = "x86_64-linux"
# A store path anywhere in a message: nix names missing paths in its errors.
STORE_PATH = re.compile(r"/nix/store/[0-9a-z]{32}-[^\s'\"`,;:]+")
# A negative narinfo answer is cached for an hour by default: it would hide a path pushed since.
NO_NEGATIVE_CACHE = "--option narinfo-cache-negative-ttl 0"


@dataclass(frozen=True)
class BinaryCacheRef:
    url: str
    public_key: str


@dataclass(frozen=True)
class CacheReport:
    """The closure as the cache knows it: path → narSize, and the paths it lacks."""

    present: dict[str, int]
    missing: list[str]

    @property
    def nar_size(self) -> int:
        return sum(self.present.values())


def substituter_flags(cache: BinaryCacheRef) -> str:
    # Trusted by its signature only: the key goes with the substituter, never --no-check-sigs.
    return (
        f"--option extra-substituters {shlex.quote(cache.url)} "
        f"--option extra-trusted-public-keys {shlex.quote(cache.public_key)}"
    )


# The composition's output, evaluated without building -------------------------------------------------------


def eval_command(flavour: str) -> str:
    installable = f'.#packages.{SYSTEM}."composition::{flavour}".outPath'
    return f"{NIX} eval --raw {shlex.quote(installable)}"


def eval_composition(frontend: Frontend, flavour: str, *, timeout: float) -> str:
    """The store path of ``composition::<flavour>`` (nxc's compose-info JSON). Its references are every
    role's toplevel, the kernel and the initrd, so its closure is everything the nodes boot."""
    result = frontend.run(eval_command(flavour), timeout=timeout, what="nix eval of the composition")
    path = result.stdout.strip()
    if not STORE_PATH.fullmatch(path):
        raise G5kError(f"nix eval of the composition printed {path[:200]!r}, not a store path")
    return path


# One batched cache query -------------------------------------------------------------------------------------


def path_info_command(cache: BinaryCacheRef, paths: Sequence[str]) -> str:
    return f"{NIX} path-info --json -r --store {shlex.quote(cache.url)} {NO_NEGATIVE_CACHE} " + " ".join(
        shlex.quote(p) for p in paths
    )


def query_cache(frontend: Frontend, cache: BinaryCacheRef, paths: Sequence[str], *, timeout: float) -> CacheReport:
    """The closure of ``paths`` in the cache, in one query. A path the cache lacks is reported, not raised."""
    result = frontend.attempt(path_info_command(cache, paths), timeout=timeout)
    if result.exit_code is None:
        raise G5kError(f"the cache query did not complete on {frontend.host}: {describe_failure(result)}")
    present, missing = parse_path_info(result.stdout)
    if result.exit_code != 0:
        # Nix stops at the first invalid path and names it in its error, with no JSON for it.
        missing += [p for p in dict.fromkeys(STORE_PATH.findall(result.stderr)) if p not in present]
        if not missing:
            raise G5kError(f"nix path-info on {cache.url} failed: {describe_failure(result)}")
    return CacheReport(present=present, missing=sorted(set(missing)))


def parse_path_info(text: str) -> tuple[dict[str, int], list[str]]:
    """Both shapes of ``nix path-info --json``: a list of ``{path, narSize, valid?}`` (Nix < 2.19) or a map
    ``path → info | null`` (Nix ≥ 2.19); an invalid path is ``valid: false`` or ``null``."""
    if not text.strip():
        return {}, []
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise G5kError(f"nix path-info printed invalid JSON ({exc}): {text[:200]!r}") from None
    entries: list[tuple[str, Any]]
    if isinstance(data, list):
        entries = [(str(item.get("path")), item) for item in data if isinstance(item, dict)]
    elif isinstance(data, dict):
        entries = list(data.items())
    else:
        raise G5kError(f"nix path-info printed unexpected JSON: {text[:200]!r}")
    present: dict[str, int] = {}
    missing: list[str] = []
    for path, info in entries:
        if not isinstance(info, dict) or info.get("valid") is False:
            missing.append(path)
        else:
            present[path] = int(info.get("narSize") or 0)
    return present, missing


# Substitution only -------------------------------------------------------------------------------------------


def realise_command(cache: BinaryCacheRef, paths: Sequence[str]) -> str:
    # --max-jobs 0: nothing may be built here (a kernel on the frontend); everything comes from the cache.
    return f"{NIX} build --no-link --max-jobs 0 {substituter_flags(cache)} {NO_NEGATIVE_CACHE} " + " ".join(
        shlex.quote(p) for p in paths
    )


def realise(frontend: Frontend, cache: BinaryCacheRef, paths: Sequence[str], *, timeout: float) -> None:
    frontend.run(realise_command(cache, paths), timeout=timeout, what="substituting the closure from the cache")

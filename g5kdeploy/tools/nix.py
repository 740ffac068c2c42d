"""Nix on the frontend, one function per invocation, each returning what it printed, parsed.

Every command runs in the flake directory on the frontend over SSH (:class:`~g5kdeploy.tools.frontend.Frontend`),
with the experimental features it needs enabled on the command line, so that no user ``nix.conf`` is assumed.
The command lines are built by the ``*_command`` functions so that the plan and the tests can show them exactly.
"""

from __future__ import annotations

import json
import re
import shlex
import shutil
from collections.abc import Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from g5kdeploy.errors import ConfigError, G5kError
from g5kdeploy.log import get_logger
from g5kdeploy.process import run
from g5kdeploy.tools.frontend import Frontend, describe_failure

log = get_logger(__name__)
NIX = "nix --extra-experimental-features 'nix-command flakes'"
SYSTEM = "x86_64-linux"
# A store path anywhere in a message: nix names missing paths in its errors.
STORE_PATH = re.compile(r"/nix/store/[0-9a-z]{32}-[^\s'\"`,;:]+")
#: The flake the nxc deploy pushes to the frontend: the agent's own source tree.
FLAKE_ROOT = Path(__file__).resolve().parents[2]
GIT_TIMEOUT = 10.0
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


# The closure's contents, for the run's SBOM ------------------------------------------------------------------


@dataclass(frozen=True)
class StorePathInfo:
    """One path of a closure as ``nix path-info --json`` describes it."""

    path: str
    nar_hash: str
    nar_size: int
    references: tuple[str, ...]


#: sbomnix writes its three formats as files: only the CycloneDX one is kept, printed on stdout.
_SBOMNIX = (
    "d=$(mktemp -d) && trap 'rm -rf \"$d\"' EXIT && "
    'sbomnix {path} --cdx "$d/sbom.cdx.json" --spdx "$d/sbom.spdx.json" --csv "$d/sbom.csv" >&2 && '
    'cat "$d/sbom.cdx.json"'
)


def closure_info_command(path: str) -> str:
    return f"{NIX} path-info -r --json {shlex.quote(path)}"


def sbomnix_command(path: str) -> str:
    return _SBOMNIX.format(path=shlex.quote(path))


def closure_sbom(frontend: Frontend, toplevel: str, *, timeout: float) -> tuple[str, str]:
    """``(tool, text)``: sbomnix's CycloneDX document of ``toplevel``'s runtime closure where sbomnix is installed
    and succeeds, else ``nix path-info -r --json`` of it (``tool`` is ``"sbomnix"`` or ``"nix path-info"``)."""
    probe = frontend.attempt("command -v sbomnix", timeout=timeout)
    if probe.ok:
        made = frontend.attempt(sbomnix_command(toplevel), timeout=timeout)
        if made.ok:
            return "sbomnix", made.stdout
        log.warning("sbomnix failed; the SBOM comes from nix path-info", error=describe_failure(made))
    listed = frontend.run(closure_info_command(toplevel), timeout=timeout, what=f"nix path-info -r of {toplevel}")
    return "nix path-info", listed.stdout


def parse_closure_info(text: str) -> list[StorePathInfo]:
    """Both shapes of ``nix path-info -r --json`` (a list before Nix 2.19, a map after), valid paths only."""
    try:
        data = json.loads(text)
    except json.JSONDecodeError as exc:
        raise G5kError(f"nix path-info printed invalid JSON ({exc}): {text[:200]!r}") from None
    if isinstance(data, list):
        entries = [(item.get("path"), item) for item in data if isinstance(item, dict)]
    elif isinstance(data, dict):
        entries = list(data.items())
    else:
        raise G5kError(f"nix path-info printed unexpected JSON: {text[:200]!r}")
    infos = []
    for path, info in entries:
        if not isinstance(path, str) or not isinstance(info, dict) or info.get("valid") is False:
            continue
        references = info.get("references") or []
        infos.append(
            StorePathInfo(
                path=path,
                nar_hash=str(info.get("narHash") or ""),
                nar_size=int(info.get("narSize") or 0),
                # Before Nix 2.19 references are full paths, after they are base names.
                references=tuple(ref if ref.startswith("/") else f"/nix/store/{ref}" for ref in references),
            )
        )
    return infos


# Pinned inputs -----------------------------------------------------------------------------------------------


def flake_unlocked(root: Path = FLAKE_ROOT) -> str | None:
    """Why the flake at ``root`` does not pin its inputs, or None when it does: no ``flake.lock``, or one that git
    does not track (a flake in a git checkout sees tracked files only, so nix and nxc would not read it)."""
    if not (root / "flake.lock").is_file():
        return f"{root} has no flake.lock"
    if (root / ".git").exists():
        argv = ["git", "-C", str(root), "ls-files", "--error-unmatch", "flake.lock"]
        tracked = run(argv, timeout=GIT_TIMEOUT, what="check that git tracks flake.lock", check=False)
        if tracked.returncode != 0:
            return f"{root / 'flake.lock'} is not tracked by git, so the flake (and nxc's build) does not see it"
    return None


def lock_hint(root: Path = FLAKE_ROOT) -> str:
    return (
        f"on a machine with network, run `nix flake lock` in {root} and commit flake.lock "
        "(git add flake.lock && git commit); or pass --allow-unlocked to deploy with unpinned inputs"
    )


# Pushing a closure to the binary cache -----------------------------------------------------------------------

PUSH_TIMEOUT = 3600.0


def nix_argv(*arguments: str) -> list[str]:
    return ["nix", "--extra-experimental-features", "nix-command flakes", *arguments]


def build_output_argv(output: str) -> list[str]:
    return nix_argv("build", "--no-link", "--print-out-paths", f".#{output}")


def sign_argv(key_file: str, paths: Sequence[str]) -> list[str]:
    # The key goes by its file's name only: its content is read by nix, never by the agent, so no log can hold it.
    return nix_argv("store", "sign", "--recursive", "--key-file", key_file, *paths)


def copy_argv(url: str, paths: Sequence[str]) -> list[str]:
    return nix_argv("copy", "--to", url, *paths)


def build_output(output: str, *, root: Path = FLAKE_ROOT, timeout: float = PUSH_TIMEOUT) -> list[str]:
    """Build the flake's ``output`` here; its store paths."""
    done = run(build_output_argv(output), timeout=timeout, what=f"nix build .#{output}", cwd=root)
    paths = done.stdout.split()
    if not paths or not all(STORE_PATH.fullmatch(path) for path in paths):
        raise G5kError(f"nix build .#{output} printed {done.stdout[:200]!r}, not store paths")
    return paths


def push_closure(
    paths: Sequence[str], *, key_file: str, url: str, frontend: Frontend | None, timeout: float = PUSH_TIMEOUT
) -> None:
    """Sign the closure of ``paths`` with the key in ``key_file`` and copy it to the cache at ``url``: on
    ``frontend`` (where the paths are, and ``key_file`` is read), else here."""
    steps = ((sign_argv(key_file, paths), "signing the closure"), (copy_argv(url, paths), f"nix copy to {url}"))
    for argv, what in steps:
        if frontend is None:
            run(argv, timeout=timeout, what=what)
        else:
            frontend.run(shlex.join(argv), timeout=timeout, what=what)


# The NixOS VM test ------------------------------------------------------------------------------------------

#: Flakes and `nix build --print-out-paths` need this Nix.
MIN_NIX = (2, 4)
VMTEST_TIMEOUT = 6 * 3600.0
#: The test's machines in the order runNixOSTest numbers them (by name), and the vsock the backdoor gives each:
#: nixpkgs' sshBackdoor.vsockOffset (2) plus the machine's number, from 1.
VMTEST_MACHINES = ("collector", "exporter")
VSOCK_OFFSET = 2


def nix_version() -> tuple[int, ...] | None:
    """The installed Nix's version, or None when there is no ``nix``."""
    if shutil.which("nix") is None:
        return None
    done = run(["nix", "--version"], timeout=30, what="ask Nix its version")
    found = re.search(r"(\d+)\.(\d+)(?:\.(\d+))?", done.stdout)
    return tuple(int(part) for part in found.groups() if part is not None) if found else (0,)


def require_nix() -> None:
    """A ConfigError saying what to install where Nix is missing or too old for flakes."""
    version = nix_version()
    install = "install Nix 2.4 or later with network access (https://nixos.org/download; Debian 13's nix-bin)"
    if version is None:
        raise ConfigError("the NixOS VM test needs Nix, and there is no `nix` on PATH", hint=install)
    if version < MIN_NIX:
        shown = ".".join(map(str, version))
        raise ConfigError(f"the NixOS VM test needs Nix 2.4 or later (flakes); this one is {shown}", hint=install)


def vmtest_argv(*, interactive: bool) -> list[str]:
    """``nix build`` of the VM test, or of its interactive driver with the SSH backdoor on."""
    output = "statx-interactive" if interactive else f"checks.{SYSTEM}.statx"
    return nix_argv("build", "-L", "--print-out-paths", f".#{output}")


def vmtest_access() -> list[str]:
    """How to reach each machine of the interactive driver once ``start_all()`` ran."""
    return [
        f"{name}: ssh -o User=root vsock/{VSOCK_OFFSET + number}"
        for number, name in enumerate(VMTEST_MACHINES, start=1)
    ]

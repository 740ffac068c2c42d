"""NixOS-Compose (nxc 0.7.11) on the frontend: ``nxc build`` and its compose-info, and ``nxc start`` without
launching, for its kexec script and deployment descriptor.

nxc runs in the flake directory (``-d .``) through :class:`~g5kdeploy.tools.frontend.Frontend`; the command
lines are built by the ``*_command`` functions so that the plan and the tests (which parse them with the real
nxc CLI) can show them exactly. nixos-compose-and-payload.md §1.7 tells what nxc writes where.
"""

from __future__ import annotations

import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import PurePosixPath
from typing import Any

from g5kdeploy.errors import ConfigError, G5kError
from g5kdeploy.tools.frontend import Frontend
from g5kdeploy.tools.nix import BinaryCacheRef

#: The flavour whose image Kadeploy installs; the others boot by kexec.
IMAGE_FLAVOUR = "g5k-image"
#: Where nxc 0.7.11 looks for a ``/nix/...`` path before ``/nix`` itself (``Context.alternative_stores``, then the
#: flake's ``artifact/nix``, in ``realpath_from_store``): the store of the static Nix that nxc's Grid'5000 setup
#: runs from the home directory, where ``/nix/store/x`` is really ``~/.local/share/nix/root/nix/store/x``.
ALTERNATIVE_STORES = ("$HOME/.local/share/nix/root/nix", "$HOME/.nix", "$PWD/artifact/nix")
_SEPARATOR = "----- g5kdeploy: deployment descriptor -----"
_DEFAULT = re.compile(r"^:\s+\$\{(\w+):=(.*)\}\s*$")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


@dataclass(frozen=True)
class KexecParams:
    """What nxc's kexec script loads: kernel, initrd and the command line, verbatim."""

    kernel: str
    initrd: str
    append: str


def locate_command(path_word: str, missing: str) -> str:
    """Shell that sets ``$src`` to the file ``path_word`` (a shell word) names, resolved as nxc's
    ``realpath_from_store`` does: symlinks followed as far as they go, then a ``/nix/...`` result tried under
    each alternative store root first and as it is last. Exits 1 with ``missing`` (and the resolved path) on
    stderr when none is a file. Run from the flake directory, nxc's environment directory."""
    roots = " ".join(f'"{root}${{t#/nix}}"' for root in ALTERNATIVE_STORES)
    return (
        f"src=; t=$(readlink -m -- {path_word}); "
        f'case "$t" in /nix/*) set -- {roots} "$t" ;; *) set -- "$t" ;; esac; '
        'for p in "$@"; do if [ -f "$p" ]; then src=$p; break; fi; done; '
        f'if [ -z "$src" ]; then echo {shlex.quote(missing)}" ($t)" >&2; exit 1; fi'
    )


def composition_name(composition: str) -> str:
    """nxc names its build link after the composition *file* (``x/default.nix`` → ``default``) but builds
    the attribute ``composition::<flavour>``; ``start`` then looks for the file's name and fails. Only a file
    called ``composition.nix`` keeps both in step (nixos-compose-and-payload.md §1.7)."""
    name = PurePosixPath(composition).name.removesuffix(".nix")
    if name != "composition":
        raise ConfigError(
            f"deploy.composition: {composition!r}: nxc needs the file to be named composition.nix",
            hint="nxc builds composition::<flavour> but names the build after the file, so start cannot find it",
        )
    return name


# nxc build and its compose-info ------------------------------------------------------------------------------


def nxc_nix_flags(cache: BinaryCacheRef) -> str:
    """The value of ``nxc build --nix-flags``. nxc splits it on whitespace and hands the words to ``nix build``
    as they are, so it holds no shell quoting; the playbook refuses whitespace in the cache's URL and key."""
    # --max-jobs 0: the closure was substituted just before; nothing may be built on the frontend.
    words = ["--max-jobs", "0", "--option", "extra-substituters", cache.url]
    words += ["--option", "extra-trusted-public-keys", cache.public_key]
    return " ".join(words)


def nxc_build_command(flavour: str, composition: str, cache: BinaryCacheRef) -> str:
    # -d .: the flake is the repository root; the composition file keeps its name (composition_name()).
    # Every option before the composition file: nxc's CLI is a click group with chain=True, whose commands stop
    # reading options at their first positional argument; nxc 0.7.11 refuses an option after it
    # ("No such option '--nix-flags'").
    return shlex.join(["nxc", "-d", ".", "build", "-f", flavour, "--nix-flags", nxc_nix_flags(cache), composition])


def nxc_build(
    frontend: Frontend, flavour: str, composition: str, cache: BinaryCacheRef, *, timeout: float
) -> dict[str, Any]:
    """Run ``nxc build`` and return the compose-info JSON its link ``build/<comp>::<flavour>`` points to, found
    the way nxc finds it: on Grid'5000 Nix keeps its store in the home directory, so the link names a
    ``/nix/store`` path that only exists under one of nxc's alternative store roots."""
    link = f"build/{composition_name(composition)}::{flavour}"
    locate = locate_command(shlex.quote(link), f"{link} (made by nxc build) points to a path in no Nix store")
    command = f'{nxc_build_command(flavour, composition, cache)} >&2 && {{ {locate}; cat "$src"; }}'
    result = frontend.run(command, timeout=timeout, what="nxc build")
    try:
        info: dict[str, Any] = json.loads(result.stdout)
    except json.JSONDecodeError as exc:
        raise G5kError(f"{link} is not JSON ({exc}): {result.stdout[:200]!r}") from None
    return info


def composition_roles(compose_info: Mapping[str, Any], composition: str = "composition") -> dict[str, Any]:
    """role → toplevel (or nxc's older ``{"init": ...}``) from compose-info's ``compositions_info.<comp>.roles``,
    in compose-info's order, which is the order nxc fills roles in."""
    try:
        roles = compose_info["compositions_info"][composition]["roles"]
    except (KeyError, TypeError):
        raise G5kError(f"compose-info has no compositions_info.{composition}.roles") from None
    return dict(roles)


def role_toplevels(compose_info: dict[str, Any], composition: str = "composition") -> dict[str, str]:
    """role → toplevel from compose-info."""
    roles = composition_roles(compose_info, composition)
    return {role: value if isinstance(value, str) else str(value.get("toplevel")) for role, value in roles.items()}


# nxc start without launching: its deployment file and kexec script -------------------------------------------


def nxc_start_command(flavour: str, machine_file: str, roles: Mapping[str, int], identity: str | None) -> str:
    # no-launch: nxc writes the deployment file and the kexec script but boots nothing; we kexec ourselves,
    # in parallel and checking every exit code (nxc's launch is serial and ignores them).
    parts = ["nxc", "-d", ".", "start", "-f", flavour, "-m", machine_file]
    for role, count in roles.items():
        parts += ["-r", f"{role}={count}"]
    if identity:
        parts += ["-i", identity]
    parts += ["--start-option", "no-launch"]
    return shlex.join(parts)


def kexec_script_path(flavour: str, composition: str = "composition") -> str:
    return f"artifact/{composition}/{flavour}/kexec_scripts/kexec.sh"


def deployment_file_path(flavour: str, composition: str = "composition") -> str:
    """The deployment descriptor ``nxc start`` writes (nixos-compose-and-payload.md §1.7)."""
    return f"deploy/{composition}::{flavour}.json"


def nxc_prepare_kexec(
    frontend: Frontend,
    flavour: str,
    machines: Sequence[str],
    roles: Mapping[str, int],
    *,
    identity: str | None,
    timeout: float,
) -> tuple[KexecParams, dict[str, Any]]:
    """Write the machine file, let nxc generate its kexec script and deployment descriptor for ``machines``,
    and return both, parsed."""
    machine_file = ".g5k-machines"
    listing = "\n".join(machines) + "\n"
    command = (
        f"printf %s {shlex.quote(listing)} > {machine_file} && "
        f"{nxc_start_command(flavour, machine_file, roles, identity)} >&2 && "
        f"cat {shlex.quote(kexec_script_path(flavour))} && echo {shlex.quote(_SEPARATOR)} && "
        f"cat {shlex.quote(deployment_file_path(flavour))}"
    )
    result = frontend.run(command, timeout=timeout, what="nxc start --start-option no-launch")
    script, sep, deployment = result.stdout.partition(_SEPARATOR + "\n")
    if not sep:
        raise G5kError("nxc start wrote no deployment descriptor", hint=result.stdout[-300:])
    try:
        descriptor: dict[str, Any] = json.loads(deployment)
    except json.JSONDecodeError as exc:
        raise G5kError(f"{deployment_file_path(flavour)} is not JSON ({exc})") from None
    return parse_kexec_script(script), descriptor


def parse_kexec_script(text: str) -> KexecParams:
    """The ``kexec -l <kernel> --initrd=<initrd> --append="..."`` line of nxc's script, taken verbatim but for
    its ``$KERNEL`` and ``$INITRD``, which nxc 0.7.11 sets earlier in the script with ``: ${KERNEL:=<path>}``."""
    defaults: dict[str, str] = {}
    for line in text.splitlines():
        default = _DEFAULT.match(line.strip())
        if default:
            defaults[default.group(1)] = default.group(2)
            continue
        try:
            words = shlex.split(line, comments=True)
        except ValueError:
            continue
        words = [_VARIABLE.sub(lambda m: defaults.get(m.group(1) or m.group(2), m.group(0)), w) for w in words]
        for index, word in enumerate(words[:-1]):
            if PurePosixPath(word).name == "kexec" and words[index + 1] == "-l":
                return _kexec_load_args(words[index + 2 :], line)
    raise G5kError("nxc's kexec script has no 'kexec -l' line", hint=text[:500])


def _kexec_load_args(words: list[str], line: str) -> KexecParams:
    kernel = initrd = append = None
    rest = iter(words)
    for word in rest:
        if word.startswith("--initrd="):
            initrd = word.split("=", 1)[1]
        elif word == "--initrd":
            initrd = next(rest, None)
        elif word.startswith(("--append=", "--command-line=")):
            append = word.split("=", 1)[1]
        elif word in ("--append", "--command-line"):
            append = next(rest, None)
        elif word in ("&&", ";", "||"):
            break
        elif not word.startswith("-") and kernel is None:
            kernel = word
    if not kernel or not initrd or append is None:
        raise G5kError(f"cannot read kernel, initrd and command line from nxc's kexec line: {line.strip()}")
    if "$" in kernel + initrd:
        raise G5kError(f"nxc's kexec line uses a variable its script does not set: {line.strip()}")
    return KexecParams(kernel=kernel, initrd=initrd, append=append)

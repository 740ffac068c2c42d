"""One function per Nix or nxc invocation on the frontend, each returning what it printed, parsed.

Every command runs in the flake directory on the frontend over SSH (``Frontend``), with the experimental
features it needs enabled on the command line, so that no user ``nix.conf`` is assumed. The command lines are
built by the ``*_command`` functions so that the plan and the tests can show them exactly.
"""

from __future__ import annotations

import hashlib
import json
import re
import shlex
from collections.abc import Mapping, Sequence
from dataclasses import dataclass, field
from pathlib import PurePosixPath
from typing import Any

import yaml

from g5kdeploy.errors import ConfigError, G5kError
from g5kdeploy.remote import CommandResult, SshRunner

NIX = "nix --extra-experimental-features 'nix-command flakes'"
SYSTEM = "x86_64-linux"
# A store path anywhere in a message: nix names missing paths in its errors.
STORE_PATH = re.compile(r"/nix/store/[0-9a-z]{32}-[^\s'\"`,;:]+")
# A negative narinfo answer is cached for an hour by default: it would hide a path pushed since.
NO_NEGATIVE_CACHE = "--option narinfo-cache-negative-ttl 0"


@dataclass(frozen=True)
class Frontend:
    """Where the Nix commands run: a host reached by ``runner``, in the flake directory ``directory``."""

    runner: SshRunner
    host: str
    directory: str
    env: Mapping[str, str] = field(default_factory=dict)

    def run(self, command: str, *, timeout: float, what: str) -> CommandResult:
        """``command`` in the flake directory; G5kError with the end of stderr when it fails."""
        full = f"cd {remote_path(self.directory)} && {command}"
        result = self.runner.run([self.host], full, timeout=timeout, env=dict(self.env) or None)[self.host]
        if not result.ok:
            raise G5kError(f"{what} failed on {self.host}: {describe_failure(result)}", hint=f"the command: {command}")
        return result


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


@dataclass(frozen=True)
class KexecParams:
    """What nxc's kexec script loads: kernel, initrd and the command line, verbatim."""

    kernel: str
    initrd: str
    append: str

    def to_dict(self) -> dict[str, str]:
        return {"kernel": self.kernel, "initrd": self.initrd, "append": self.append}


def remote_path(path: str) -> str:
    """``path`` quoted for the remote shell, keeping a leading ``~/`` expandable."""
    if path.startswith("~/"):
        return "~/" + shlex.quote(path[2:])
    return shlex.quote(path)


#: Where nxc 0.7.11 looks for a ``/nix/...`` path before ``/nix`` itself (``Context.alternative_stores``, then the
#: flake's ``artifact/nix``, in ``realpath_from_store``): the store of the static Nix that nxc's Grid'5000 setup
#: runs from the home directory, where ``/nix/store/x`` is really ``~/.local/share/nix/root/nix/store/x``.
ALTERNATIVE_STORES = ("$HOME/.local/share/nix/root/nix", "$HOME/.nix", "$PWD/artifact/nix")


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


def describe_failure(result: CommandResult) -> str:
    if result.timed_out:
        return f"timed out after {result.duration:.0f} s"
    lines = [line for line in result.stderr.strip().splitlines() if line.strip()]
    tail = " | ".join(lines[-5:])
    return f"exit {result.exit_code}: {tail or result.error or 'no output'}"


def substituter_flags(cache: BinaryCacheRef) -> str:
    # Trusted by its signature only: the key goes with the substituter, never --no-check-sigs.
    return (
        f"--option extra-substituters {shlex.quote(cache.url)} "
        f"--option extra-trusted-public-keys {shlex.quote(cache.public_key)}"
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


# (b) the composition's output, evaluated without building -------------------------------------------------


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


# (c) one batched cache query ---------------------------------------------------------------------------------


def path_info_command(cache: BinaryCacheRef, paths: Sequence[str]) -> str:
    return f"{NIX} path-info --json -r --store {shlex.quote(cache.url)} {NO_NEGATIVE_CACHE} " + " ".join(
        shlex.quote(p) for p in paths
    )


def query_cache(frontend: Frontend, cache: BinaryCacheRef, paths: Sequence[str], *, timeout: float) -> CacheReport:
    """The closure of ``paths`` in the cache, in one query. A path the cache lacks is reported, not raised."""
    command = path_info_command(cache, paths)
    full = f"cd {remote_path(frontend.directory)} && {command}"
    result = frontend.runner.run([frontend.host], full, timeout=timeout, env=dict(frontend.env) or None)[frontend.host]
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


# (d) substitution only ---------------------------------------------------------------------------------------


def realise_command(cache: BinaryCacheRef, paths: Sequence[str]) -> str:
    # --max-jobs 0: nothing may be built here (a kernel on the frontend); everything comes from the cache.
    return f"{NIX} build --no-link --max-jobs 0 {substituter_flags(cache)} {NO_NEGATIVE_CACHE} " + " ".join(
        shlex.quote(p) for p in paths
    )


def realise(frontend: Frontend, cache: BinaryCacheRef, paths: Sequence[str], *, timeout: float) -> None:
    frontend.run(realise_command(cache, paths), timeout=timeout, what="substituting the closure from the cache")


# (e) nxc build and its compose-info --------------------------------------------------------------------------


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


# (f) nxc start without launching: its deployment file and kexec script ---------------------------------------

_SEPARATOR = "----- g5kdeploy: deployment descriptor -----"


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


_DEFAULT = re.compile(r"^:\s+\$\{(\w+):=(.*)\}\s*$")
_VARIABLE = re.compile(r"\$\{(\w+)\}|\$(\w+)")


def file_size(frontend: Frontend, path: str, *, timeout: float) -> int:
    """The size of ``path`` on the frontend (the nodes read nxc's kernel and initrd from the same NFS home)."""
    result = frontend.run(f"stat -L -c %s {shlex.quote(path)}", timeout=timeout, what=f"reading the size of {path}")
    try:
        return int(result.stdout.strip())
    except ValueError:
        raise G5kError(f"unexpected size of {path}: {result.stdout[:100]!r}") from None


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


# (g) the g5k-image flavour: the image under ~/public, and a Kadeploy environment description pointing at it -----

IMAGE_FLAVOUR = "g5k-image"
IMAGE_NAME = "nixos.tar.xz"
DESCRIPTION_NAME = "nixos.yaml"
#: Where published images go, under the user's home on the frontend; served as http://public.<site>/~<login>/.
PUBLIC_DIR = "public/g5kdeploy"
_SAFE_NAME = re.compile(r"[A-Za-z0-9][A-Za-z0-9._-]*")
#: What nxc's own environment puts before ``deploy=`` (flavours/grid5000.py, KADEPLOY_ENV_DESC).
IMAGE_KERNEL_PARAMS = "boot.shell_on_fail console=tty0 console=ttyS0,115200 check_kernel_initrd"


@dataclass(frozen=True)
class PublishedImage:
    """The image copied under ~/public, checked against its source by sha256."""

    source: str
    path: str
    url: str
    sha256: str

    def to_dict(self) -> dict[str, str]:
        return {"source": self.source, "path": self.path, "url": self.url, "sha256": self.sha256}


def image_source(compose_info: dict[str, Any], composition: str = "composition") -> str:
    """The image tarball: compose-info's ``all.image`` (a store path), else the artifact directory's copy."""
    image = (compose_info.get("all") or {}).get("image") if isinstance(compose_info, dict) else None
    if isinstance(image, str) and image:
        return image
    return f"artifact/{composition}/{IMAGE_FLAVOUR}/{IMAGE_NAME}"


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

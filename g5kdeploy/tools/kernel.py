"""The experiment's kernel for the VM testbed, built from Debian's ``linux-source`` package and cached.

The playbook's ``kernel`` section applies here as far as Debian's source allows: its ``patches`` are applied
to the unpacked source (each checked with ``patch --dry-run`` first: one that does not apply is an error naming
``kernel.patches[i]`` with patch's own output) and its ``config`` is merged; a ``branch`` or a ``source`` cannot
be built from Debian's 6.1 and the playbook's validation refuses them on this testbed.

Configuration: Linux's ``tinyconfig``, then ``kernel-vm.config`` (what QEMU and virtme-ng's guest need), then
the playbook's ``kernel.config``, then every option of ``nix/kernel-options.json`` (the list the Nix kernel
module forces on Grid'5000, so the two kernels carry the same experiment options, and last so that it wins),
merged with the kernel's own ``merge_config.sh`` and resolved by ``olddefconfig``. Every option asked for must
survive: one whose dependencies are not met is dropped by Kconfig without a word, so it is an error here,
naming it, before the long build starts.

For Grid'5000, :func:`stage_nix_kernel` writes the same section as ``nix/kernel.json`` (with the patches
beside it) into the flake the deploy pushes, which ``nix/pkgs/kernel.nix`` builds.

The result (``bzImage``, the kernel's BTF, ``vmlinux.h`` generated from it, and the final ``.config``) lives
under ``<cache>/kernels/<key>/``, the key hashing the source package's version, every configuration input
and the patches' contents.
A build happens in a scratch directory next to it and becomes the cache entry by one rename at the very end:
an interrupted or failed build leaves nothing that could be taken for a kernel, and its processes (make and
its compilers, a process group of their own) are stopped before the error goes up.
"""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import json
import os
import re
import shutil
import tempfile
import time
from collections.abc import Callable, Iterator
from dataclasses import dataclass
from pathlib import Path
from typing import IO

from g5kdeploy.errors import DeadlineExceeded, KernelConfigError, TestbedError, ToolError
from g5kdeploy.files import sha256_file
from g5kdeploy.log import get_logger
from g5kdeploy.playbook import Kernel, artifact_path, experiment_kernel_options
from g5kdeploy.process import run, stream
from g5kdeploy.waiting import wait_until

log = get_logger(__name__)

FRAGMENT_FILE = Path(__file__).resolve().parent / "kernel-vm.config"
SOURCE_PACKAGE = "linux-source-6.1"
#: Changes whenever the way a kernel is built here changes, so that old cache entries are not reused.
RECIPE = "1"
#: Objects a build of this configuration compiles (1,450 measured on 6.1.192): the progress bar's total.
EXPECTED_OBJECTS = 1450
BUILD_TIMEOUT = 3600.0
CONFIG_TIMEOUT = 300.0
INSTALL_HINT = f"apt-get install {SOURCE_PACKAGE} build-essential flex bison bc libelf-dev libssl-dev dwarves bpftool"
#: Where the playbook's patches go beside nix/kernel.json in the pushed flake.
PATCH_DIR = "kernel-patches"
#: Called with (step, objects compiled so far, objects expected or None).
OnProgress = Callable[[str, int, int | None], None]
_COMPILED = re.compile(r"^\s+(CC|AS)\s")


@dataclass(frozen=True)
class KernelSource:
    tarball: Path
    package: str
    version: str


@dataclass(frozen=True)
class KernelPatch:
    """A patch of the playbook's ``kernel.patches``: where it is named, where it lies, and its digest."""

    index: int
    name: str
    path: Path
    sha256: str

    @property
    def field(self) -> str:
        return f"kernel.patches[{self.index}]"


@dataclass(frozen=True)
class BuiltKernel:
    """A cache entry: everything the VM testbed and the eBPF build need from one kernel."""

    directory: Path
    release: str

    @property
    def bzimage(self) -> Path:
        return self.directory / "bzImage"

    @property
    def config(self) -> Path:
        return self.directory / "config"

    @property
    def btf(self) -> Path:
        return self.directory / "vmlinux.btf"

    @property
    def vmlinux_h(self) -> Path:
        return self.directory / "vmlinux.h"


def kernel_options() -> dict[str, str]:
    """``{"BPF_KPROBE_OVERRIDE": "y", ...}`` from nix/kernel-options.json."""
    return experiment_kernel_options()


def kernel_patches(kernel: Kernel | None, playbook_path: Path) -> list[KernelPatch]:
    """The playbook's patches, located next to it (load_playbook checked they exist) and digested."""
    return [
        KernelPatch(index, name, path, sha256_file(path))
        for index, name in enumerate(kernel.patches if kernel else [])
        for path in [artifact_path(playbook_path, name)]
    ]


def nix_kernel_description(kernel: Kernel | None, patches: list[KernelPatch]) -> dict[str, object]:
    """What nix/lib/kernel-description.nix reads: the branch or the pinned source, the patches (``file``
    relative to kernel.json's directory) and the playbook's own options."""
    kernel = kernel or Kernel()
    description: dict[str, object] = {}
    if kernel.source is None:
        description["branch"] = kernel.nixpkgs_branch
    else:
        source = kernel.source
        pinned = {"owner": source.owner, "repo": source.repo, "rev": source.rev, "hash": source.hash}
        pinned["version"] = source.version
        if source.modDirVersion is not None:
            pinned["modDirVersion"] = source.modDirVersion
        description["source"] = pinned
    description["patches"] = [{"name": patch.path.stem, "file": _staged_patch(patch)} for patch in patches]
    description["config"] = dict(kernel.config)
    return description


def stage_nix_kernel(kernel: Kernel | None, playbook_path: Path, nix_dir: Path) -> None:
    """Write ``nix_dir/kernel.json`` and copy the patches beside it (``kernel-patches/``), replacing whatever
    a copied tree held there: the flake builds exactly the playbook's kernel."""
    patches = kernel_patches(kernel, playbook_path)
    shutil.rmtree(nix_dir / PATCH_DIR, ignore_errors=True)
    for patch in patches:
        target = nix_dir / _staged_patch(patch)
        target.parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(patch.path, target)
    text = json.dumps(nix_kernel_description(kernel, patches), indent=2, sort_keys=True) + "\n"
    (nix_dir / "kernel.json").write_text(text)


def _staged_patch(patch: KernelPatch) -> str:
    # The index first: two patches of one file name in different directories stay two files, in order.
    return f"{PATCH_DIR}/{patch.index:03d}-{patch.path.name}"


def cache_root(env: dict[str, str] | None = None) -> Path:
    """``$G5K_CACHE_DIR``, else ``$XDG_CACHE_HOME/g5kdeploy``, else ``~/.cache/g5kdeploy``."""
    env = dict(os.environ) if env is None else env
    if env.get("G5K_CACHE_DIR"):
        return Path(env["G5K_CACHE_DIR"])
    base = Path(env["XDG_CACHE_HOME"]) if env.get("XDG_CACHE_HOME") else Path(env.get("HOME", "~")) / ".cache"
    return (base / "g5kdeploy").expanduser()


def debian_source() -> KernelSource:
    """The installed ``linux-source-6.1`` package: its tarball and its version (part of the cache key)."""
    try:
        query = ["dpkg-query", "-W", "-f", "${Version}", SOURCE_PACKAGE]
        version = run(query, timeout=30, what=f"read the version of {SOURCE_PACKAGE}").stdout.strip()
    except ToolError:
        version = ""
    tarball = Path("/usr/src") / f"{SOURCE_PACKAGE}.tar.xz"
    if not version or not tarball.is_file():
        raise TestbedError(
            f"the VM testbed builds its kernel from Debian's {SOURCE_PACKAGE}, which is not installed",
            hint=INSTALL_HINT,
        )
    return KernelSource(tarball=tarball, package=SOURCE_PACKAGE, version=version)


def config_fragment(options: dict[str, str] | None = None, own: dict[str, str] | None = None) -> str:
    """The whole fragment merged over tinyconfig: kernel-vm.config, the playbook's ``kernel.config`` (``own``),
    then the experiment's options, which merge_config lets win over anything before them."""
    wanted = kernel_options() if options is None else options
    lines = [FRAGMENT_FILE.read_text()]
    if own:
        lines += ["# the playbook's kernel.config", *(_config_line(name, value) for name, value in own.items())]
    lines.append("# nix/kernel-options.json")
    lines += [_config_line(name, value) for name, value in wanted.items()]
    return "\n".join(lines) + "\n"


def _config_line(name: str, value: str) -> str:
    if value == "n":
        return f"# CONFIG_{name} is not set"
    # Kconfig writes tristates, numbers and hex bare, and every other value as a quoted string.
    bare = value in ("y", "m") or re.fullmatch(r"-?\d+|0x[0-9a-fA-F]+", value)
    return f"CONFIG_{name}={value}" if bare else f'CONFIG_{name}="{value}"'


def required_options(fragment: str) -> dict[str, str]:
    """Every option the fragment sets (``NAME -> value``, ``n`` for "is not set"): all must hold afterwards."""
    required: dict[str, str] = {}
    for line in fragment.splitlines():
        if match := re.match(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$", line):
            required[match.group(1)] = match.group(2)
        elif match := re.match(r"^# CONFIG_([A-Za-z0-9_]+) is not set$", line):
            required[match.group(1)] = "n"
    return required


def cache_key(source: KernelSource, fragment: str, patches: list[KernelPatch] | None = None) -> str:
    inputs = f"{RECIPE}\n{source.package} {source.version}\n{fragment}"
    # Only when there are patches: a kernel without any keeps the key (and the cache entry) it always had.
    inputs += "".join(f"patch {patch.index} {patch.sha256}\n" for patch in patches or [])
    digest = hashlib.sha256(inputs.encode()).hexdigest()
    return f"{source.version}-{digest[:16]}"


def cached_kernel(cache: Path, key: str) -> BuiltKernel | None:
    directory = cache / "kernels" / key
    release = directory / "release"
    if not release.is_file():
        return None
    return BuiltKernel(directory=directory, release=release.read_text().strip())


def ensure_kernel(
    *,
    cache: Path | None = None,
    options: dict[str, str] | None = None,
    kernel: Kernel | None = None,
    playbook_path: Path | None = None,
    on_progress: OnProgress | None = None,
    jobs: int | None = None,
    timeout: float = BUILD_TIMEOUT,
) -> BuiltKernel:
    """The experiment's kernel from the cache, or built (patch, configure, check, build) and cached first;
    ``kernel`` is the playbook's section (its patches relative to ``playbook_path``).

    Builds of one key are serialised (a lock file per key): a second run that needs the same kernel while it
    is being built waits for it, then finds it in the cache, rather than building it twice.
    """
    source = debian_source()
    fragment = config_fragment(options, kernel.config if kernel else None)
    patches = kernel_patches(kernel, playbook_path) if kernel and kernel.patches and playbook_path else []
    cache = cache or cache_root()
    key = cache_key(source, fragment, patches)
    if (found := cached_kernel(cache, key)) is not None:
        log.info("kernel from the cache", release=found.release, directory=str(found.directory))
        return found
    _require_tools()
    progress = on_progress or (lambda _step, _done, _total: None)
    deadline = time.monotonic() + timeout
    with _build_lock(cache, key, progress, deadline=deadline):
        if (found := cached_kernel(cache, key)) is not None:
            log.info("kernel built meanwhile by another run", release=found.release)
            return found
        _build_into_cache(
            source, fragment, patches, cache, key, progress, jobs=jobs or os.cpu_count() or 1, deadline=deadline
        )
    built = cached_kernel(cache, key)
    assert built is not None
    log.info("kernel built", release=built.release, directory=str(built.directory))
    return built


@contextlib.contextmanager
def _build_lock(cache: Path, key: str, progress: OnProgress, *, deadline: float) -> Iterator[None]:
    (cache / "locks").mkdir(parents=True, exist_ok=True)
    with (cache / "locks" / f"{key}.lock").open("a") as handle:
        if not _locked(handle):
            progress("waiting for another build of this kernel", 0, None)
            wait_until(
                lambda: _locked(handle),
                timeout=_left(deadline),
                what="another build of this kernel to finish",
                interval=0.5,
            )
        try:
            yield
        finally:
            fcntl.flock(handle, fcntl.LOCK_UN)


def _locked(handle: IO[str]) -> bool:
    """Whether this process now holds the build lock ``handle``; False while another build holds it."""
    try:
        fcntl.flock(handle, fcntl.LOCK_EX | fcntl.LOCK_NB)
    except BlockingIOError:
        return False
    return True


def _build_into_cache(
    source: KernelSource,
    fragment: str,
    patches: list[KernelPatch],
    cache: Path,
    key: str,
    progress: OnProgress,
    *,
    jobs: int,
    deadline: float,
) -> None:
    (cache / "kernels").mkdir(parents=True, exist_ok=True)
    scratch = Path(tempfile.mkdtemp(prefix=f".build-{key}-", dir=cache / "kernels"))
    try:
        progress("unpacking the kernel source", 0, None)
        run(["tar", "-xf", source.tarball, "-C", scratch], timeout=_left(deadline), what="unpack the kernel source")
        tree = scratch / source.tarball.name.removesuffix(".tar.xz")
        if patches:
            progress("applying the playbook's patches", 0, None)
            apply_patches(tree, patches, source, deadline=deadline)
        progress("configuring", 0, None)
        configure(tree, fragment, deadline=deadline)
        _build(tree, jobs, progress, deadline=deadline)
        progress("extracting BTF and vmlinux.h", EXPECTED_OBJECTS, EXPECTED_OBJECTS)
        entry = _collect(tree, scratch / "entry", deadline=deadline)
        # The one step that makes it a cache entry: a half-built kernel is never found by cached_kernel.
        entry.rename(cache / "kernels" / key)
    finally:
        shutil.rmtree(scratch, ignore_errors=True)


def apply_patches(tree: Path, patches: list[KernelPatch], source: KernelSource, *, deadline: float) -> None:
    """Each patch in order, after a dry run: one that does not apply is an error naming its field, with
    patch's own output, and leaves the tree as the patches before it left it."""
    for patch in patches:
        argv: list[str | Path] = ["patch", "-p1", "--forward", "--batch", "-d", tree, "-i", patch.path]
        what = f"apply {patch.field}"
        trial = run([*argv, "--dry-run"], timeout=_left(deadline, CONFIG_TIMEOUT), what=what, check=False)
        if trial.returncode != 0:
            output = (trial.stdout + trial.stderr).strip()
            raise KernelConfigError(
                f"{patch.field}: {patch.name} does not apply to Debian's {source.package} ({source.version}):\n"
                + "\n".join(output.splitlines()[-20:]),
                hint="the VM testbed builds Debian's 6.1 source with the playbook's patches and config: rebase "
                "the patch on Linux 6.1 (patch -p1, from the source's top directory), or run it on grid5000 only",
            )
        run(argv, timeout=_left(deadline, CONFIG_TIMEOUT), what=what)


def configure(tree: Path, fragment: str, *, deadline: float) -> None:
    """tinyconfig + fragment, olddefconfig, then check that every option asked for is what was asked."""
    (tree / "g5kdeploy.config").write_text(fragment)
    what = "configure the kernel"
    run(["make", "-C", tree, "tinyconfig"], timeout=_left(deadline, CONFIG_TIMEOUT), what=what)
    run(
        [tree / "scripts/kconfig/merge_config.sh", "-m", "-O", tree, tree / ".config", tree / "g5kdeploy.config"],
        timeout=_left(deadline, CONFIG_TIMEOUT),
        what=what,
        cwd=tree,
    )
    run(["make", "-C", tree, "olddefconfig"], timeout=_left(deadline, CONFIG_TIMEOUT), what=what)
    check_config((tree / ".config").read_text(), required_options(fragment))


def check_config(config: str, required: dict[str, str]) -> None:
    """KernelConfigError naming every required option the final ``.config`` does not carry as asked."""
    final: dict[str, str] = {}
    for line in config.splitlines():
        if match := re.match(r"^CONFIG_([A-Za-z0-9_]+)=(.*)$", line):
            final[match.group(1)] = match.group(2)
    lost = [
        f"CONFIG_{name}={final.get(name, 'unset')} (asked: {value})"
        for name, value in required.items()
        if final.get(name, "n") != value
    ]
    if lost:
        experiment = set(kernel_options())
        which = [item for item in lost if item.split("=")[0].removeprefix("CONFIG_") in experiment] or lost
        raise KernelConfigError(
            "the kernel configuration dropped option(s) the experiment needs: " + ", ".join(which),
            hint="Kconfig drops an option whose dependencies are off: add what it depends on to "
            "nix/kernel-options.json or the playbook's kernel.config (see its 'depends on' in the kernel's "
            "Kconfig files)",
        )


def _require_tools() -> None:
    missing = [tool for tool in ("make", "gcc", "flex", "bison", "bc", "pahole", "bpftool") if not shutil.which(tool)]
    if missing:
        raise TestbedError(f"the kernel build needs {', '.join(missing)}, not found", hint=INSTALL_HINT)


def _build(tree: Path, jobs: int, progress: OnProgress, *, deadline: float) -> None:
    """``make bzImage``, with progress from its output; it and its compilers are stopped whatever happens."""
    env = dict(os.environ) | {
        # Reproducible: the same inputs give the same kernel, whoever builds it and when.
        "KBUILD_BUILD_USER": "g5kdeploy",
        "KBUILD_BUILD_HOST": "g5kdeploy",
        "KBUILD_BUILD_TIMESTAMP": "1970-01-01",
    }
    compiled = 0
    progress("building the kernel", 0, EXPECTED_OBJECTS)

    def on_line(line: str) -> None:
        nonlocal compiled
        if _COMPILED.match(line):
            compiled += 1
            progress("building the kernel", min(compiled, EXPECTED_OBJECTS - 1), EXPECTED_OBJECTS)

    stream(
        ["make", "-C", tree, f"-j{jobs}", "bzImage"],
        timeout=_left(deadline),
        what="build the kernel",
        log_path=tree / "build.log",
        on_line=on_line,
        env=env,
    )


def _collect(tree: Path, entry: Path, *, deadline: float) -> Path:
    entry.mkdir()
    shutil.copy2(tree / "arch/x86/boot/bzImage", entry / "bzImage")
    shutil.copy2(tree / ".config", entry / "config")
    # The raw BTF section, what the guest shows as /sys/kernel/btf/vmlinux: 2.5 MB instead of vmlinux's 100 MB.
    run(
        ["objcopy", "-O", "binary", "--only-section=.BTF", tree / "vmlinux", entry / "vmlinux.btf"],
        timeout=_left(deadline, CONFIG_TIMEOUT),
        what="extract the kernel's BTF",
    )
    dump = ["bpftool", "btf", "dump", "file", str(entry / "vmlinux.btf"), "format", "c"]
    (entry / "vmlinux.h").write_text(run(dump, timeout=60, what="generate the kernel's vmlinux.h").stdout)
    kernelrelease = ["make", "-s", "-C", str(tree), "kernelrelease"]
    release = run(kernelrelease, timeout=60, what="read the kernel's release").stdout.strip()
    (entry / "release").write_text(release + "\n")
    return entry


def _left(deadline: float, cap: float | None = None) -> float:
    left = deadline - time.monotonic()
    if left <= 0:
        raise DeadlineExceeded("the kernel build ran out of time")
    return min(left, cap) if cap is not None else left

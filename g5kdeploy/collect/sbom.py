"""The run's SBOMs: what each node booted, as CycloneDX 1.5 JSON in ``sbom/<role-or-node>.cdx.json``.

With nxc the nodes boot a Nix closure, one per role (the deploy plan's ``toplevels``): its SBOM is made on the
frontend that built it, by sbomnix where installed, else from ``nix path-info -r --json`` (every store path a
component: name and version from the path, ``pkg:nix`` purl, the NAR hash). The local and VM testbeds and
Kadeploy boot no closure the agent built: their SBOM lists what the deploy put on each node (the artifacts, with
the plan's sha256) and the kernel the node reported, and its metadata says so.
"""

from __future__ import annotations

import base64
import json
import re
import uuid
from collections.abc import Mapping, Sequence
from dataclasses import dataclass
from pathlib import Path
from typing import Any

from g5kdeploy import __version__
from g5kdeploy.errors import G5kError
from g5kdeploy.files import atomic_write_text
from g5kdeploy.plans import ArtifactsPlan, NxcImagePlan, NxcKexecPlan
from g5kdeploy.remote import SshRunner
from g5kdeploy.results import RunRecord, utc_now
from g5kdeploy.tools.frontend import Frontend
from g5kdeploy.tools.nix import StorePathInfo, closure_sbom, parse_closure_info

SBOM_DIR = "sbom"
SUFFIX = ".cdx.json"
SPEC_VERSION = "1.5"
#: Property naming how the document was made, read back by the report.
TOOL_PROPERTY = "g5kdeploy:sbom:tool"
SCOPE_PROPERTY = "g5kdeploy:sbom:scope"
SBOM_TIMEOUT = 600.0
#: Nix's base-32 alphabet (no e, o, t, u), in which ``sha256:<52 chars>`` NAR hashes are written.
_NIX32 = "0123456789abcdfghijklmnpqrsvwxyz"
_STORE_NAME = re.compile(r"/nix/store/[0-9a-z]{32}-(?P<name>.+)")
#: Where Nix's parseDrvName splits a name from its version: the first dash followed by a non-letter.
_VERSION_START = re.compile(r"-(?=[^A-Za-z])")
#: The ssh_config the nxc deploy wrote for the site's frontend (``NxcMethod.for_context``).
FRONTEND_SSH_CONFIG = "ssh_config.frontend"


@dataclass(frozen=True)
class SbomEntry:
    """What the report says of one SBOM: its file, subject, component count and the tool that made it."""

    path: Path
    subject: str
    components: int
    tool: str


def nix32_to_hex(text: str) -> str:
    """A Nix base-32 digest as hex (Nix writes the bytes' bits least significant first, from the string's end)."""
    size = len(text) * 5 // 8
    value = bytearray(size)
    for n, char in enumerate(reversed(text)):
        digit = _NIX32.index(char)
        bit = n * 5
        i, j = divmod(bit, 8)
        value[i] |= (digit << j) & 0xFF
        if i + 1 < size:
            value[i + 1] |= digit >> (8 - j)
    return value.hex()


def nar_hash_hex(nar_hash: str) -> str | None:
    """The SHA-256 of a ``narHash`` as hex, whichever way Nix wrote it (``sha256:`` nix32 or hex, SRI base64)."""
    if nar_hash.startswith("sha256-"):
        try:
            return base64.b64decode(nar_hash.removeprefix("sha256-"), validate=True).hex()
        except ValueError:
            return None
    digest = nar_hash.removeprefix("sha256:")
    if re.fullmatch(r"[0-9a-f]{64}", digest):
        return digest
    if re.fullmatch(f"[{_NIX32}]{{52}}", digest):
        return nix32_to_hex(digest)
    return None


def name_version(path: str) -> tuple[str, str]:
    """A store path's package name and version, split as Nix's ``parseDrvName`` does (version may be empty)."""
    match = _STORE_NAME.fullmatch(path)
    base = match["name"] if match else Path(path).name
    split = _VERSION_START.search(base)
    return (base[: split.start()], base[split.end() :]) if split else (base, "")


def purl(name: str, version: str) -> str:
    return f"pkg:nix/{name}@{version}" if version else f"pkg:nix/{name}"


def closure_document(infos: Sequence[StorePathInfo], *, subject: str, toplevel: str) -> dict[str, Any]:
    """A CycloneDX 1.5 document of a closure from ``nix path-info -r --json``: a component per store path."""
    components = []
    for info in sorted(infos, key=lambda entry: entry.path):
        name, version = name_version(info.path)
        component: dict[str, Any] = {
            "type": "application" if info.path == toplevel else "library",
            "bom-ref": info.path,
            "name": name,
            "version": version,
            "purl": purl(name, version),
            "properties": [{"name": "nix:store_path", "value": info.path},
                           {"name": "nix:nar_size", "value": str(info.nar_size)}],
        }  # fmt: skip
        digest = nar_hash_hex(info.nar_hash)
        if digest:
            component["hashes"] = [{"alg": "SHA-256", "content": digest}]
        components.append(component)
    known = {info.path for info in infos}
    dependencies = [
        {"ref": info.path, "dependsOn": sorted(ref for ref in info.references if ref in known and ref != info.path)}
        for info in sorted(infos, key=lambda entry: entry.path)
    ]
    name, version = name_version(toplevel)
    root = {"type": "operating-system", "bom-ref": toplevel, "name": name, "version": version}
    return _document(subject, root, components, dependencies, tool="nix path-info",
                     scope=f"the runtime closure of {toplevel}, from nix path-info -r --json")  # fmt: skip


def deployed_document(
    subject: str, *, testbed: str, kernel: str | None, artifacts: Mapping[str, str], kernel_source: str | None = None
) -> dict[str, Any]:
    """A CycloneDX 1.5 document of what a node without a Nix closure ran: its kernel and the deployed artifacts."""
    components: list[dict[str, Any]] = []
    if kernel:
        entry: dict[str, Any] = {"type": "operating-system", "bom-ref": f"kernel:{kernel}", "name": "linux",
                                 "version": kernel}  # fmt: skip
        if kernel_source:
            entry["properties"] = [{"name": "g5kdeploy:kernel_build", "value": kernel_source}]
        components.append(entry)
    for name, digest in sorted(artifacts.items()):
        components.append({"type": "file", "bom-ref": f"artifact:{name}", "name": name,
                           "hashes": [{"alg": "SHA-256", "content": digest}]})  # fmt: skip
    root = {"type": "device", "bom-ref": subject, "name": subject}
    scope = (
        f"no Nix closure on the {testbed} testbed: the deployed artifacts (sha256 from the deploy plan) and the "
        "kernel release the node reported"
    )
    return _document(subject, root, components, [], tool="g5kdeploy", scope=scope)


def _document(
    subject: str,
    root: dict[str, Any],
    components: list[dict[str, Any]],
    dependencies: list[dict[str, Any]],
    *,
    tool: str,
    scope: str,
) -> dict[str, Any]:
    return {
        "bomFormat": "CycloneDX",
        "specVersion": SPEC_VERSION,
        "serialNumber": f"urn:uuid:{uuid.uuid4()}",
        "version": 1,
        "metadata": {
            "timestamp": utc_now(),
            "tools": {"components": [{"type": "application", "name": "g5kdeploy", "version": __version__}]},
            "component": root,
            "properties": [
                {"name": "g5kdeploy:subject", "value": subject},
                {"name": TOOL_PROPERTY, "value": tool},
                {"name": SCOPE_PROPERTY, "value": scope},
            ],
        },
        "components": components,
        "dependencies": dependencies,
    }


def collect_sboms(
    record: RunRecord, run_dir: Path, node_facts: Mapping[str, Mapping[str, Any]]
) -> tuple[list[Path], list[str]]:
    """Write the run's SBOMs, those of Nix closures on the frontend the deploy used (through its ssh_config).
    Returns their paths and warnings: an SBOM that could not be made costs the run none of its data."""
    plan = record.deploy.plan if record.deploy else None
    if not isinstance(plan, NxcKexecPlan | NxcImagePlan):
        return write_sboms(record, run_dir, node_facts, frontend=None)
    config = run_dir / FRONTEND_SSH_CONFIG
    if not config.is_file():
        return [], [f"no SBOM: {config.name}, the deploy's way to the frontend {plan.frontend}, is missing"]
    with SshRunner(config) as runner:
        # Home, where the user's Nix finds its store (nxc's chroot store when /nix is not there).
        frontend = Frontend(runner=runner, host=plan.frontend, directory=".")
        return write_sboms(record, run_dir, node_facts, frontend=frontend)


def write_sboms(
    record: RunRecord,
    run_dir: Path,
    node_facts: Mapping[str, Mapping[str, Any]],
    *,
    frontend: Frontend | None,
) -> tuple[list[Path], list[str]]:
    """Write ``sbom/<role>.cdx.json`` per Nix closure, listed on ``frontend``; else ``sbom/<node>.cdx.json``."""
    plan = record.deploy.plan if record.deploy else None
    out_dir = run_dir / SBOM_DIR
    written: list[Path] = []
    warnings: list[str] = []
    if isinstance(plan, NxcKexecPlan | NxcImagePlan):
        if frontend is None:
            return [], ["no SBOM: the run booted Nix closures but no frontend was given to list them"]
        for role, toplevel in sorted(plan.toplevels.items()):
            try:
                tool, text = closure_sbom(frontend, toplevel, timeout=SBOM_TIMEOUT)
                document = _from_tool(tool, text, subject=role, toplevel=toplevel)
            except G5kError as exc:
                warnings.append(f"no SBOM for role {role} ({toplevel}): {exc}")
                continue
            written.append(_write(out_dir, role, document))
        return written, warnings
    files = plan.files if isinstance(plan, ArtifactsPlan) else {}
    receiving = set(plan.nodes) if isinstance(plan, ArtifactsPlan) else set()
    kernel_source = record.local.kernel_dir if record.local else None
    for node in sorted({node for members in record.roles.values() for node in members}):
        kernel = node_facts.get(node, {}).get("kernel")
        document = deployed_document(
            node,
            testbed=record.testbed,
            kernel=str(kernel) if kernel else None,
            artifacts=files if node in receiving else {},
            kernel_source=kernel_source if record.testbed == "vm" else None,
        )
        written.append(_write(out_dir, node, document))
    return written, warnings


def _from_tool(tool: str, text: str, *, subject: str, toplevel: str) -> dict[str, Any]:
    if tool == "sbomnix":
        try:
            document = json.loads(text)
        except json.JSONDecodeError as exc:
            raise G5kError(f"sbomnix printed invalid JSON ({exc})") from None
        if not isinstance(document, dict) or document.get("bomFormat") != "CycloneDX":
            raise G5kError("sbomnix printed something other than a CycloneDX document")
        metadata = document.setdefault("metadata", {})
        metadata.setdefault("properties", []).extend([
            {"name": "g5kdeploy:subject", "value": subject},
            {"name": TOOL_PROPERTY, "value": "sbomnix"},
            {"name": SCOPE_PROPERTY, "value": f"the runtime closure of {toplevel}, from sbomnix"},
        ])  # fmt: skip
        return document
    return closure_document(parse_closure_info(text), subject=subject, toplevel=toplevel)


def _write(out_dir: Path, subject: str, document: dict[str, Any]) -> Path:
    out_dir.mkdir(exist_ok=True)
    path = out_dir / f"{subject}{SUFFIX}"
    atomic_write_text(path, json.dumps(document, indent=1, sort_keys=True) + "\n")
    return path


def read_sboms(run_dir: Path) -> list[SbomEntry]:
    """The run's SBOMs as the report lists them; an unreadable one shows with 0 components and tool ``?``."""
    entries = []
    for path in sorted((run_dir / SBOM_DIR).glob(f"*{SUFFIX}")):
        try:
            document = json.loads(path.read_text())
            components = len(document.get("components") or [])
            properties = {
                item.get("name"): item.get("value") for item in document.get("metadata", {}).get("properties", [])
            }
        except (OSError, ValueError, AttributeError):
            components, properties = 0, {}
        tool = str(properties.get(TOOL_PROPERTY) or "?")
        entries.append(SbomEntry(path=path, subject=path.name.removesuffix(SUFFIX), components=components, tool=tool))
    return entries

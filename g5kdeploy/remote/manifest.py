"""Per-file sha256 manifests in ``sha256sum`` format, so the node's own ``sha256sum -c`` can check them.

A tree's checksum is the sha256 of its sorted manifest: the same tree gives the same value whichever side
built the manifest.
"""

from __future__ import annotations

import hashlib
from dataclasses import dataclass
from pathlib import Path

from g5kdeploy.files import sha256_file

MANIFEST_NAME = ".g5kdeploy-manifest.sha256"


@dataclass(frozen=True)
class Manifest:
    entries: dict[str, str]  # "./relative/path" -> sha256

    def text(self) -> str:
        return "".join(f"{_escape_line(digest, path)}\n" for path, digest in sorted(self.entries.items()))

    @property
    def sha256(self) -> str:
        return hashlib.sha256(self.text().encode()).hexdigest()


def build(root: Path) -> tuple[Manifest, int]:
    """The manifest of every regular file under ``root`` (symbolic links are not followed), and their size."""
    entries: dict[str, str] = {}
    size = 0
    for path in sorted(root.rglob("*")):
        if path.is_file() and not path.is_symlink() and path.name != MANIFEST_NAME:
            entries["./" + path.relative_to(root).as_posix()] = sha256_file(path)
            size += path.stat().st_size
    return Manifest(entries), size


def parse(text: str) -> Manifest:
    entries: dict[str, str] = {}
    for line in text.splitlines():
        if not line:
            continue
        escaped = line.startswith("\\")
        digest, _, path = line.removeprefix("\\").partition("  ")
        if escaped:
            path = path.replace("\\\\", "\0").replace("\\n", "\n").replace("\0", "\\")
        entries[path] = digest
    return Manifest(entries)


def verify(root: Path, manifest: Manifest) -> tuple[list[str], int]:
    """The paths under ``root`` that are missing or differ from ``manifest``, and the size of the files."""
    bad: list[str] = []
    size = 0
    for relative, digest in manifest.entries.items():
        path = root / relative
        if not path.is_file() or sha256_file(path) != digest:
            bad.append(relative)
        else:
            size += path.stat().st_size
    return bad, size


def _escape_line(digest: str, path: str) -> str:
    # sha256sum's own convention for names holding a backslash or a newline.
    if "\\" in path or "\n" in path:
        return "\\" + digest + "  " + path.replace("\\", "\\\\").replace("\n", "\\n")
    return f"{digest}  {path}"

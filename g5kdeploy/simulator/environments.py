"""A small static list of Kadeploy environments, enough for clients that look one up before deploying."""

from __future__ import annotations

from collections.abc import Mapping
from typing import Any

# (name, version, os description, kernel) of the public x86_64 images most experiments start from.
_IMAGES = (
    ("debian12-min", 2024100117, "Debian 12 (bookworm) minimal", "/vmlinuz"),
    ("debian12-min", 2025020313, "Debian 12 (bookworm) minimal", "/vmlinuz"),
    ("debian12-nfs", 2025020313, "Debian 12 (bookworm) with NFS home and LDAP accounts", "/vmlinuz"),
    ("debian11-min", 2024100117, "Debian 11 (bullseye) minimal", "/vmlinuz"),
    ("ubuntu2404-min", 2025020313, "Ubuntu 24.04 (noble) minimal", "/boot/vmlinuz"),
)
ARCH = "x86_64"


def _document(name: str, version: int, description: str, kernel: str) -> dict[str, Any]:
    family = "ubuntu" if name.startswith("ubuntu") else "debian"
    return {
        "uid": f"{name}_{ARCH}_{version}",
        "name": name,
        "alias": name.removesuffix("-min"),
        "arch": ARCH,
        "version": version,
        "description": description,
        "author": "support-staff@lists.grid5000.fr",
        "visibility": "public",
        "destructive": False,
        "os": "linux",
        "image": {
            "file": f"server:///grid5000/images/{name}-{version}.tar.zst",
            "kind": "tar",
            "compression": "zstd",
        },
        "postinstalls": [
            {
                "archive": f"server:///grid5000/postinstalls/g5k-postinstall-{family}.tgz",
                "compression": "gzip",
                "script": f"g5k-postinstall --net {family} --fstab nfs --restrict-user current",
            }
        ],
        "boot": {"kernel": kernel, "initrd": "/initrd.img", "kernel_params": ""},
        "filesystem": "ext4",
        "partition_type": 131,
        "multipart": False,
        "user": "deploy",
        "type": "environment",
    }


ENVIRONMENTS = tuple(_document(*image) for image in _IMAGES)


def _yes(value: str | None) -> bool:
    return (value or "").strip().lower() in ("yes", "true", "1")


def environments(query: Mapping[str, str]) -> list[dict[str, Any]]:
    """The environments matching `name`, `arch` and `latest_only` (only the newest version of each name)."""
    found = [
        env
        for env in ENVIRONMENTS
        if (not query.get("name") or env["name"] == query["name"])
        and (not query.get("arch") or env["arch"] == query["arch"])
    ]
    if _yes(query.get("latest_only")):
        newest = {env["name"]: env["version"] for env in sorted(found, key=lambda e: e["version"])}
        found = [env for env in found if env["version"] == newest[env["name"]]]
    return sorted(found, key=lambda e: (e["name"], -e["version"]))

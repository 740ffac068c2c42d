"""The Grid'5000 inventory the simulator serves, loaded from the packaged bundle or a directory."""

from __future__ import annotations

import functools
import gzip
import hashlib
import json
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

BUNDLE = Path(__file__).parent / "data" / "reference.json.gz"
SITE_COLLECTIONS = ("servers", "pdus", "network_equipments")
# Grid'5000's IPv6 plan: 2001:660:4406::/48, one /56 per site numbered by its index, and a site's index is
# its global kavlan id minus 9 (rennes: kavlan 16, index 7, `2001:660:4406:07`).
_IPV6_BASE = "2001:660:4406"
_FIRST_GLOBAL_KAVLAN = 10


@dataclass(frozen=True)
class Node:
    """One reservable node with the OAR properties a `properties` filter can test."""

    site: str
    cluster: str
    uid: str
    cores: int
    props: dict[str, str | int] = field(hash=False, compare=False)

    @property
    def fqdn(self) -> str:
        return f"{self.uid}.{self.site}.grid5000.fr"


def _node_number(uid: str) -> tuple[str, int]:
    """Sort key so that gros-2 comes before gros-10, as OAR lists resources."""
    prefix, _, num = uid.rpartition("-")
    return (prefix, int(num)) if num.isdigit() else (uid, 0)


@functools.lru_cache(maxsize=4)
def load_documents(path: Path | None) -> dict[str, dict[str, Any]]:
    """Read the gzip bundle (default) or a directory laid out like it; callers must not mutate the result."""
    if path is None:
        path = BUNDLE
    if path.is_dir():
        return {
            str(f.relative_to(path)): json.loads(f.read_text(encoding="utf-8")) for f in sorted(path.rglob("*.json"))
        }
    with gzip.open(path, "rt", encoding="utf-8") as fh:
        data = json.load(fh)
    if not isinstance(data, dict):
        raise ValueError(f"{path}: expected a JSON object mapping paths to documents")
    return data


def _node_props(site: str, cluster: dict[str, Any], doc: dict[str, Any]) -> dict[str, str | int]:
    uid = doc["uid"]
    arch = doc.get("architecture") or {}
    jobs = doc.get("supported_job_types") or {}
    storage = doc.get("storage_devices") or []
    disktype = "/".join(f"{d.get('interface', '')}/{d.get('storage', '')}" for d in storage[:1] if isinstance(d, dict))
    exotic = bool(doc.get("exotic", cluster.get("exotic", False)))
    sensors = (doc.get("sensors") or {}).get("power") or {}
    fqdn = f"{uid}.{site}.grid5000.fr"
    cores = int(arch.get("nb_cores") or 1)
    processor = doc.get("processor") or {}
    return {
        "cluster": cluster["uid"],
        "host": fqdn,
        "network_address": fqdn,
        "site": site,
        "deploy": "YES" if jobs.get("deploy", True) else "NO",
        "besteffort": "YES" if jobs.get("besteffort", True) else "NO",
        "exotic": "YES" if exotic else "NO",
        "cpuarch": str(arch.get("platform_type", "")),
        "cputype": f"{processor.get('model', '')} {processor.get('version', '')}".strip(),
        "core_count": cores,
        "cpucore": int(cores // max(int(arch.get("nb_procs") or 1), 1)),
        "memnode": int(((doc.get("main_memory") or {}).get("ram_size") or 0) // (1024 * 1024)),
        "gpu_count": len(doc.get("gpu_devices") or {}),
        "nodemodel": str(cluster.get("model", "")),
        "disktype": disktype,
        "maintenance": "NO",
        "wattmeter": "YES" if sensors.get("available") else "NO",
    }


def _with_ipv6(doc: dict[str, Any]) -> dict[str, Any]:
    """The site document with the `ipv6` block real site documents carry (g5k-api's fixtures predate it)."""
    if "ipv6" in doc:
        return doc
    global_ids = [int(k) for k in doc.get("kavlans") or {} if k.isdigit() and int(k) >= _FIRST_GLOBAL_KAVLAN]
    if not global_ids:
        return doc
    index = global_ids[0] - (_FIRST_GLOBAL_KAVLAN - 1)
    ipv6 = {"prefix": f"{_IPV6_BASE}:{index:02x}", "site_global_kavlan": global_ids[0], "site_index": index}
    return {**doc, "ipv6": ipv6}


class Reference:
    """Indexes the reference documents by site, collection and uid, and lists the nodes OAR manages."""

    def __init__(self, documents: dict[str, dict[str, Any]]) -> None:
        self.root: dict[str, Any] = documents.get("grid5000.json", {"type": "grid", "uid": "grid5000"})
        self.sites: dict[str, dict[str, Any]] = {}
        # site -> collection -> uid -> document
        self.collections: dict[str, dict[str, dict[str, dict[str, Any]]]] = {}
        # (site, cluster) -> uid -> node document
        self.node_docs: dict[tuple[str, str], dict[str, dict[str, Any]]] = {}
        for key in sorted(documents):
            parts = key.split("/")
            doc = documents[key]
            if len(parts) == 3 and parts[0] == "sites":
                self.sites[parts[1]] = _with_ipv6(doc)
            elif len(parts) == 4 and parts[0] == "sites" and parts[2] in SITE_COLLECTIONS:
                by_coll = self.collections.setdefault(parts[1], {})
                by_coll.setdefault(parts[2], {})[doc.get("uid", parts[3][:-5])] = doc
            elif len(parts) == 5 and parts[2] == "clusters" and parts[4] == f"{parts[3]}.json":
                clusters = self.collections.setdefault(parts[1], {}).setdefault("clusters", {})
                clusters[doc.get("uid", parts[3])] = doc
            elif len(parts) == 6 and parts[2] == "clusters" and parts[4] == "nodes":
                self.node_docs.setdefault((parts[1], parts[3]), {})[doc.get("uid", parts[5][:-5])] = doc
        self.nodes: dict[str, list[Node]] = {}
        for site in sorted(self.sites):
            found: list[Node] = []
            for cuid, cluster in sorted(self.collection(site, "clusters").items()):
                for doc in self.node_docs.get((site, cuid), {}).values():
                    props = _node_props(site, cluster, doc)
                    found.append(Node(site, cuid, doc["uid"], int(props["core_count"]), props))
            found.sort(key=lambda n: (n.cluster, _node_number(n.uid)))
            self.nodes[site] = found
        # Stands in for the reference-repository commit the real API reports as `version`.
        self.version = hashlib.sha1("\n".join(sorted(documents)).encode()).hexdigest()
        self.by_fqdn: dict[str, Node] = {n.fqdn: n for nodes in self.nodes.values() for n in nodes}

    def collection(self, site: str, name: str) -> dict[str, dict[str, Any]]:
        return self.collections.get(site, {}).get(name, {})

    def cluster_nodes(self, site: str, cluster: str) -> dict[str, dict[str, Any]]:
        docs = self.node_docs.get((site, cluster), {})
        return dict(sorted(docs.items(), key=lambda kv: _node_number(kv[0])))

    @functools.cached_property
    def tree(self) -> dict[str, Any]:
        """The whole inventory as one document, the shape g5k-api's `?deep=1` gives the repository's tree.

        A folder holding a document and sub-folders is that document with its sub-folders as keys; the
        folders of leaf documents (nodes, servers, pdus, network equipments) are lists; other folders are
        dicts keyed by uid.
        """
        sites: dict[str, Any] = {}
        for uid, doc in sorted(self.sites.items()):
            entry: dict[str, Any] = dict(doc)
            clusters: dict[str, Any] = {}
            for cuid, cdoc in sorted(self.collection(uid, "clusters").items()):
                nodes = list(self.cluster_nodes(uid, cuid).values())
                clusters[cuid] = {**cdoc, "nodes": nodes} if nodes else dict(cdoc)
            if clusters:
                entry["clusters"] = clusters
            for name in SITE_COLLECTIONS:
                docs = self.collection(uid, name)
                if docs:
                    entry[name] = [docs[k] for k in sorted(docs)]
            sites[uid] = entry
        return {**self.root, "sites": sites}

    def subtree(self, parts: list[str]) -> dict[str, Any] | list[dict[str, Any]] | None:
        """The part of `tree` a path names (`["sites", "nancy", "clusters"]`), None when there is none."""
        node: Any = self.tree
        for part in parts:
            if isinstance(node, dict) and isinstance(node.get(part), dict | list):
                node = node[part]
            elif isinstance(node, list):
                node = next((item for item in node if item.get("uid") == part), None)
                if node is None:
                    return None
            else:
                return None
        return node if isinstance(node, dict | list) else None


def load_reference(path: Path | None) -> Reference:
    return Reference(load_documents(path))

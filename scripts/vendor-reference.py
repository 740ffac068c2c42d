"""Pack the Grid'5000 reference tree (../shared/g5k-reference) into the simulator's data bundle.

The bundle maps each file's path below the tree (``sites/nancy/clusters/gros/nodes/gros-1.json``) to its
parsed JSON. Run it again when the reference data changes:

    python scripts/vendor-reference.py ../shared/g5k-reference
"""

import gzip
import json
import sys
from pathlib import Path

OUT = Path(__file__).resolve().parent.parent / "g5kdeploy" / "simulator" / "data" / "reference.json.gz"


def _load(path: Path) -> object:
    text = path.read_text().strip()
    # The reference repository stores a few aliases as git symlinks, which a checkout without symlink
    # support turns into a file holding the target's name.
    if text.endswith(".json") and "\n" not in text and not text.startswith("{"):
        return _load(path.parent / text)
    return json.loads(text)


def main(source: Path) -> None:
    documents = {str(path.relative_to(source)): _load(path) for path in sorted(source.rglob("*.json"))}
    payload = json.dumps(documents, sort_keys=True, separators=(",", ":")).encode()
    # mtime=0 keeps the bundle byte-identical across runs.
    OUT.write_bytes(gzip.compress(payload, compresslevel=9, mtime=0))
    print(f"{len(documents)} documents -> {OUT} ({OUT.stat().st_size} bytes)")


if __name__ == "__main__":
    main(Path(sys.argv[1] if len(sys.argv) > 1 else "../shared/g5k-reference"))

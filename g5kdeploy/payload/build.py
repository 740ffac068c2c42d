"""Compile ``statx-bench.c`` once per source and compiler, and reuse the binary afterwards."""

from __future__ import annotations

import hashlib
import os
import shutil
import tempfile
from pathlib import Path

from g5kdeploy.errors import TestbedError, ToolError
from g5kdeploy.process import run

SOURCE = Path(__file__).with_name("statx-bench.c")
BINARY_NAME = "statx-bench"
CFLAGS = ("-O2", "-Wall", "-Wextra", "-pthread")
INSTALL_HINT = "install a C compiler and the C library headers: apt-get install gcc libc6-dev"
COMPILE_TIMEOUT_S = 120


def _build_key(source: bytes, cc: str) -> str:
    # The flags are part of the key so that changing them here rebuilds every cached binary.
    digest = hashlib.sha256(source)
    digest.update(b"\0" + cc.encode() + b"\0" + " ".join(CFLAGS).encode())
    return digest.hexdigest()


def build_statx_bench(out_dir: Path, *, cc: str = "cc") -> Path:
    """Compile ``statx-bench`` into ``out_dir`` and return its path; a no-op when it is already up to date.

    The sidecar ``statx-bench.sha256`` records the hash of the source, compiler name and flags the binary was
    built from. The cache is checked before the compiler is looked up, so a node whose compiler was removed
    still uses the binary it built earlier.
    """
    source = SOURCE.read_bytes()
    key = _build_key(source, cc)
    out_dir = Path(out_dir)
    binary = out_dir / BINARY_NAME
    stamp = out_dir / f"{BINARY_NAME}.sha256"
    try:
        if binary.is_file() and os.access(binary, os.X_OK) and stamp.read_text().strip() == key:
            return binary
    except OSError:
        pass  # no stamp (or unreadable): rebuild

    compiler = shutil.which(cc)
    if compiler is None:
        raise TestbedError(f"cannot build {BINARY_NAME}: C compiler {cc!r} not found", hint=INSTALL_HINT)
    out_dir.mkdir(parents=True, exist_ok=True)
    # Compile to a temporary name and rename: a concurrent builder or reader never sees a half-written binary.
    fd, tmp_name = tempfile.mkstemp(prefix=f".{BINARY_NAME}-", dir=out_dir)
    os.close(fd)
    tmp = Path(tmp_name)
    try:
        try:
            run([compiler, *CFLAGS, "-o", tmp, SOURCE], timeout=COMPILE_TIMEOUT_S, what=f"build {BINARY_NAME}")
        except ToolError as exc:
            raise TestbedError(str(exc), hint=INSTALL_HINT) from None
        tmp.chmod(0o755)
        os.replace(tmp, binary)
    finally:
        tmp.unlink(missing_ok=True)
    # The stamp goes last: a crash in between leaves a binary without a matching stamp, which rebuilds.
    stamp_tmp = stamp.with_name(f".{stamp.name}.{os.getpid()}")
    stamp_tmp.write_text(key + "\n")
    os.replace(stamp_tmp, stamp)
    return binary

from __future__ import annotations

import pytest

from tests.collect.runs import make_run

PNG_SIGNATURE = b"\x89PNG\r\n\x1a\n"


@pytest.fixture
def run_dir(tmp_path):
    """2 nodes x threads [1, 2] x eBPF [off, on] x 2 repetitions, every pair finished."""
    return make_run(tmp_path)


def assert_png(path, *, min_bytes: int = 5_000) -> None:
    data = path.read_bytes()
    assert data.startswith(PNG_SIGNATURE), f"{path} is not a PNG"
    assert len(data) > min_bytes, f"{path} is only {len(data)} bytes"

"""The layering in pyproject.toml is enforced: lint-imports passes on the tree and fails on an upward import."""

from __future__ import annotations

import os
import shutil
import subprocess
import sys
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parents[2]
LINT_IMPORTS = Path(sys.executable).with_name("lint-imports")


def _lint(tree: Path) -> subprocess.CompletedProcess[str]:
    env = {**os.environ, "PYTHONPATH": str(tree)}  # the copy, ahead of the installed package
    return subprocess.run(
        [str(LINT_IMPORTS), "--config", str(tree / "pyproject.toml"), "--no-cache"],
        cwd=tree, env=env, capture_output=True, text=True, timeout=120, check=False,
    )  # fmt: skip


@pytest.fixture
def tree(tmp_path: Path) -> Path:
    shutil.copytree(ROOT / "g5kdeploy", tmp_path / "g5kdeploy", ignore=shutil.ignore_patterns("__pycache__"))
    shutil.copy(ROOT / "pyproject.toml", tmp_path)
    return tmp_path


@pytest.mark.parametrize(
    ("module", "line", "contract"),
    [
        ("results.py", "import g5kdeploy.pipeline", "CLI -> nightly -> pipeline"),
        ("tools/prometheus.py", "import g5kdeploy.collect.phase", "CLI -> nightly -> pipeline"),
        ("collect/report.py", "import g5kdeploy.bench.phase", "CLI -> nightly -> pipeline"),
        ("simulator/model.py", "import g5kdeploy.results", "imports nothing of the agent"),
        ("testbeds/local.py", "import g5kdeploy.simulator.model", "agent imports nothing of the simulator"),
        ("bench/phase.py", "import fabric", "SSH libraries only under remote/"),
    ],
)
def test_a_forbidden_import_breaks_the_contract_it_belongs_to(tree, module, line, contract):
    assert _lint(tree).returncode == 0
    path = tree / "g5kdeploy" / module
    path.write_text(path.read_text() + f"\n{line}  # noqa\n")
    broken = _lint(tree)
    assert broken.returncode == 1, broken.stdout
    assert contract in broken.stdout and "BROKEN" in broken.stdout


def test_the_readmes_layout_names_every_folder_of_the_package_and_no_other():
    text = (ROOT / "README.md").read_text()
    block = text[text.index("## Layout") :].split("```")[1]
    named = {line.split()[0].rstrip("/") for line in block.splitlines() if line.startswith("g5kdeploy/")}
    folders = {
        f"g5kdeploy/{path.name}"
        for path in (ROOT / "g5kdeploy").iterdir()
        if path.is_dir() and (path / "__init__.py").exists()
    }
    assert folders <= named and {name for name in named if not name.endswith(".py")} == folders

"""Shared fixtures: the repository root, throwaway copies of it, and golden-file updating."""

from __future__ import annotations

import shutil
from pathlib import Path

import pytest

ROOT = Path(__file__).resolve().parent.parent


def pytest_addoption(parser: pytest.Parser) -> None:
    parser.addoption(
        "--update-golden", action="store_true", help="rewrite tests/golden/ from the current output"
    )


@pytest.fixture
def update_golden(request: pytest.FixtureRequest) -> bool:
    return bool(request.config.getoption("--update-golden"))


def copy_repo(dest: Path) -> Path:
    """A copy of the fleet repository's inputs (clusters, templates, patches, generated)."""
    for name in ("clusters", "templates", "patches", "generated", "schemas", "secrets"):
        src = ROOT / name
        if src.exists():
            shutil.copytree(src, dest / name)
    for name in ("tasks.py", ".age-recipients"):
        if (ROOT / name).exists():
            shutil.copy(ROOT / name, dest / name)
    return dest


@pytest.fixture
def fleet_repo(tmp_path: Path) -> Path:
    return copy_repo(tmp_path / "fleet")

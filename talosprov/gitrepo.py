"""Git operations on the fleet repository (through tools/run, like every external program)."""

from __future__ import annotations

import logging
from pathlib import Path

from .errors import CommandFailed, TalosProvError
from .tools.run import Program, resolve, run

log = logging.getLogger(__name__)


def _git() -> Program:
    return resolve("git")


def _run(repo_root: Path, *args: str, ok: tuple[int, ...] = (0,)) -> str:
    return run(_git(), ["-C", str(repo_root), *args], ok_codes=ok).stdout


def is_repo(root: Path) -> bool:
    try:
        _run(root, "rev-parse", "--git-dir")
    except (CommandFailed, TalosProvError):
        return False
    return True


def head(root: Path) -> str | None:
    try:
        return _run(root, "rev-parse", "--verify", "-q", "HEAD").strip() or None
    except CommandFailed:
        return None


def dirty(root: Path, paths: list[str]) -> list[str]:
    out = _run(root, "status", "--porcelain", "--untracked-files=all", "--", *paths)
    return [line[3:] for line in out.splitlines() if line.strip()]


def staged(root: Path) -> list[str]:
    return [p for p in _run(root, "diff", "--cached", "--name-only").splitlines() if p]


def ref(root: Path, name: str) -> str | None:
    try:
        return _run(root, "rev-parse", "--verify", "-q", name).strip() or None
    except CommandFailed:
        return None


def update_ref(root: Path, name: str, commit: str) -> None:
    _run(root, "update-ref", name, commit)


def commit_paths(root: Path, paths: list[str], message: str) -> str:
    _run(root, "add", "--all", "--", *paths)
    _run(root, "commit", "--quiet", "-m", message, "--", *paths)
    return head(root) or ""

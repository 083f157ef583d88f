"""Developer tasks: lint, types and tests."""

from __future__ import annotations

from invoke import task


@task(help={"fix": "let ruff fix what it can"})
def lint(c, fix=False):
    """Run ruff over the repository."""
    c.run(f"ruff check {'--fix ' if fix else ''}.", pty=False)
    c.run("ruff format --check .", pty=False) if not fix else c.run("ruff format .", pty=False)


@task
def types(c):
    """Run mypy over talosprov and talosim."""
    c.run("mypy talosprov talosim", pty=False)


@task(help={"args": "extra pytest arguments, e.g. '-k render -x'"})
def test(c, args=""):
    """Run the test suite (unit, emulated end to end)."""
    c.run(f"python -m pytest {args}", pty=False)


@task(pre=[lint, types, test])
def check(c):
    """Lint, type-check and test: what CI runs."""


TASKS = [lint, types, test, check]

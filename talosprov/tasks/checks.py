"""Developer tasks: lint, types and tests."""

from __future__ import annotations

from invoke import Context, task


@task(help={"fix": "let ruff fix what it can"})
def lint(c: Context, fix: bool = False) -> None:
    """Run ruff over the repository."""
    c.run(f"ruff check {'--fix ' if fix else ''}.", pty=False)
    c.run("ruff format --check .", pty=False) if not fix else c.run("ruff format .", pty=False)


@task
def types(c: Context) -> None:
    """Run mypy over talosprov and talosim."""
    c.run("mypy talosprov talosim", pty=False)


@task(help={"args": "extra pytest arguments, e.g. '-k render -x'"})
def test(c: Context, args: str = "") -> None:
    """Run the test suite (unit, emulated end to end)."""
    c.run(f"python -m pytest {args}", pty=False)


@task(pre=[lint, types, test])
def check(c: Context) -> None:
    """Lint, type-check and test: what CI runs."""


TASKS = [lint, types, test, check]

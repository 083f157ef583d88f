"""What every task shares: the repository, logging, and the one error exit path."""

from __future__ import annotations

import functools
import logging
import os
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

from invoke import Exit
from rich.console import Console
from rich.logging import RichHandler

from ..errors import TalosProvError
from ..model import Repo

F = TypeVar("F", bound=Callable[..., Any])
console = Console(stderr=True, highlight=False, soft_wrap=True)


class _PhaseHandler(RichHandler):
    """`--> Phase` headers, indented details, warnings and errors in colour."""

    def emit(self, record: logging.LogRecord) -> None:
        msg = record.getMessage()
        if getattr(record, "phase", False):
            console.print(f"[bold cyan]-->[/] [bold]{msg}[/]")
        elif record.levelno >= logging.ERROR:
            console.print(f"    [red]{msg}[/]")
        elif record.levelno >= logging.WARNING:
            console.print(f"    [yellow]warning:[/] {msg}")
        elif record.levelno <= logging.DEBUG:
            console.print("    " + msg, style="dim", markup=False)
        else:
            console.print("    " + msg, markup=False)


def setup_logging(verbose: bool) -> None:
    root = logging.getLogger()
    for h in list(root.handlers):
        root.removeHandler(h)
    handler = _PhaseHandler(console=console, show_time=False, show_path=False)
    root.addHandler(handler)
    root.setLevel(logging.WARNING)
    logging.getLogger("talosprov").setLevel(logging.DEBUG if verbose else logging.INFO)
    logging.getLogger("sh").setLevel(logging.WARNING)


def repo() -> Repo:
    return Repo(Path(os.environ.get("TALOSPROV_REPO", os.getcwd())))


def handled(fn: F) -> F:
    """Run a task body with logging set up; talosprov errors become one message and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        setup_logging(bool(kwargs.get("verbose")))
        try:
            return fn(*args, **kwargs)
        except TalosProvError as e:
            code = getattr(e, "exit_code_for_task", 1)
            raise Exit(f"error: {e}", code=code) from None
        except KeyboardInterrupt:
            raise Exit(
                "interrupted: nothing half-written was left behind; re-run to resume", 130
            ) from None

    return wrapper  # type: ignore[return-value]


def out(text: str = "") -> None:
    """Data for the operator (tables, diffs, JSON) goes to stdout."""
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    sys.stdout.flush()


VERBOSE_HELP = "log every command run (argv) and more detail"
DRY_RUN_HELP = "print the plan and the exact commands; change nothing"
CLUSTER_HELP = "cluster alias (v3) or full name (talos-cloudkoffer-v3)"

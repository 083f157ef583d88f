"""What every task shares: the repository, logging, and the one error exit path."""

from __future__ import annotations

import functools
import logging
import os
import signal
import sys
from collections.abc import Callable
from pathlib import Path
from typing import Any, TypeVar

import invoke
from invoke import Exit
from rich.console import Console
from rich.logging import RichHandler

from .. import toolbox
from ..errors import TalosProvError, UnknownClusterError
from ..model import Cluster, Repo
from ..tools.run import Program
from ..workflows import emulator as emu_wf
from ..workflows import runtime

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


# One meaning per short flag across every task (invoke would otherwise hand out the first free
# letter of each name: `-v` became --version on upgrade, `-h` --check on generate). Every other
# flag is long only.
SHORT_FLAGS = {"verbose": "v", "dry_run": "n", "cluster": "c"}


class PolicyTask(invoke.Task):
    """An invoke task whose only short flags are SHORT_FLAGS."""

    def arg_opts(self, name: str, default: Any, taken_names: set[str]) -> dict[str, Any]:
        opts: dict[str, Any] = super().arg_opts(name, default, taken_names)
        short = SHORT_FLAGS.get(name)
        if short and short not in taken_names:
            opts["names"] = [*opts["names"], short]
        return opts


def task(*args: Any, **kwargs: Any) -> Any:
    """`invoke.task` with the short-flag policy."""
    kwargs.setdefault("klass", PolicyTask)
    kwargs["auto_shortflags"] = False
    return invoke.task(*args, **kwargs)


def with_flag_policy(t: invoke.Task) -> PolicyTask:
    """The same task under the short-flag policy (for tasks made with plain `invoke.task`)."""
    if isinstance(t, PolicyTask):
        return t
    new = PolicyTask.__new__(PolicyTask)
    new.__dict__.update(t.__dict__)
    new.auto_shortflags = False
    return new


def repo() -> Repo:
    return Repo(Path(os.environ.get("TALOSPROV_REPO", os.getcwd())))


def cluster_aliases(r: Repo) -> str:
    """`v1, v2, v3, demo`: reference clusters first, the emulated demo last (as in the README)."""
    return ", ".join(sorted(r.cluster_files(), key=lambda a: (a == "demo", a)))


def need_cluster(r: Repo, cluster: str | None) -> Cluster:
    """The cluster named by --cluster, or an error listing the ones there are."""
    if not cluster:
        raise UnknownClusterError(f"--cluster is required (one of: {cluster_aliases(r)})")
    return r.find(cluster)


def talosctl_for(r: Repo, cl: Cluster) -> Program:
    """The cluster's talosctl; on talosim, an early error naming the state folder when it holds
    none of the cluster's nodes."""
    prog = toolbox.talosctl(r, cl)
    emu_wf.check_fleet(prog, cl)
    return prog


def handled(fn: F) -> F:
    """Run a task body with logging set up; talosprov errors become one message and exit 1."""

    @functools.wraps(fn)
    def wrapper(*args: Any, **kwargs: Any) -> Any:
        setup_logging(bool(kwargs.get("verbose")))
        try:
            with runtime.task_run(repo()):  # sweeps what killed runs left; SIGTERM = Ctrl-C
                return fn(*args, **kwargs)
        except TalosProvError as e:
            code = getattr(e, "exit_code_for_task", 1)
            raise Exit(f"error: {e}", code=code) from None
        except KeyboardInterrupt as e:
            what = "terminated" if getattr(e, "signum", None) == signal.SIGTERM else "interrupted"
            raise Exit(
                f"{what}: no plaintext secret and nothing half-written was left behind; "
                "re-run to resume",
                getattr(e, "exit_code", 130),
            ) from None

    return wrapper  # type: ignore[return-value]


def out(text: str = "") -> None:
    """Data for the operator (tables, diffs, JSON) goes to stdout."""
    sys.stdout.write(text if text.endswith("\n") or not text else text + "\n")
    sys.stdout.flush()


VERBOSE_HELP = "log every command run (argv) and more detail"
DRY_RUN_HELP = "print the plan and the exact commands; change nothing"
CLUSTER_HELP = "cluster alias (v3) or full name (talos-cloudkoffer-v3)"
NODE_HELP = "only this node (IP or hostname)"

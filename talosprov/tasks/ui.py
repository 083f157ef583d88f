"""How tasks show progress and results: a live per-node table on a terminal, lines otherwise."""

from __future__ import annotations

import json
import threading
from collections.abc import Iterator
from contextlib import contextmanager
from typing import TYPE_CHECKING, Any

from ..model import Cluster
from ..workflows.runtime import LogReporter
from .common import console, out

if TYPE_CHECKING:
    from rich.live import Live
    from rich.table import Table


class LiveReporter:
    """Per-node status in a live table (only when stderr is a terminal)."""

    def __init__(self) -> None:
        self.rows: dict[str, str] = {}
        self.lock = threading.Lock()
        self.live: Live | None = None

    def _table(self) -> Table:
        from rich.table import Table

        t = Table(box=None, show_header=True, header_style="bold")
        t.add_column("NODE")
        t.add_column("STATUS")
        for ip, st in self.rows.items():
            t.add_row(ip, st)
        return t

    def node(self, ip: str, status: str) -> None:
        with self.lock:
            self.rows[ip] = status
            if self.live:
                self.live.update(self._table())


@contextmanager
def reporter() -> Iterator[Any]:
    if not console.is_terminal:
        yield LogReporter()
        return
    from rich.live import Live  # only on a terminal, as the table: not in scripts, CI or tests

    r = LiveReporter()
    with Live(r._table(), console=console, refresh_per_second=4, transient=True) as live:
        r.live = live
        yield r


def table(
    rows: list[dict[str, str]], columns: list[tuple[str, str]], as_json: bool = False
) -> None:
    """Data on stdout: a plain aligned table, or JSON."""
    if as_json:
        out(json.dumps(rows, indent=2))
        return
    widths = [max(len(h), *(len(str(r.get(k, ""))) for r in rows)) for k, h in columns]
    lines = ["   ".join(h.ljust(w) for (_, h), w in zip(columns, widths, strict=True)).rstrip()]
    for r in rows:
        lines.append(
            "   ".join(
                str(r.get(k, "")).ljust(w) for (k, _), w in zip(columns, widths, strict=True)
            ).rstrip()
        )
    out("\n".join(lines))


def print_plan(lines: list[str], commands: list[str]) -> None:
    """A dry run's output on stdout: the plan, then the exact commands."""
    out("\n".join(["plan:", *lines, "commands:", *("  " + cmd for cmd in commands)]))


def install_report(cluster: Cluster, outcome: Any, dry_run: bool) -> None:
    """What `invoke install` (and the demo) shows when it is done."""
    if dry_run:
        print_plan(outcome.plan.describe(), outcome.commands)
        return
    if outcome.plan.noop:
        console.print(f"[green]{cluster.name}: nothing to do: {outcome.plan.noop}[/]")
    columns = [
        ("ip", "IP"),
        ("name", "NODE"),
        ("role", "ROLE"),
        ("kubelet", "KUBERNETES"),
        ("os", "OS"),
        ("ready", "READY"),
    ]
    table(outcome.summary, columns)
    ref = (
        f" (refs/applied/{cluster.name} = {outcome.applied_ref[:12]})"
        if outcome.applied_ref
        else ""
    )
    console.print(f"[green]{cluster.name} is installed and healthy[/]{ref}")

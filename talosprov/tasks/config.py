"""Tasks that turn cluster files into patches and schemas."""

from __future__ import annotations

import json

from invoke import Context, Exit, task

from .. import render as render_mod
from ..model import cluster_json_schema
from ..selection import clusters
from ..yamlio import atomic_write
from .common import CLUSTER_HELP, VERBOSE_HELP, handled, out, repo


@task(
    help={
        "cluster": CLUSTER_HELP + "; all clusters when omitted",
        "check": "change nothing; exit 1 with a unified diff when patches/ is stale",
        "verbose": VERBOSE_HELP,
    }
)
@handled
def render(
    c: Context, cluster: str | None = None, check: bool = False, verbose: bool = False
) -> None:
    """Render templates/ into patches/<cluster>/ for one or all clusters."""
    r = repo()
    stale = []
    for cl in clusters(r, cluster):
        if check:
            diff = render_mod.check(r, cl)
            if diff:
                out(diff)
                stale.append(cl.name)
            continue
        res = render_mod.render(r, cl)
        state = f"{len(res.written)} written, {len(res.removed)} removed, {res.unchanged} unchanged"
        out(f"{cl.name}: {state}")
    if stale:
        raise Exit(f"patches are stale for {', '.join(stale)}: run `invoke render`", code=1)


@task(help={"check": "exit 1 when schemas/cluster.schema.json is stale", "verbose": VERBOSE_HELP})
@handled
def schema(c: Context, check: bool = False, verbose: bool = False) -> None:
    """Export the cluster file JSON schema to schemas/cluster.schema.json (for editors)."""
    path = repo().root / "schemas" / "cluster.schema.json"
    text = json.dumps(cluster_json_schema(), indent=2, sort_keys=True) + "\n"
    if check:
        if not path.exists() or path.read_text() != text:
            raise Exit("schemas/cluster.schema.json is stale: run `invoke schema`", code=1)
        return
    atomic_write(path, text)
    out(f"wrote {path.relative_to(repo().root)}")


TASKS = [render, schema]

"""Tasks for pull-request review: what each node undergoes, and schema checks of generated/."""

from __future__ import annotations

from pathlib import Path

from invoke import Context, Exit, task

from ..selection import clusters
from ..workflows import plan as plan_wf
from ..workflows import validate as validate_wf
from .common import CLUSTER_HELP, VERBOSE_HELP, handled, out, repo


@task(
    help={
        "cluster": CLUSTER_HELP + "; every cluster when omitted",
        "base": "git revision to compare with (default: merge base with origin/main, else HEAD)",
        "format": "text, markdown (a pull-request comment) or json",
        "output": "also write the plan to this file path (atomically)",
        "verbose": VERBOSE_HELP,
    }
)
@handled
def plan(
    c: Context,
    cluster: str | None = None,
    base: str | None = None,
    format: str = "text",
    output: str | None = None,
    verbose: bool = False,
) -> None:
    """Show what each node undergoes if this change merges; exit 2 when anything changes."""
    plan_wf.check_format(format)
    p = plan_wf.compare(repo(), cluster=cluster, base=base)
    text = plan_wf.render(p, format)
    if output:
        plan_wf.write_output(Path(output), text)
    out(text)
    if p.changed:
        raise Exit(code=2)


@task(help={"cluster": CLUSTER_HELP + "; every cluster when omitted", "verbose": VERBOSE_HELP})
@handled
def validate_schemas(c: Context, cluster: str | None = None, verbose: bool = False) -> None:
    """Check generated/ configs against the JSON schema of each cluster's Talos version."""
    r = repo()
    bad = 0
    for cl in clusters(r, cluster):
        count, problems = validate_wf.validate_cluster(r, cl)
        for prob in problems:
            out(str(prob))
        bad += len(problems)
        out(f"{cl.name}: {count} file(s) {'invalid' if problems else 'valid'} (Talos {cl.talos})")
    if bad:
        raise Exit(f"{bad} schema problem(s) in generated/: fix the patches, then regenerate", 1)


TASKS = [plan, validate_schemas]

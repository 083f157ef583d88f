"""Tasks that upgrade Talos (one node or a rolling cluster) and Kubernetes."""

from __future__ import annotations

from invoke import Context, Exit, task

from .. import toolbox
from ..workflows import upgrade as up_wf
from .common import CLUSTER_HELP, DRY_RUN_HELP, VERBOSE_HELP, console, handled, out, repo
from .ui import print_plan, reporter


@task(
    iterable=["gate"],
    help={
        "cluster": CLUSTER_HELP + " (the whole cluster, rolling)",
        "node": "upgrade only this node (its cluster is found from clusters/)",
        "version": "target Talos version (default: the cluster file's)",
        "max_unavailable": "workers upgraded at once (default: cluster file, else 1)",
        "gate": "shell command run after each node/batch; must exit 0 to go on (repeatable)",
        "gate_timeout": "seconds each gate may take (default: cluster file, else 300)",
        "preserve": "pass --preserve to talosctl upgrade",
        "stage": "stage the upgrade and reboot (for nodes with busy files)",
        "timeout": "seconds one node's upgrade may take (default 1800)",
        "health_timeout": "seconds for each health gate (default 300)",
        "dry_run": DRY_RUN_HELP,
        "verbose": VERBOSE_HELP,
    },
)
@handled
def upgrade(
    c: Context,
    cluster: str | None = None,
    node: str | None = None,
    version: str | None = None,
    max_unavailable: int = 0,
    gate: list[str] | None = None,
    gate_timeout: int = 0,
    preserve: bool = False,
    stage: bool = False,
    timeout: int = 1800,
    health_timeout: int = 300,
    dry_run: bool = False,
    verbose: bool = False,
) -> None:
    """Upgrade Talos on one node or roll a whole cluster, gated and resumable."""
    r = repo()
    if not cluster and not node:
        raise Exit("name --cluster (rolling upgrade) or --node (one node)")
    cl = up_wf.cluster_for_node(r, node, cluster) if node else r.find(cluster or "")
    only = [cl.node(node).ip] if node else None
    kubectl = toolbox.kubectl_optional()
    with reporter() as rep:
        opts = up_wf.Options(
            dry_run=dry_run,
            max_unavailable=max_unavailable or cl.upgrade.max_unavailable,
            gates=list(gate or []),
            gate_timeout=gate_timeout or cl.upgrade.gate_timeout,
            preserve=preserve,
            stage=stage,
            timeout=timeout,
            health_timeout=health_timeout,
            reporter=rep,
        )
        outcome = up_wf.upgrade(
            r, cl, toolbox.talosctl(r, cl), kubectl, opts, target=version, only=only
        )
    if dry_run:
        print_plan(outcome.plan.describe(), outcome.commands)
        return
    if outcome.plan.noop:
        console.print(f"[green]{cl.name}: nothing to do: {outcome.plan.noop}[/]")
        return
    console.print(f"[green]{cl.name}: upgraded to Talos {outcome.plan.target}[/]")


@task(
    help={
        "cluster": CLUSTER_HELP,
        "to": "target Kubernetes version (default: cluster file)",
        "dry_run": DRY_RUN_HELP + " (runs talosctl upgrade-k8s --dry-run)",
        "verbose": VERBOSE_HELP,
    }
)
@handled
def upgrade_k8s(
    c: Context, cluster: str, to: str | None = None, dry_run: bool = False, verbose: bool = False
) -> None:
    """Upgrade Kubernetes: dry run first, then the real run, then check every kubelet."""
    r = repo()
    cl = r.find(cluster)
    res = up_wf.upgrade_k8s(
        r, cl, toolbox.talosctl(r, cl), toolbox.kubectl(), to=to, dry_run=dry_run
    )
    if res.noop:
        console.print(f"[green]{cl.name}: nothing to do: {res.noop}[/]")
    elif dry_run:
        out(
            "\n".join(
                [
                    f"plan: Kubernetes {res.current} → {res.target}",
                    "commands:",
                    *("  " + cmd for cmd in res.commands),
                ]
            )
        )
    else:
        console.print(
            f"[green]{cl.name}: Kubernetes {res.current} → {res.target}, every "
            "kubelet and control-plane pod verified[/]"
        )


TASKS = [upgrade, upgrade_k8s]

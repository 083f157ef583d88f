"""Tasks that upgrade Talos (one node or a rolling cluster) and Kubernetes."""

from __future__ import annotations

from invoke import Context

from .. import toolbox
from ..errors import UnknownClusterError
from ..workflows import upgrade as up_wf
from ..workflows import upgrade_path as path_wf
from .common import (
    CLUSTER_HELP,
    DRY_RUN_HELP,
    VERBOSE_HELP,
    cluster_aliases,
    console,
    handled,
    need_cluster,
    out,
    repo,
    talosctl_for,
    task,
)
from .ui import print_plan, reporter


@task(
    iterable=["gate"],
    help={
        "cluster": CLUSTER_HELP + " (the whole cluster, rolling)",
        "node": "IP or HOSTNAME: upgrade only this node (its cluster is found from clusters/)",
        "version": "target Talos version (default: the cluster file's)",
        "max_unavailable": "workers upgraded at once (default: cluster file, else 1)",
        "gate": "STRING, repeatable: shell command run after each node/batch; must exit 0 to go on",
        "gate_timeout": "seconds each gate may take (default: cluster file, else 300)",
        "preserve": "pass --preserve to talosctl upgrade",
        "stage": "stage the upgrade and reboot (for nodes with busy files)",
        "timeout": "seconds one node's upgrade may take (default 1800)",
        "health_timeout": "seconds for each health gate (default 300)",
        "via": "VERSIONS, comma-separated: the intermediate Talos versions to visit instead of "
        "the newest patch of every minor (checked against each installer's floor)",
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
    via: str | None = None,
    dry_run: bool = False,
    verbose: bool = False,
) -> None:
    """Upgrade one node, or a whole cluster through every Talos minor with Kubernetes hops
    between; gated and resumable."""
    r = repo()
    if not cluster and not node:
        raise UnknownClusterError(
            f"name --cluster (rolling upgrade; one of: {cluster_aliases(r)}) or --node (one node)"
        )
    cl = up_wf.cluster_for_node(r, node, cluster) if node else need_cluster(r, cluster)
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
        if not node:
            # a whole cluster walks the path: Talos minors in turn, Kubernetes hops between
            res = path_wf.upgrade_path(
                r, cl, talosctl_for(r, cl), kubectl, opts, target=version, via=via_list(via)
            )
            path_report(cl.name, res, dry_run)
            return
        dirty = path_wf.uncommitted(r, cl)
        if dirty:
            console.print(f"[yellow]warning: {dirty}[/]")
        for ip in only or []:  # one node moves without Kubernetes hops: each must fit
            path_wf.check_node_hops(r, cl, talosctl_for(r, cl), kubectl, ip, version)
        outcome = up_wf.upgrade(
            r, cl, talosctl_for(r, cl), kubectl, opts, target=version, only=only
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
    c: Context,
    cluster: str | None = None,
    to: str | None = None,
    dry_run: bool = False,
    verbose: bool = False,
) -> None:
    """Upgrade Kubernetes minor by minor: each hop dry run, run, every kubelet checked."""
    r = repo()
    cl = need_cluster(r, cluster)
    # one Kubernetes minor at a time, each hop verified (workflows/upgrade_path.py walk_k8s)
    for res in path_wf.walk_k8s(
        r, cl, talosctl_for(r, cl), toolbox.kubectl(), to=to, dry_run=dry_run
    ):
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


def via_list(text: str | None) -> list[str]:
    return [v.strip() for v in (text or "").split(",") if v.strip()]


def path_report(name: str, res: path_wf.PathOutcome, dry_run: bool) -> None:
    if dry_run:
        print_plan(res.path.describe(), res.commands)
    elif res.path.noop:
        console.print(f"[green]{name}: nothing to do: {res.path.noop}[/]")
    else:
        console.print(
            f"[green]{name}: upgraded to Talos {res.path.target}, Kubernetes "
            f"{res.path.kubernetes_target}[/]"
        )


TASKS = [upgrade, upgrade_k8s]

"""Tasks for the emulated demo: the fleet of talosim nodes and the README's one-command demo."""

from __future__ import annotations

from invoke import Context

from .. import progress, toolbox
from ..workflows import emulator as emu_wf
from ..workflows import install as install_wf
from ..workflows import status as status_wf
from .cluster import STATUS_COLUMNS, verify
from .common import CLUSTER_HELP, DRY_RUN_HELP, VERBOSE_HELP, console, handled, out, repo, task
from .ui import install_report, reporter, table


@task(
    help={
        "cluster": CLUSTER_HELP + " (default demo)",
        "destroy": "remove every emulated node and the emulator's state folder",
        "node_seconds": "FLOAT: seconds each emulated node spends installing (reboot/boot: "
        "half; default 2.0)",
        "dry_run": DRY_RUN_HELP,
        "verbose": VERBOSE_HELP,
    }
)
@handled
def fleet(
    c: Context,
    cluster: str = "demo",
    destroy: bool = False,
    node_seconds: float = 2.0,
    dry_run: bool = False,
    verbose: bool = False,
) -> None:
    """Create (or destroy) the emulated machines of a cluster on talosim."""
    r = repo()
    if destroy:
        folder, nodes = emu_wf.destroy(r, dry_run=dry_run)
        verb = "would remove" if dry_run else "removed"
        if not nodes and not folder.exists():
            out(f"no emulated fleet in {folder}: nothing to remove")
            return
        out(f"{verb} {len(nodes)} emulated node(s) and their state ({folder})")
        for ip in nodes:
            out(f"  {ip}")
        return
    cl = r.find(cluster)
    if dry_run:
        have = set(emu_wf.existing_nodes(r))
        missing = [n.ip for n in cl.nodes if n.ip not in have]
        out(
            f"{cl.name}: would create {len(missing)} emulated node(s) in "
            f"{emu_wf.state_dir(r)}: {', '.join(missing)}"
            if missing
            else f"{cl.name}: all {len(cl.nodes)} emulated nodes exist; nothing to do"
        )
        return
    created = emu_wf.ensure_fleet(r, cl, node_seconds)
    out(f"{cl.name}: {'created' if created else 'reusing'} {len(cl.nodes)} emulated nodes")


@task(
    help={
        "node_seconds": "FLOAT: seconds each emulated node spends installing (default 2.0)",
        "verbose": VERBOSE_HELP,
    }
)
@handled
def demo(c: Context, node_seconds: float = 2.0, verbose: bool = False) -> None:
    """Install the emulated demo cluster on talosim, show its status and verify it."""
    r = repo()
    cl = r.find("demo")
    progress.phase("Emulated fleet for talos-demo (talosim, no hardware)")
    emu_wf.ensure_fleet(r, cl, node_seconds)
    prog = toolbox.talosctl(r, cl)
    with reporter() as rep:
        outcome = install_wf.install(
            r, cl, prog, toolbox.kubectl(), install_wf.Options(reporter=rep)
        )
    install_report(cl, outcome, dry_run=False)
    progress.phase("Status")
    rows = status_wf.status(r, cl, prog, toolbox.kubectl())
    table([s.as_dict() for s in rows], STATUS_COLUMNS)
    progress.phase("Verify (tests/cluster: nodes, versions, etcd members and their errors)")
    verify(c, cluster="demo", verbose=verbose)
    kc = r.root / ".state" / cl.name / "kubeconfig"
    console.print(
        f"\n[green]talos-demo is up.[/] Try: kubectl --kubeconfig {r.rel(kc)} get nodes "
        "-o wide\nIts emulated API server stops after 10 idle minutes; any task on the cluster "
        "(invoke status --cluster demo) starts it again.\nRemove it with: invoke fleet --destroy"
    )


TASKS = [fleet, demo]

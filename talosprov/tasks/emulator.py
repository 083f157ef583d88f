"""Tasks for the emulated demo: the fleet of talosim nodes and the README's one-command demo."""

from __future__ import annotations

from invoke import Context, task

from .. import progress, toolbox
from ..workflows import emulator as emu_wf
from ..workflows import install as install_wf
from ..workflows import status as status_wf
from .cluster import STATUS_COLUMNS, verify
from .common import CLUSTER_HELP, VERBOSE_HELP, console, handled, out, repo
from .ui import install_report, reporter, table


@task(
    help={
        "cluster": CLUSTER_HELP + " (default demo)",
        "destroy": "remove the emulated nodes and their state",
        "node_seconds": "seconds each emulated node spends installing (reboot/boot: half)",
        "verbose": VERBOSE_HELP,
    }
)
@handled
def fleet(
    c: Context,
    cluster: str = "demo",
    destroy: bool = False,
    node_seconds: float = 2.0,
    verbose: bool = False,
) -> None:
    """Create (or destroy) the emulated machines of a cluster on talosim."""
    r = repo()
    cl = r.find(cluster)
    if destroy:
        emu_wf.destroy(r)
        out("emulated fleet destroyed")
        return
    created = emu_wf.ensure_fleet(r, cl, node_seconds)
    out(f"{cl.name}: {'created' if created else 'reusing'} {len(cl.nodes)} emulated nodes")


@task(
    help={
        "node_seconds": "seconds each emulated node spends installing (default 2)",
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
    progress.phase("Verify (tests/cluster, pytest-testinfra)")
    verify(c, cluster="demo", verbose=verbose)
    kc = r.root / ".state" / cl.name / "kubeconfig"
    console.print(
        f"\n[green]talos-demo is up.[/] Try: kubectl --kubeconfig {r.rel(kc)} get nodes "
        "-o wide\nIts emulated API server stops after 10 idle minutes; any task on the cluster "
        "(invoke status --cluster demo) starts it again.\nRemove it with: invoke fleet --destroy"
    )


TASKS = [fleet, demo]

"""Day-2 tasks: etcd backup and restore, adding/removing/resetting nodes, certificate expiry."""

from __future__ import annotations

import datetime as dt
from pathlib import Path

from invoke import Collection, Context, Exit

from .. import toolbox
from ..workflows import certs as certs_wf
from ..workflows import etcd as etcd_wf
from ..workflows import nodes as nodes_wf
from ..workflows.upgrade import cluster_for_node
from .common import CLUSTER_HELP, DRY_RUN_HELP, VERBOSE_HELP, console, handled, out, repo, task
from .ui import print_plan, reporter, table


@task(
    help={
        "cluster": CLUSTER_HELP,
        "keep": "backups kept, newest first (default 10)",
        "dry_run": DRY_RUN_HELP,
        "verbose": VERBOSE_HELP,
    },
)
@handled
def backup(
    c: Context, cluster: str, keep: int = 10, dry_run: bool = False, verbose: bool = False
) -> None:
    """Snapshot etcd into .state/<cluster>/backups/<UTC time>.snapshot (keeps the newest --keep)."""
    r = repo()
    cl = r.find(cluster)
    res = etcd_wf.backup(r, cl, toolbox.talosctl(r, cl), keep=keep, dry_run=dry_run)
    if dry_run or res.path is None:
        print_plan(res.plan.describe(cl), res.commands)
        return
    out(f"{r.rel(res.path)} {res.size} bytes")


@task(
    help={
        "cluster": CLUSTER_HELP,
        "from": "PATH of the etcd snapshot to restore (e.g. .state/<cluster>/backups/...)",
        "yes_wipe_etcd": "confirm: wipe etcd on every control plane, then recover",
        "timeout": "SECONDS each wait may take (default 900)",
        "dry_run": DRY_RUN_HELP,
        "verbose": VERBOSE_HELP,
    },
)
@handled
def restore(
    c: Context,
    cluster: str,
    from_: str,
    yes_wipe_etcd: bool = False,
    timeout: int = 900,
    dry_run: bool = False,
    verbose: bool = False,
) -> None:
    """Disaster recovery: wipe every control plane's etcd, recover from a snapshot on one."""
    r = repo()
    cl = r.find(cluster)
    res = None
    try:
        with reporter() as rep:
            res = etcd_wf.restore(
                r, cl, toolbox.talosctl(r, cl), toolbox.kubectl_optional(), Path(from_),
                confirmed=yes_wipe_etcd, dry_run=dry_run, timeout=timeout, reporter=rep,
            )  # fmt: skip
    except etcd_wf.ConfirmationRequired as e:
        raise Exit(f"refused: {e}", code=1) from None
    if dry_run or res.plan.noop:
        print_plan(res.plan.describe(), res.commands)
        return
    console.print(f"[green]{cl.name}: etcd restored from {from_}; every node Ready[/]")


def _node_task(action: str, node: str, cluster: str | None, confirmed: bool, dry_run: bool) -> None:
    """The shared body of node.add, node.remove and reset."""
    r = repo()
    cl = cluster_for_node(r, node, cluster) if not cluster else r.find(cluster)
    target = cl.node(node)
    try:
        with reporter() as rep:
            res = nodes_wf.node_action(
                r, cl, toolbox.talosctl(r, cl), toolbox.kubectl_optional(), action, target,
                confirmed=confirmed, dry_run=dry_run, reporter=rep,
            )  # fmt: skip
    except etcd_wf.ConfirmationRequired as e:
        raise Exit(f"refused: {e}", code=1) from None
    if dry_run or res.plan.noop:
        print_plan(res.plan.describe(), res.commands)
        return
    console.print(f"[green]{cl.name}: {action} {target.ip} ({target.hostname}) done[/]")
    for line in res.plan.after:
        out(line)


NODE_HELP = "IP or hostname of the node (as in the cluster file)"


@task(
    name="add",
    help={
        "cluster": CLUSTER_HELP,
        "node": NODE_HELP,
        "dry_run": DRY_RUN_HELP,
        "verbose": VERBOSE_HELP,
    },
)
@handled
def node_add(
    c: Context, node: str, cluster: str | None = None, dry_run: bool = False, verbose: bool = False
) -> None:
    """Install one new node (in maintenance mode, already in the cluster file and generated)."""
    _node_task("add", node, cluster, True, dry_run)


@task(
    name="remove",
    help={
        "cluster": CLUSTER_HELP,
        "node": NODE_HELP,
        "yes": "confirm: drain, leave etcd, reset the node (it powers off)",
        "dry_run": DRY_RUN_HELP,
        "verbose": VERBOSE_HELP,
    },
)
@handled
def node_remove(
    c: Context,
    node: str,
    cluster: str | None = None,
    yes: bool = False,
    dry_run: bool = False,
    verbose: bool = False,
) -> None:
    """Remove a node: cordon, drain, leave etcd, reset, delete its Kubernetes Node."""
    _node_task("remove", node, cluster, yes, dry_run)


@task(
    name="reset",
    help={
        "cluster": CLUSTER_HELP,
        "node": NODE_HELP,
        "yes_wipe": "confirm: wipe the node back to maintenance mode",
        "dry_run": DRY_RUN_HELP,
        "verbose": VERBOSE_HELP,
    },
)
@handled
def reset(
    c: Context,
    node: str,
    cluster: str | None = None,
    yes_wipe: bool = False,
    dry_run: bool = False,
    verbose: bool = False,
) -> None:
    """Wipe one node back to maintenance mode (refuses an etcd member: use node.remove)."""
    _node_task("reset", node, cluster, yes_wipe, dry_run)


CERT_COLUMNS = [
    ("name", "CERTIFICATE"),
    ("expires", "EXPIRES"),
    ("days_left", "DAYS LEFT"),
    ("status", "STATUS"),
    ("source", "FROM"),
]


@task(
    help={
        "cluster": CLUSTER_HELP,
        "warn_days": "exit 1 when a certificate expires within this many days (default 30)",
        "at": "DATE (YYYY-MM-DD, UTC) to check against instead of now, e.g. before a holiday",
        "renew": "write a new talosconfig and kubeconfig (atomic, 0600, merged into ~/)",
        "json": "print JSON instead of a table",
        "dry_run": DRY_RUN_HELP + " (with --renew)",
        "verbose": VERBOSE_HELP,
    },
)
@handled
def certs(
    c: Context,
    cluster: str,
    warn_days: int = 30,
    at: str | None = None,
    renew: bool = False,
    json: bool = False,
    dry_run: bool = False,
    verbose: bool = False,
) -> None:
    """Expiry of the client certificates and CAs; exit 1 when one expires within --warn-days."""
    r = repo()
    cl = r.find(cluster)
    if renew:
        res = certs_wf.renew(r, cl, toolbox.talosctl(r, cl), dry_run=dry_run)
        if dry_run:
            print_plan(["new talosconfig from the bundle", "new kubeconfig"], res.commands)
            return
        console.print(
            f"[green]{cl.name}: renewed {r.rel(res.talosconfig)}, {r.rel(res.kubeconfig)}[/]"
        )
    when = _date(at)
    found, notes = certs_wf.observe(r, cl)
    rows = certs_wf.report(found, when, warn_days)
    table([row.as_dict() for row in rows], CERT_COLUMNS, as_json=json)
    for n in notes:
        console.print(f"[yellow]note:[/] {n}")
    bad = [row for row in rows if row.status != "ok"]
    if bad:
        raise Exit(
            f"{len(bad)} certificate(s) expire within {warn_days} days: "
            + ", ".join(b.name for b in bad),
            code=1,
        )


def _date(at: str | None) -> dt.datetime:
    if not at:
        return dt.datetime.now(dt.UTC)
    try:
        return dt.datetime.strptime(at, "%Y-%m-%d").replace(tzinfo=dt.UTC)
    except ValueError:
        raise Exit(f"--at {at!r}: expected a date YYYY-MM-DD") from None


node = Collection("node", node_add, node_remove)
TASKS = [backup, restore, reset, certs]

"""Tasks that act on live clusters: install, apply, status, diff, verify and the single steps."""

from __future__ import annotations

import os
import subprocess
import sys
from pathlib import Path

from invoke import Context, Exit

from .. import localconfig, toolbox
from ..tools.run import run
from ..tools.talosctl import Talosctl
from ..workflows import status as status_wf
from .common import (
    CLUSTER_HELP,
    DRY_RUN_HELP,
    NODE_HELP,
    VERBOSE_HELP,
    console,
    handled,
    need_cluster,
    out,
    repo,
    talosctl_for,
    task,
)
from .ui import install_report, print_plan, reporter, table

# The install and apply workflows (and the Jinja rendering under them) are imported by the tasks
# that use them: `status`, `diff` and `health` do without (~0.1 s of CPU per run).

STATUS_COLUMNS = [
    ("ip", "IP"),
    ("hostname", "HOSTNAME"),
    ("role", "ROLE"),
    ("stage", "STAGE"),
    ("talos", "TALOS"),
    ("kubernetes", "KUBERNETES"),
    ("ready", "READY"),
    ("in_sync", "IN SYNC"),
]


@task(
    help={
        "cluster": CLUSTER_HELP,
        "dry_run": DRY_RUN_HELP,
        "parallel": "nodes handled at once (default 5)",
        "wait_timeout": "seconds to wait for nodes to answer / reach running (default 900)",
        "health_timeout": "seconds for talosctl health (default 600)",
        "verbose": VERBOSE_HELP,
        "command_timeout": "seconds one talosctl call may take (default 120)",
    }
)
@handled
def install(
    c: Context,
    cluster: str | None = None,
    dry_run: bool = False,
    parallel: int = 5,
    wait_timeout: int = 900,
    health_timeout: int = 600,
    command_timeout: int = 120,
    verbose: bool = False,
) -> None:
    """Install a cluster from nodes in maintenance mode to verified Kubernetes (safe to re-run)."""
    from ..workflows import install as install_wf

    r = repo()
    cl = need_cluster(r, cluster)
    prog = talosctl_for(r, cl)
    kubectl = None if dry_run else toolbox.kubectl()
    with reporter() as rep:
        opts = install_wf.Options(
            dry_run=dry_run,
            parallel=parallel,
            wait_timeout=wait_timeout,
            health_timeout=health_timeout,
            command_timeout=command_timeout,
            reporter=rep,
        )
        outcome = install_wf.install(r, cl, prog, kubectl, opts)
    install_report(cl, outcome, dry_run)


@task(
    help={
        "cluster": CLUSTER_HELP,
        "node": NODE_HELP,
        "mode": "auto, no-reboot, reboot, staged or try (talosctl apply-config --mode)",
        "dry_run": DRY_RUN_HELP + " (prints each node's redacted config diff)",
        "verbose": VERBOSE_HELP,
    }
)
@handled
def apply(
    c: Context,
    cluster: str | None = None,
    node: str | None = None,
    mode: str = "auto",
    dry_run: bool = False,
    verbose: bool = False,
) -> None:
    """Apply the current generated configs to running nodes, only where they differ."""
    from ..workflows import apply as apply_wf

    r = repo()
    cl = need_cluster(r, cluster)
    results = apply_wf.apply(r, cl, talosctl_for(r, cl), node=node, mode=mode, dry_run=dry_run)
    for res in results:
        out(f"--- {res.ip}: {res.action}")
        if res.diff:
            out(res.diff)


@task(
    help={"cluster": CLUSTER_HELP, "json": "print JSON instead of a table", "verbose": VERBOSE_HELP}
)
@handled
def status(
    c: Context, cluster: str | None = None, json: bool = False, verbose: bool = False
) -> None:
    """One row per node: stage, versions, readiness, in sync; exit 2 unhealthy, 3 unreachable."""
    r = repo()
    cl = need_cluster(r, cluster)
    kubectl = toolbox.kubectl_optional()
    rows = status_wf.status(r, cl, talosctl_for(r, cl), kubectl)
    table([s.as_dict() for s in rows], STATUS_COLUMNS, as_json=json)
    bad = status_wf.verdict(rows)
    if bad:
        raise Exit(f"{cl.name}: {bad[1]}", code=bad[0])


@task(
    help={
        "cluster": CLUSTER_HELP,
        "node": NODE_HELP,
        "verbose": VERBOSE_HELP,
    }
)
@handled
def diff(
    c: Context, cluster: str | None = None, node: str | None = None, verbose: bool = False
) -> None:
    """Live machine configs vs generated/ (both redacted); exit 2 when they differ."""
    r = repo()
    cl = need_cluster(r, cluster)
    nodes = [cl.node(node)] if node else cl.nodes
    diffs = status_wf.diff(r, cl, talosctl_for(r, cl), nodes)
    for d in diffs.values():
        if d:
            out(d)
    differ = [ip for ip, d in diffs.items() if d]
    if differ:
        raise Exit(f"{len(differ)} node(s) differ from generated/: {', '.join(differ)}", code=2)
    console.print(f"[green]{cl.name}: every live config matches generated/[/]")


@task(help={"cluster": CLUSTER_HELP, "dry_run": DRY_RUN_HELP, "verbose": VERBOSE_HELP})
@handled
def bootstrap(
    c: Context, cluster: str | None = None, dry_run: bool = False, verbose: bool = False
) -> None:
    """Bootstrap etcd on the first control plane (AlreadyExists counts as done)."""
    from ..workflows import install as install_wf

    r = repo()
    cl = need_cluster(r, cluster)
    prog = talosctl_for(r, cl)
    inst = install_wf.Installer(r, cl, prog, install_wf.Options(dry_run=dry_run))
    ip = cl.controlplanes[0].ip
    if dry_run:
        print_plan(
            [f"bootstrap etcd on {ip} (once; AlreadyExists counts as done)"],
            [prog.display(inst.tc.bootstrap(ip))],
        )
        return
    inst.bootstrap(ip)


@task(help={"cluster": CLUSTER_HELP, "timeout": "seconds (default 600)", "verbose": VERBOSE_HELP})
@handled
def health(
    c: Context, cluster: str | None = None, timeout: int = 600, verbose: bool = False
) -> None:
    """Run talosctl health against the cluster with its explicit node lists."""
    r = repo()
    cl = need_cluster(r, cluster)
    tc = Talosctl(localconfig.talosconfig_path(r, cl))
    res = run(
        talosctl_for(r, cl),
        tc.health(
            cl.controlplanes[0].ip,
            [n.ip for n in cl.controlplanes],
            [n.ip for n in cl.workers],
            timeout,
        ),
        timeout=timeout + 60,
    )
    console.print(res.stderr.rstrip(), markup=False, highlight=False)


@task(help={"cluster": CLUSTER_HELP, "dry_run": DRY_RUN_HELP, "verbose": VERBOSE_HELP})
@handled
def kubeconfig(
    c: Context, cluster: str | None = None, dry_run: bool = False, verbose: bool = False
) -> None:
    """Fetch the admin kubeconfig to .state/<cluster>/ and make it current in ~/.kube/config."""
    from ..workflows import install as install_wf

    r = repo()
    cl = need_cluster(r, cluster)
    prog = talosctl_for(r, cl)
    inst = install_wf.Installer(r, cl, prog, install_wf.Options(dry_run=dry_run))
    ip, path = cl.controlplanes[0].ip, localconfig.kubeconfig_path(r, cl)
    if dry_run:
        print_plan(
            [
                f"fetch the admin kubeconfig from {ip} to {r.rel(path)}",
                f"merge it into {localconfig.operator_kubeconfig()} as context "
                f"admin@{cl.name} and make that context current",
            ],
            [prog.display(inst.tc.kubeconfig(ip, path))],
        )
        return
    inst.kubeconfig(ip)
    out(str(path))


@task(help={"cluster": CLUSTER_HELP, "verbose": VERBOSE_HELP})
@handled
def verify(c: Context, cluster: str | None = None, verbose: bool = False) -> None:
    """Check a live cluster with the pytest suite in tests/cluster/ (marker `cluster`)."""
    r = repo()
    cl = need_cluster(r, cluster)
    env = dict(os.environ, TALOSPROV_CLUSTER=cl.name, TALOSPROV_REPO=str(r.root))
    # The fleet repository may carry its own suite; otherwise the one beside talosprov is used.
    candidates = [
        r.root / "tests" / "cluster",
        Path(__file__).resolve().parents[2] / "tests" / "cluster",
    ]
    suite = next((p for p in candidates if p.is_dir()), None)
    if suite is None:
        raise Exit("no tests/cluster/ suite found in the fleet repository or beside talosprov")
    env["PYTHONPATH"] = os.pathsep.join(
        [str(suite.parents[1]), *filter(None, [os.environ.get("PYTHONPATH")])]
    )
    rc = subprocess.call(
        [
            sys.executable,
            "-m",
            "pytest",
            str(suite),
            "-o",
            "addopts=",  # the suite's own options only: no workers, no marker filter of the repo
            "-m",
            "cluster",
            "-q",
            "-p",
            "no:cacheprovider",
            "--no-header",
        ],
        env=env,
        cwd=r.root,
    )
    if rc:
        raise Exit(f"{cl.name}: verification failed", code=rc)


TASKS = [install, apply, status, diff, bootstrap, health, kubeconfig, verify]

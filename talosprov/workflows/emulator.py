"""The emulated fleet behind an emulated cluster (talosim), kept in <repo>/.talosim/."""

from __future__ import annotations

import ipaddress
import logging
import os
import sys
from pathlib import Path

from ..errors import WorkflowError
from ..model import Cluster, Repo
from ..tools.run import Program, run

log = logging.getLogger(__name__)


def state_dir(repo: Repo) -> Path:
    """The folder talosim keeps its nodes in: $TALOSIM_STATE, else <repo>/.talosim/ (the same
    rule as talosctl's resolution, so `fleet` creates the nodes that install then talks to)."""
    explicit = os.environ.get("TALOSIM_STATE")
    return Path(explicit).resolve() if explicit else repo.root / ".talosim"


def _talosim(repo: Repo) -> Program:
    return Program(
        "talosim",
        (sys.executable, "-m", "talosim"),
        "talosim",
        (("TALOSIM_STATE", str(state_dir(repo))),),
    )


def ensure_fleet(repo: Repo, cluster: Cluster, node_seconds: float) -> bool:
    """Create the cluster's nodes in maintenance mode unless they exist; True if created."""
    state = state_dir(repo) / "nodes"
    if all((state / f"{n.ip}.json").exists() for n in cluster.nodes):
        return False
    missing = [n.ip for n in cluster.nodes if not (state / f"{n.ip}.json").exists()]
    run(
        _talosim(repo),
        [
            "fleet",
            "create",
            "--nodes",
            ",".join(missing),
            "--controlplanes",
            ",".join(n.ip for n in cluster.controlplanes),
            "--disk",
            f"{cluster.install.disk}:500GB",
            "--talos-version",
            cluster.talos_version,
            "--install-seconds",
            str(node_seconds),
            "--reboot-seconds",
            str(node_seconds / 2),
            "--boot-seconds",
            str(node_seconds / 2),
            "--upgrade-seconds",
            str(node_seconds / 2),
        ],
    )
    log.info("created %d emulated node(s): %s", len(missing), ", ".join(missing))
    return True


def _ip_key(ip: str) -> tuple[int, int | str]:
    try:
        return (0, int(ipaddress.ip_address(ip)))
    except ValueError:
        return (1, ip)


def existing_nodes(repo: Repo) -> list[str]:
    """The emulated nodes in the state folder, addresses in numeric order."""
    d = state_dir(repo) / "nodes"
    return sorted((p.stem for p in d.glob("*.json")) if d.is_dir() else [], key=_ip_key)


def destroy(repo: Repo, *, dry_run: bool = False) -> tuple[Path, list[str]]:
    """Remove every emulated node and the state folder; returns (folder, nodes removed)."""
    folder, nodes = state_dir(repo), existing_nodes(repo)
    if not dry_run and folder.exists():
        run(_talosim(repo), ["fleet", "destroy"])
    return folder, nodes


def check_fleet(prog: Program, cluster: Cluster) -> None:
    """Fail fast, naming the state folder, when talosim plays talosctl but has none of the
    cluster's nodes (otherwise every call would just say "connection refused")."""
    state = prog.emulator_state
    if state is None:
        return
    if any((state / "nodes" / f"{n.ip}.json").exists() for n in cluster.nodes):
        return
    alias = "--cluster " + cluster.name
    raise WorkflowError(
        f"talosim has no emulated nodes of {cluster.name}: looked in {state} "
        "(TALOSIM_STATE, default <repo>/.talosim). Create them with `invoke fleet "
        f"{alias}`, or with `.venv/bin/talosim fleet create --nodes ... --controlplanes ...` "
        "using the same TALOSIM_STATE"
    )

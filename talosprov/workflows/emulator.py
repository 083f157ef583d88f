"""The emulated fleet behind an emulated cluster (talosim), kept in <repo>/.talosim/."""

from __future__ import annotations

import logging
import sys

from ..model import Cluster, Repo
from ..tools.run import Program, run

log = logging.getLogger(__name__)


def _talosim(repo: Repo) -> Program:
    return Program(
        "talosim",
        (sys.executable, "-m", "talosim"),
        "talosim",
        (("TALOSIM_STATE", str(repo.root / ".talosim")),),
    )


def ensure_fleet(repo: Repo, cluster: Cluster, node_seconds: float) -> bool:
    """Create the cluster's nodes in maintenance mode unless they exist; True if created."""
    state = repo.root / ".talosim" / "nodes"
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


def destroy(repo: Repo) -> None:
    run(_talosim(repo), ["fleet", "destroy"])

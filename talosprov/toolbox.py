"""Which talosctl and kubectl a cluster gets."""

from __future__ import annotations

from .errors import TalosProvError
from .model import Cluster, Repo
from .tools.run import Program, resolve


def talosctl(repo: Repo, cluster: Cluster) -> Program:
    """$TALOSCTL, else talosim for an emulated cluster, else talosctl on PATH."""
    return resolve("talosctl", emulated=cluster.emulated, emulator_state=repo.root / ".talosim")


def kubectl() -> Program:
    return resolve("kubectl")


def kubectl_optional() -> Program | None:
    """kubectl when it is installed; read-only views and gates work without it (with a note)."""
    try:
        return resolve("kubectl")
    except TalosProvError:
        return None

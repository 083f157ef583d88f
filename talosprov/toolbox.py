"""Which talosctl and kubectl a cluster gets."""

from __future__ import annotations

from .model import Cluster, Repo
from .tools.run import Program, resolve


def emulator_state(repo: Repo) -> object:
    return repo.root / ".talosim"


def talosctl(repo: Repo, cluster: Cluster) -> Program:
    """$TALOSCTL, else talosim for an emulated cluster, else talosctl on PATH."""
    return resolve("talosctl", emulated=cluster.emulated, emulator_state=repo.root / ".talosim")


def kubectl() -> Program:
    return resolve("kubectl")

"""Which talosctl and kubectl a cluster gets."""

from __future__ import annotations

import functools

from .errors import TalosProvError, ToolMissing
from .model import Cluster, Repo
from .tools.run import Program, resolve, run
from .versions import Version


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


@functools.lru_cache(maxsize=32)
def client_tag(prog: Program) -> tuple[str, str]:
    """(tag, whole answer) of `<prog> version --client --short`, asked once per program and
    task (a failure is not remembered): the preflight, the generate record and every hop of an
    upgrade path want it. The tag is the first word starting with "v", "" when there is none."""
    out = run(prog, ["version", "--client", "--short"], timeout=30).stdout
    tag = next((w for line in out.splitlines() for w in line.split() if w.startswith("v")), "")
    return tag, out


def check_talosctl_version(prog: Program, cluster: Cluster) -> str:
    """Preflight: talosctl must not be older than the cluster's Talos minor; returns its tag."""
    tag, out = client_tag(prog)
    try:
        client = Version.parse(tag)
    except ValueError:
        raise ToolMissing(
            f"cannot tell the version of {prog.name} ({prog.source}) from "
            f"`talosctl version --client --short`: {out.strip()[:200]}"
        ) from None
    if (client.major, client.minor) < (cluster.talos.major, cluster.talos.minor):
        raise ToolMissing(
            f"{prog.name} {client} ({prog.source}) is older than {cluster.name}'s Talos "
            f"{cluster.talos}: install talosctl {cluster.talos.major}.{cluster.talos.minor} or "
            "newer (https://www.talos.dev/latest/talos-guides/install/talosctl/)"
        )
    return client.v()

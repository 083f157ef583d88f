"""Read-only views of a live cluster: per-node status and live-vs-generated config diffs."""

from __future__ import annotations

import datetime as dt
import logging
from dataclasses import asdict, dataclass
from typing import Any

from .. import docdiff, localconfig, secrets, yamlio
from ..errors import CommandFailed, TalosProvError
from ..model import Cluster, Node, Repo
from ..redact import bundle_values, redacted_config
from ..tools.kubectl import Kubectl, NodeInfo, parse_nodes
from ..tools.run import Program, run
from ..tools.talosctl import (
    Talosctl,
    parse_machineconfig,
    parse_server_version,
)
from . import certs as certs_wf
from .runtime import ask_many, lock_state, parallel, probe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class NodeStatus:
    ip: str
    hostname: str
    role: str
    stage: str
    talos: str
    kubernetes: str
    ready: str
    in_sync: str

    def as_dict(self) -> dict[str, str]:
        return asdict(self)


def _kube_nodes(repo: Repo, cluster: Cluster, kubectl: Program | None) -> dict[str, NodeInfo]:
    kc = localconfig.kubeconfig_path(repo, cluster)
    if kubectl is None or not kc.exists():
        return {}
    try:
        return {
            n.ip: n for n in parse_nodes(run(kubectl, Kubectl(kc).get_nodes(), timeout=30).stdout)
        }
    except CommandFailed as e:
        log.warning("kubectl could not list nodes: %s", e.output.strip().splitlines()[-1:])
        return {}


def _bundle_values(repo: Repo, cluster: Cluster) -> dict[str, str] | None:
    try:
        return bundle_values(yamlio.load(secrets.decrypt(repo, cluster)))
    except TalosProvError as e:
        log.warning("config sync not checked: %s", e)
        return None


def _version(prog: Program, tc: Talosctl, ip: str) -> str:
    try:
        return parse_server_version(run(prog, tc.version(ip), timeout=20, node=ip).stdout).get(
            ip, "-"
        )
    except CommandFailed:
        return "?"


def status(
    repo: Repo, cluster: Cluster, prog: Program, kubectl: Program | None, workers: int = 10
) -> list[NodeStatus]:
    tc = Talosctl(localconfig.talosconfig_path(repo, cluster))
    values = _bundle_values(repo, cluster)
    lock_note = lock_state(repo, cluster)
    if lock_note:
        log.warning("%s: %s", cluster.name, lock_note)

    # Round trips: one machinestatus and one version call for all configured nodes through the
    # control planes; only the nodes missing from that answer are probed one by one.
    known, tags, live = ask_many(
        prog,
        tc,
        [n.ip for n in cluster.nodes],
        [n.ip for n in cluster.controlplanes],
        configs=values is not None,
    )

    def one(node: Node) -> tuple[Node, str, str, str]:
        if node.ip in known:
            mode, stage = "configured", known[node.ip].stage
        else:
            p = probe(prog, tc, node.ip)
            mode, stage = p.mode, p.status.stage if p.status else p.mode
        talos, sync = "-", "-"
        if mode == "configured":
            talos = tags.get(node.ip) or _version(prog, tc, node.ip)
            if values is not None:
                d = node_diff(repo, cluster, prog, tc, node, values, live.get(node.ip))
                sync = "yes" if d == "" else "no"
        elif mode == "maintenance":
            sync = "no"
        return node, stage, talos, sync

    talos_side = parallel(one, cluster.nodes, workers)
    # Kubernetes second: the nodes answer first (and an emulated API server is up by then)
    kube = _kube_nodes(repo, cluster, kubectl)
    soonest = certs_wf.nearest(repo, cluster, dt.datetime.now(dt.UTC))
    log.info("%s: nearest certificate expiry: %s (invoke certs)", cluster.name, soonest)
    out = []
    for node, stage, talos, sync in talos_side:
        kn = kube.get(node.ip)
        out.append(
            NodeStatus(
                ip=node.ip,
                hostname=node.hostname,
                role=node.role,
                stage=stage,
                talos=talos,
                kubernetes=kn.kubelet if kn else "-",
                ready=("yes" if kn.ready else "no") if kn else "-",
                in_sync=sync,
            )
        )
    return out


def verdict(rows: list[NodeStatus]) -> tuple[int, str] | None:
    """(exit code, reason) when the cluster is not healthy, for scripts and CI: 3 when no node
    answers, 2 when some node is unreachable, not running or not Ready; None when healthy."""
    down = [r.ip for r in rows if r.stage in ("unreachable", "error", "foreign")]
    if rows and len(down) == len(rows):
        return 3, f"no node of the cluster answers ({', '.join(down)})"
    bad = [
        f"{r.ip} ({r.stage})" if r.stage != "running" else f"{r.ip} (not Ready)"
        for r in rows
        if r.stage != "running" or r.ready == "no"
    ]
    if bad:
        return 2, f"{len(bad)} of {len(rows)} node(s) not healthy: {', '.join(bad)}"
    return None


def node_diff(
    repo: Repo,
    cluster: Cluster,
    prog: Program,
    tc: Talosctl,
    node: Node,
    values: dict[str, str],
    live: dict[str, Any] | None = None,
) -> str:
    """What differs between generated/<cluster>/nodes/<host>.yaml and the node's live config,
    compared as parsed documents (quoting and layout are not changes): `path: old → new`."""
    gen_path = repo.generated_dir(cluster) / "nodes" / f"{node.hostname}.yaml"
    want = gen_path.read_text() if gen_path.exists() else ""
    if live is None:
        out = run(prog, tc.machineconfig(node.ip), timeout=30, node=node.ip).stdout
        live = parse_machineconfig(out)
    # Both sides compared as parsed data, the lines of a difference too: laying the live config
    # out with ruamel (YAML 1.2) and reading it back with PyYAML (1.1) turned a quoted "yes" into
    # true, a change the node did not have. Redacted as generated/ is before any comparison.
    lines = docdiff.render_documents(
        docdiff.documents(want), docdiff.by_key([redacted_config(live, values)])
    )
    if not lines:
        return ""
    head = f"{node.ip}: generated/{cluster.name}/nodes/{node.hostname}.yaml → live config"
    return "\n".join([head, *(f"  {line}" for line in lines)]) + "\n"


def diff(repo: Repo, cluster: Cluster, prog: Program, nodes: list[Node]) -> dict[str, str]:
    values = _bundle_values(repo, cluster)
    if values is None:
        raise TalosProvError(
            "cannot compare live configs without the secrets bundle (needed to redact them)"
        )
    tc = Talosctl(localconfig.talosconfig_path(repo, cluster))
    results = parallel(lambda n: (n.ip, node_diff(repo, cluster, prog, tc, n, values)), nodes, 10)
    return dict(results)

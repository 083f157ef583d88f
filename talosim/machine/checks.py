"""The server-side health checks of `talosctl health`, judged from the machines' state: their
names and order per Talos minor, and what each reports while it waits."""

from __future__ import annotations

import json
from collections.abc import Callable
from typing import Any

from . import machineconfig as mc
from . import nodes as N
from .state import State

CHECKS_17 = [
    "etcd to be healthy",
    "etcd members to be consistent across nodes",
    "etcd members to be control plane nodes",
    "apid to be ready",
    "all nodes memory sizes",
    "all nodes disk sizes",
    "kubelet to be healthy",
    "all nodes to finish boot sequence",
    "all k8s nodes to report",
    "all k8s nodes to report ready",
    "all control plane static pods to be running",
    "all control plane components to be ready",
    "kube-proxy to report ready",
    "coredns to report ready",
    "all k8s nodes to report schedulable",
]
CHECKS_18 = [
    "etcd to be healthy",
    "etcd members to be consistent across nodes",
    "etcd members to be control plane nodes",
    "apid to be ready",
    "all nodes memory sizes",
    "all nodes disk sizes",
    "no diagnostics",
    "kubelet to be healthy",
    "all nodes to finish boot sequence",
    "all k8s nodes to report",
    "all control plane static pods to be running",
    "all control plane components to be ready",
    "all k8s nodes to report ready",
    "kube-proxy to report ready",
    "coredns to report ready",
    "all k8s nodes to report schedulable",
]


def check(
    state: State,
    name: str,
    cps: list[str],
    workers: list[str],
    refused: Callable[[str], Exception],
) -> str | None:
    """None when the check passes, "SKIP" when it does not apply, else the error text.

    `refused(ip)` is the error a client gets dialling a node that does not answer: the API
    layer's, so that "apid to be ready" reports what talosctl would."""
    recs: dict[str, dict[str, Any]] = {ip: N.load(state, ip) or {} for ip in cps + workers}
    cluster = next(
        (N.cluster_of(state, r) for r in recs.values() if r and r.get("cluster_id")), None
    )

    def errs(items: list[str]) -> str | None:
        return mc.multierror(items).rstrip("\n") if items else None

    if name == "etcd to be healthy":
        return errs(
            [
                f"{ip}: service is not healthy: etcd"
                for ip in cps
                if not (recs[ip] and N.etcd_healthy(state, recs[ip], cluster))
            ]
        )
    if name == "etcd members to be control plane nodes":
        members = {m["ip"] for m in N.members(state, cluster)}
        members |= {m["ip"] for m in (cluster or {}).get("stale_members") or []}  # dead ones
        if members != set(cps):
            return (
                f"etcd member ips {json.dumps(sorted(members))} are not subset of control "
                f"plane node ips {json.dumps(sorted(cps))}"
            )
        return None
    if name == "apid to be ready":
        return errs(
            [
                f"{ip}: {refused(ip)}"
                for ip in cps + workers
                if N.is_unreachable(state, recs[ip] or None)
            ]
        )
    if name in ("kubelet to be healthy", "all nodes to finish boot sequence"):
        bad = [ip for ip in cps + workers if not recs[ip] or recs[ip]["stage"] != "running"]
        if name == "kubelet to be healthy":
            return errs([f"{ip}: service is not healthy: kubelet" for ip in bad])
        return errs(
            [f"{ip}: unexpected stage {(recs[ip] or {}).get('stage', 'unknown')!r}" for ip in bad]
        )
    if name == "all k8s nodes to report":
        missing = [
            N.hostname(recs[ip]) if recs[ip] else ip
            for ip in cps + workers
            if not (recs[ip] and cluster and cluster.get("bootstrapped") and recs[ip].get("config"))
        ]
        return f"expected nodes not found: {' '.join(missing)}" if missing else None
    if name == "all k8s nodes to report ready":
        bad = [
            N.hostname(recs[ip])
            for ip in cps + workers
            if recs[ip] and not N.k8s_ready(recs[ip], cluster)
        ]
        return f"some nodes are not ready: {bad}".replace("'", "") if bad else None
    if name in (
        "all control plane static pods to be running",
        "all control plane components to be ready",
    ):
        bad = [ip for ip in cps if not (recs[ip] and N.k8s_ready(recs[ip], cluster))]
        return errs([f"{ip}: static pod kube-apiserver is not running" for ip in bad])
    if name == "kube-proxy to report ready":
        cfg = (recs[cps[0]] or {}).get("config") or {} if cps else {}
        if ((cfg.get("cluster") or {}).get("proxy") or {}).get("disabled"):
            return "SKIP"
        return None
    if name == "all k8s nodes to report schedulable":
        bad = [
            N.hostname(recs[ip])
            for ip in cps + workers
            if recs[ip] and recs[ip].get("unschedulable")
        ]
        return f"some nodes are not schedulable: {bad}".replace("'", "") if bad else None
    return None

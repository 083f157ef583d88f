"""The etcd of an emulated cluster: its data, its member list and etcd's own refusals.

What is modelled, and from where (siderolabs/talos v1.9.0 unless noted):
- the etcd data of a cluster is a key/value store in its record (`etcd_data`); the emulated
  Kubernetes API keeps the objects it lets clients create there, so they survive exactly as long
  as etcd does.
- `etcd snapshot` writes that store (bbolt stands in for JSON) followed by the sha256 of what
  precedes it, the trailer `etcdctl snapshot save` appends.
- a control plane whose EPHEMERAL partition is wiped without leaving etcd stays in the member list
  but its etcd cannot start again (its member still exists) until the member is removed or the
  cluster is recovered; when every member's data is gone, etcd waits for a bootstrap again.
- a control plane wiped entirely without leaving stays in the member list as a dead member until
  `etcd remove-member` removes it.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from . import nodes as N
from .clock import now
from .state import State

# etcd's rpctypes errors (go.etcd.io/etcd/api/v3/v3rpc/rpctypes/error.go)
ERR_NOT_ENOUGH_STARTED = "etcdserver: re-configuration failed due to not enough started members"
ERR_UNHEALTHY = "etcdserver: unhealthy cluster"
ERR_MEMBER_NOT_FOUND = "etcdserver: member not found"


def new_data() -> dict[str, Any]:
    return {"revision": 1, "keys": {}}


def stale_members(cluster: dict[str, Any] | None) -> list[dict[str, Any]]:
    """Members whose machine was wiped without leaving etcd: listed, never healthy."""
    return list((cluster or {}).get("stale_members") or [])


def member_rows(state: State, cluster: dict[str, Any]) -> list[dict[str, str]]:
    """Every entry of the member list: live members (wiped ones included), then dead ones."""
    rows = [
        {"ip": m["ip"], "id": N.member_id(m), "hostname": N.hostname(m)}
        for m in N.members(state, cluster)
    ]
    return rows + [dict(s) for s in stale_members(cluster)]


def holders(state: State, cluster: dict[str, Any], without: str) -> list[dict[str, Any]]:
    """Members other than `without` that still hold the cluster's etcd data."""
    return [m for m in N.members(state, cluster) if m["ip"] != without and not m.get("etcd_wiped")]


def remove_check(state: State, cluster: dict[str, Any], ip: str) -> str | None:
    """etcd's mayRemoveMember (server/etcdserver/server.go, strict reconfig check)."""
    rows = member_rows(state, cluster)
    others = [r for r in rows if r["ip"] != ip]
    started = [
        r
        for r in others
        if (n := N.load(state, r["ip"])) is not None and N.etcd_healthy(state, n, cluster)
    ]
    if len(started) < len(others) // 2 + 1:
        return ERR_NOT_ENOUGH_STARTED
    # protect quorum when some members are down: active - 1 < 1 + (len(m) - 1) / 2
    active = len(started) + 1
    if active - 1 < 1 + (len(rows) - 1) // 2:
        return ERR_UNHEALTHY
    return None


def lose_data(state: State, cluster: dict[str, Any]) -> None:
    """No member holds the data any more: etcd waits for `talosctl bootstrap` again."""
    cluster.update(
        {"bootstrapped": False, "bootstrap_node": None, "etcd_data": None, "stale_members": []}
    )
    for n in state.nodes():
        if n.get("cluster_id") == cluster["id"] and n.get("etcd_wiped"):
            n["etcd_wiped"] = False
            n["etcd_waiting"] = True
            state.save_node(n)


def wiped_without_leaving(
    state: State, cluster: dict[str, Any], node: dict[str, Any], *, forget: bool
) -> None:
    """A member loses its etcd data without leaving: its entry stays in the member list."""
    if not holders(state, cluster, node["ip"]):
        lose_data(state, cluster)
        state.save_cluster(cluster)
        node["etcd_wiped"] = False
        node["etcd_waiting"] = not forget
        return
    if forget:
        cluster.setdefault("stale_members", []).append(
            {"ip": node["ip"], "id": N.member_id(node), "hostname": N.hostname(node)}
        )
        state.save_cluster(cluster)
    else:
        node["etcd_wiped"] = True


def snapshot_bytes(cluster: dict[str, Any], members: list[str]) -> bytes:
    """The database (JSON padded to whole pages) followed by its sha256, as etcdctl saves it."""
    body = json.dumps(
        {
            "talosim": "etcd snapshot",
            "cluster": cluster["name"],
            "taken": now(),
            "members": members,
            "kubernetes_version": cluster.get("kubernetes_version"),
            "revision": (cluster.get("etcd_data") or new_data()).get("revision", 1),
            "data": cluster.get("etcd_data") or new_data(),
        }
    ).encode()
    data = body + b"\0" * (4096 - len(body) % 4096)
    return data + hashlib.sha256(data).digest()

"""`talosctl bootstrap`: start etcd on one control plane, or recover it from a snapshot.

`bootstrap --recover-from` uploads a snapshot (talosim/machine/etcd.py) and the etcd service
restores it at start (siderolabs/talos v1.9.0 internal/app/machined/pkg/system/services/etcd.go,
recoverFromSnapshot): a single-member cluster of the recovering node, which the other control
planes join once their data directories are empty.
"""

from __future__ import annotations

import hashlib
import json
from typing import Any

from ..api.command import Commands, Ctx, Fail, Flag
from ..api.conn import Conn, for_each, single
from ..api.errors import RPC
from ..machine import nodes as N
from ..machine.clock import now
from ..machine.etcd import new_data

COMMANDS = Commands()


def _snapshot_status(path: str) -> dict[str, Any]:
    """etcdutl's snapshot Status: the database must open; returns its content and hash state."""
    try:
        raw = open(path, "rb").read()  # noqa: SIM115
    except OSError as e:
        raise Fail(f"open {path}: {e.strerror.lower() if e.strerror else e}") from None
    has_hash = len(raw) % 512 == 32
    body = raw[:-32] if has_hash else raw
    try:
        doc = json.loads(body.rstrip(b"\0"))
    except ValueError:
        doc = None
    if not isinstance(doc, dict) or doc.get("talosim") != "etcd snapshot":
        raise Fail("invalid database")
    return {"doc": doc, "raw": raw, "has_hash": has_hash, "body": body}


@COMMANDS.add(
    "bootstrap",
    flags=[
        Flag("recover-from", help="recover etcd cluster from the snapshot"),
        Flag(
            "recover-skip-hash-check",
            "bool",
            help="skip integrity check when recovering etcd (use when recovering from data directory copy)",
        ),
    ],
)
def bootstrap(ctx: Ctx) -> None:
    conn = Conn(ctx, False)
    single(conn, "bootstrap")
    snap = None
    if ctx["recover-from"]:
        # cmd/talosctl/cmd/talos/bootstrap.go: Status first, then upload, then Bootstrap
        snap = _snapshot_status(ctx["recover-from"])
        doc = snap["doc"]
        ctx.out(
            f'recovering from snapshot "{ctx["recover-from"]}": hash '
            f"{hashlib.sha256(snap['raw']).hexdigest()[:8]}, revision {doc.get('revision', 1)}, "
            f"total keys {len((doc.get('data') or {}).get('keys') or {})}, "
            f"total size {len(snap['raw'])}\n"
        )

    def one(node: dict[str, Any]) -> None:
        state = ctx.state
        with state.locked():
            node = N.load(state, node["ip"]) or node
            if node["stage"] not in ("running",):
                raise RPC("FailedPrecondition", "bootstrap is not available yet")
            if not N.is_controlplane(node):
                raise RPC(
                    "FailedPrecondition", "bootstrap can only be performed on a control plane node"
                )
            cluster = N.cluster_of(state, node)
            assert cluster is not None
            if cluster.get("bootstrapped"):
                raise RPC("AlreadyExists", "etcd data directory is not empty")
            data = new_data()
            if snap is not None:
                err = _recover_error(snap, ctx["recover-skip-hash-check"])
                if err:
                    # The RPC succeeds; the etcd service fails at start (recoverFromSnapshot).
                    N.event(node, "etcd", error=f"error recovering from the snapshot: {err}")
                    node["etcd_waiting"] = True
                    state.save_node(node)
                    return
                data = dict(snap["doc"].get("data") or new_data())
                data["revision"] = int(data.get("revision", 1)) + 1
            cluster.update(
                {
                    "bootstrapped": True,
                    "bootstrap_node": node["ip"],
                    "bootstrapped_at": cluster.get("bootstrapped_at") or now(),
                    "k8s_ca": node["config"]["cluster"]["ca"],
                    "kubernetes_version": cluster.get("kubernetes_version")
                    or node.get("kubelet_version"),
                    "etcd_data": data,
                    "stale_members": [],
                }
            )
            state.save_cluster(cluster)
            # every other control plane joins the new cluster with an empty data directory
            for n in state.nodes():
                if n.get("cluster_id") == cluster["id"] and (
                    n.get("etcd_wiped") or n.get("etcd_waiting") or n.get("etcd_left")
                ):
                    n.update({"etcd_wiped": False, "etcd_waiting": False, "etcd_left": False})
                    if n["ip"] != node["ip"]:
                        state.save_node(n)
            node.update({"etcd_wiped": False, "etcd_waiting": False, "etcd_left": False})
            N.event(node, "bootstrap", recovered=snap is not None)
            state.save_node(node)

    for_each(conn, "bootstrap", one, "error executing bootstrap")


def _recover_error(snap: dict[str, Any], skip_hash: bool) -> str | None:
    """etcdutl's snapshot restore hash check (etcdutl/snapshot/v3_snapshot.go, saveDB)."""
    if snap["has_hash"] and not skip_hash:
        want = snap["raw"][-32:]
        got = hashlib.sha256(snap["body"]).digest()
        if want != got:
            return f"expected sha256 {list(want)}, got {list(got)}".replace(",", "")
    if not snap["has_hash"] and not skip_hash:
        return "snapshot missing hash but --skip-hash-check=false"
    return None

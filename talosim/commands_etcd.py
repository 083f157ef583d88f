"""talosctl commands about etcd: bootstrap (and recovery from a snapshot), reset, etcd *.

What is modelled, and from where (siderolabs/talos v1.9.0 unless noted):
- the etcd data of a cluster is a key/value store in its record (`etcd_data`); the emulated
  Kubernetes API keeps the objects it lets clients create there, so they survive exactly as long
  as etcd does.
- `etcd snapshot` writes that store (bbolt stands in for JSON) followed by the sha256 of what
  precedes it, the trailer `etcdctl snapshot save` appends; `bootstrap --recover-from` uploads it,
  and the etcd service restores it at start (internal/app/machined/pkg/system/services/etcd.go,
  recoverFromSnapshot): a single-member cluster of the recovering node, which the other control
  planes join once their data directories are empty.
- `reset` validates its request as machined does (internal/app/machined/internal/server/
  v1alpha1/v1alpha1_server.go, Reset) and runs the reset sequence (internal/app/machined/pkg/
  runtime/v1alpha1/v1alpha1_sequencer.go, Reset): a graceful reset cordons the node and, on a
  control plane, leaves etcd first (v1alpha1_sequencer_tasks.go, LeaveEtcd), which fails when
  etcd would lose its last member or its quorum; the reset then stops and the node keeps running.
- a control plane whose EPHEMERAL partition is wiped without leaving etcd stays in the member list
  but its etcd cannot start again (its member still exists) until the member is removed or the
  cluster is recovered; when every member's data is gone, etcd waits for a bootstrap again.
- a control plane wiped entirely without leaving stays in the member list as a dead member until
  `etcd remove-member` removes it.
"""

from __future__ import annotations

import hashlib
import json
import os
from typing import Any

from .cli import Ctx, Fail, command
from .commands_gen import _table
from .commands_node import RPC, TRACKER_FLAGS, Conn, for_each, multierror, single
from .flags import Flag
from .machine import nodes as N
from .machine.clock import now
from .machine.etcd import (
    ERR_MEMBER_NOT_FOUND,
    member_rows,
    new_data,
    remove_check,
    snapshot_bytes,
    stale_members,
    wiped_without_leaving,
)
from .machine.faults import stuck_stage
from .machine.state import State

# The system partitions a reset may wipe by label (VolumeStatus IDs of the system disk).
SYSTEM_LABELS = ("EFI", "BIOS", "BOOT", "META", "STATE", "EPHEMERAL")


# -- bootstrap --------------------------------------------------------------------------------
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


@command(
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


# -- reset ------------------------------------------------------------------------------------
def _validate_reset(ctx: Ctx, node: dict[str, Any]) -> list[str]:
    """machined's Reset request checks (v1.7.0 and v1.9.0 v1alpha1_server.go, Reset); returns
    the system labels to wipe."""
    mode = ctx["wipe-mode"]
    disks = ctx["user-disks-to-wipe"]
    labels = list(ctx["system-labels-to-wipe"])
    if disks:
        if mode == "system-disk":
            raise RPC(
                "Unknown",
                "reset failed: invalid input, wipe mode SYSTEM_DISK doesn't support "
                "UserDisksToWipe parameter",
            )
        known = {d["path"] for d in node.get("disks") or []}
        system = ((node.get("config") or {}).get("machine") or {}).get("install", {}).get("disk")
        for d in disks:
            if d not in known:
                raise RPC("Unknown", f"reset user disk failed: device {d} wasn't found")
            if d == system:
                raise RPC("Unknown", f"reset user disk failed: device {d} is the system disk")
    if labels:
        if mode == "user-disks":
            raise RPC(
                "Unknown",
                "reset failed: invalid input, wipe mode USER_DISKS doesn't support "
                "SystemPartitionsToWipe parameter",
            )
        for label in labels:
            if label in SYSTEM_LABELS:
                continue
            if _minor(node.get("talos_version") or "v1.9.0") < (1, 8):
                # v1.7.0: installer.ParseTarget on the system disk's partition table
                raise RPC("Unknown", f'label "{label}" is not supported')
            raise RPC(
                "Unknown",
                f'failed to get volume status with label "{label}": resource '
                f"VolumeStatuses.block.talos.dev(runtime/{label}@undefined) NotFound",
            )
    return labels


def _minor(tag: str) -> tuple[int, int]:
    major, minor = tag.lstrip("v").split(".")[:2]
    return int(major), int(minor)


@command(
    "reset",
    flags=[
        Flag(
            "graceful",
            "bool",
            default=True,
            help="if true, attempt to cordon/drain node and leave etcd (if applicable)",
        ),
        Flag(
            "reboot",
            "bool",
            help="if true, reboot the node after resetting instead of shutting down",
        ),
        Flag(
            "insecure",
            "bool",
            help="reset using the insecure (encrypted with no auth) maintenance service",
        ),
        Flag(
            "wipe-mode",
            default="all",
            choices=("all", "system-disk", "user-disks"),
            help="disk reset mode",
        ),
        Flag("user-disks-to-wipe", "strings", help="if set, wipes defined devices in the list"),
        Flag(
            "system-labels-to-wipe",
            "strings",
            help="if set, just wipe selected system disk partitions by label but keep other partitions intact",
        ),
        *TRACKER_FLAGS,
    ],
)
def reset(ctx: Ctx) -> None:
    if ctx["wait"] and ctx["insecure"]:
        raise Fail("cannot use --wait and --insecure together")
    conn = Conn(ctx, ctx["insecure"])
    state = ctx.state
    failures: list[str] = []

    def one(node: dict[str, Any]) -> None:
        with state.locked():
            node = N.load(state, node["ip"]) or node
            labels = _validate_reset(ctx, node)
            failure = _reset_sequence(ctx, state, node, labels)
            N.advance(node, stuck_stage(state, node["ip"]))
            state.save_node(node)
        if failure:
            failures.append(f'"{node["ip"]}": {failure}')
        elif ctx["wait"]:
            ctx.err(f'"{node["ip"]}": events check condition met\n')

    for_each(conn, "reset", one, "error executing reset")
    if failures and ctx["wait"]:
        # the sequence failed after the RPC returned: the tracker reports it, talosctl exits 1
        for f in failures:
            ctx.err(f + "\n")
        raise Fail("", suppress=True)


def _reset_sequence(ctx: Ctx, state: State, node: dict[str, Any], labels: list[str]) -> str | None:
    """The reset sequence of one node; returns the error that stopped it, if any."""
    settings = state.fleet()["settings"]
    cluster = N.cluster_of(state, node)
    graceful, cp = ctx["graceful"], N.is_controlplane(node)
    member = bool(cp and cluster and any(m["ip"] == node["ip"] for m in N.members(state, cluster)))
    if graceful and node.get("config"):
        node["unschedulable"] = True  # the "drain" phase: cordon and drain
        N.event(node, "cordon")
    if graceful and member and cluster and not node.get("etcd_wiped"):
        # LeaveEtcd: only when this node's etcd has data and its service runs or failed
        err = remove_check(state, cluster, node["ip"])
        if err:
            msg = (
                f"failed to leave cluster: failed to remove member "
                f"{int(N.member_id(node), 16)}: {err}"
            )
            N.event(node, "reset failed", error=msg)
            return f"reset failed: {msg}"
        node["etcd_left"] = True
        N.event(node, "etcd leave")
    mode = ctx["wipe-mode"]
    system = mode in ("all", "system-disk")
    wipe_state = system and (not labels or "STATE" in labels)
    wipe_ephemeral = system and (not labels or "EPHEMERAL" in labels)
    if cp and cluster and member and not node.get("etcd_left") and wipe_ephemeral:
        wiped_without_leaving(state, cluster, node, forget=wipe_state)
    # a node that left etcd and keeps its config joins again as a new member when it boots
    fields: dict[str, Any] = {"unschedulable": False, "etcd_left": False}
    if wipe_state:
        fields.update(
            {
                "config": None,
                "config_text": None,
                "cluster_id": None,
                "kubelet_version": None,
                "staged_config": None,
                "staged_upgrade": None,
                "booted_once": False,
                "etcd_left": False,
                "etcd_wiped": False,
                "etcd_waiting": False,
            }
        )
    if ctx["reboot"]:
        after = "maintenance" if wipe_state else "running"
        steps = [(0.0, "resetting", {}), (0.0, "rebooting", fields)]
        if after == "running":
            steps += [
                (settings["reboot_seconds"], "booting", {}),
                (settings["boot_seconds"], after, {}),
            ]
        else:
            steps += [(settings["reboot_seconds"], after, {})]
        N.schedule(node, steps)
    else:
        N.schedule(node, [(0.0, "resetting", {}), (0.0, "off", fields)])
    N.event(
        node,
        "reset",
        reboot=ctx["reboot"],
        graceful=graceful,
        mode=mode,
        labels=labels,
        user_disks=list(ctx["user-disks-to-wipe"]),
    )
    return None


# -- etcd -------------------------------------------------------------------------------------
def _cp_only(node: dict[str, Any], what: str) -> None:
    if not N.is_controlplane(node):
        raise RPC("Unimplemented", f"{what} is only available on control plane nodes")


def _etcd_node(
    ctx: Ctx, conn: Conn, ip: str, command: str, what: str
) -> tuple[dict[str, Any], dict[str, Any]]:
    """A control plane of a bootstrapped cluster whose etcd runs, or an RPC error."""
    node = conn.target(ip, command)
    _cp_only(node, what)
    cluster = N.cluster_of(ctx.state, node)
    if cluster is None or not N.etcd_healthy(ctx.state, node, cluster):
        raise RPC("Unknown", "etcd is not running")
    return node, cluster


@command("etcd snapshot", nargs=(1, 1), use="talosctl etcd snapshot <path>")
def etcd_snapshot(ctx: Ctx) -> None:
    conn = Conn(ctx, False)
    ip = single(conn, "etcd snapshot")
    try:
        _, cluster = _etcd_node(ctx, conn, ip, "etcd snapshot", "etcd snapshot")
    except RPC as e:
        raise Fail(f"error reading file: {e}") from None
    data = snapshot_bytes(cluster, [m["ip"] for m in N.members(ctx.state, cluster)])
    path = ctx.args[0]
    part = path + ".part"
    fd = os.open(part, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "wb") as f:
        f.write(data)
        f.flush()
        os.fsync(f.fileno())
    os.replace(part, path)
    keys = len((cluster.get("etcd_data") or {}).get("keys") or {})
    ctx.out(f'etcd snapshot saved to "{path}" ({len(data)} bytes)\n')
    ctx.out(
        f"snapshot info: hash {hashlib.sha256(data).hexdigest()[:8]}, revision "
        f"{(cluster.get('etcd_data') or {}).get('revision', 1)}, total keys {keys}, "
        f"total size {len(data)}\n"
    )


@command("etcd members")
def etcd_members(ctx: Ctx) -> None:
    conn = Conn(ctx, False)
    rows = [["NODE", "ID", "HOSTNAME", "PEER URLS", "CLIENT URLS", "LEARNER"]]
    errs = []
    for ip in conn.nodes:
        try:
            node, cluster = _etcd_node(ctx, conn, ip, "etcd members", "member list")
        except RPC as e:
            errs.append(f"{ip}: {e}")
            continue
        for m in member_rows(ctx.state, cluster):
            rows.append(
                [
                    ip,
                    m["id"],
                    m["hostname"],
                    f"https://{m['ip']}:2380",
                    f"https://{m['ip']}:2379",
                    "false",
                ]
            )
    if errs:
        raise Fail("error getting members: " + multierror(errs))
    ctx.out(_table(rows))


@command("etcd status")
def etcd_status(ctx: Ctx) -> None:
    conn = Conn(ctx, False)
    rows = [
        [
            "NODE",
            "MEMBER",
            "DB SIZE",
            "IN USE",
            "LEADER",
            "RAFT INDEX",
            "RAFT TERM",
            "RAFT APPLIED INDEX",
            "LEARNER",
            "ERRORS",
        ]
    ]
    errs = []
    for ip in conn.nodes:
        try:
            node, cluster = _etcd_node(ctx, conn, ip, "etcd status", "etcd status")
        except RPC as e:
            errs.append(f"{ip}: {e}")
            continue
        mem = N.members(ctx.state, cluster)
        leader = mem[0] if mem else node
        rows.append(
            [
                ip,
                N.member_id(node),
                "12 MB",
                "7.0 MB (58.21%)",
                N.member_id(leader or node),
                "1234",
                "2",
                "1234",
                "false",
                "",
            ]
        )
    if errs:
        raise Fail("error getting status: " + multierror(errs))
    ctx.out(_table(rows))


@command("etcd leave")
def etcd_leave(ctx: Ctx) -> None:
    conn = Conn(ctx, False)
    ip = single(conn, "etcd leave")
    state = ctx.state
    try:
        node = conn.target(ip, "etcd leave")
        _cp_only(node, "etcd leave")
        with state.locked():
            node = N.load(state, ip) or node
            cluster = N.cluster_of(state, node)
            if cluster is None or not N.etcd_healthy(state, node, cluster):
                raise RPC("Unknown", "failed to create etcd client: etcd is not running")
            err = remove_check(state, cluster, ip)
            if err:
                raise RPC(
                    "Unknown",
                    f"failed to leave cluster: failed to remove member "
                    f"{int(N.member_id(node), 16)}: {err}",
                )
            node["etcd_left"] = True
            N.event(node, "etcd leave")
            state.save_node(node)
    except RPC as e:
        raise Fail(multierror([f"{conn.label(ip)}{e}"])) from None


@command("etcd remove-member", nargs=(1, 1), use="talosctl etcd remove-member <member ID>")
def etcd_remove_member(ctx: Ctx) -> None:
    try:
        want = int(ctx.args[0], 16)
    except ValueError:
        raise Fail(
            f'error parsing member ID: strconv.ParseUint: parsing "{ctx.args[0]}": invalid syntax'
        ) from None
    conn = Conn(ctx, False)
    ip = single(conn, "etcd remove-member")
    state = ctx.state
    try:
        node = conn.target(ip, "etcd remove-member")
        _cp_only(node, "etcd remove member")
        with state.locked():
            node = N.load(state, ip) or node
            cluster = N.cluster_of(state, node)
            if cluster is None or not N.etcd_healthy(state, node, cluster):
                raise RPC("Unknown", "failed to create etcd client: etcd is not running")
            row = next((r for r in member_rows(state, cluster) if int(r["id"], 16) == want), None)
            if row is None:
                raise RPC("NotFound", f"failed to remove member {want}: {ERR_MEMBER_NOT_FOUND}")
            err = remove_check(state, cluster, row["ip"])
            if err:
                raise RPC(
                    "Unknown", f"failed to remove member: failed to remove member {want}: {err}"
                )
            stale = [s for s in stale_members(cluster) if s["id"] != row["id"]]
            if len(stale) != len(stale_members(cluster)):
                cluster["stale_members"] = stale
                state.save_cluster(cluster)
            else:
                gone = N.load(state, row["ip"])
                if gone is not None:
                    if gone.get("etcd_wiped"):
                        # its etcd was failing on the duplicate member: it now joins afresh
                        gone["etcd_wiped"] = False
                    else:
                        gone["etcd_left"] = True
                    N.event(gone, "etcd member removed", by=ip)
                    state.save_node(gone)
    except RPC as e:
        raise Fail(multierror([f"{conn.label(ip)}{e}"])) from None

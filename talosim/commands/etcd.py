"""`talosctl etcd *`: snapshot, members, status, leave and remove-member, on the etcd model of
talosim/machine/etcd.py."""

from __future__ import annotations

import hashlib
import os
from typing import Any

from ..api.command import Commands, Ctx, Fail, table
from ..api.conn import Conn, single
from ..api.errors import RPC, multierror
from ..machine import nodes as N
from ..machine.etcd import (
    ERR_MEMBER_NOT_FOUND,
    member_rows,
    remove_check,
    snapshot_bytes,
    stale_members,
)

COMMANDS = Commands()


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


@COMMANDS.add("etcd snapshot", nargs=(1, 1), use="talosctl etcd snapshot <path>")
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


@COMMANDS.add("etcd members")
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
    ctx.out(table(rows))


@COMMANDS.add("etcd status")
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
    ctx.out(table(rows))


@COMMANDS.add("etcd leave")
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


@COMMANDS.add("etcd remove-member", nargs=(1, 1), use="talosctl etcd remove-member <member ID>")
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

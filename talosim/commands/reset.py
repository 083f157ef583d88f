"""`talosctl reset`: wipe a node, leaving etcd first when graceful.

`reset` validates its request as machined does (siderolabs/talos v1.9.0 internal/app/machined/
internal/server/v1alpha1/v1alpha1_server.go, Reset) and runs the reset sequence (internal/app/
machined/pkg/runtime/v1alpha1/v1alpha1_sequencer.go, Reset): a graceful reset cordons the node
and, on a control plane, leaves etcd first (v1alpha1_sequencer_tasks.go, LeaveEtcd), which fails
when etcd would lose its last member or its quorum; the reset then stops and the node keeps
running.
"""

from __future__ import annotations

from typing import Any

from ..api.command import Commands, Ctx, Fail, Flag
from ..api.conn import Conn, for_each
from ..api.errors import RPC
from ..api.tracker import TRACKER_FLAGS
from ..machine import nodes as N
from ..machine.etcd import remove_check, wiped_without_leaving
from ..machine.faults import stuck_stage
from ..machine.state import State

# The system partitions a reset may wipe by label (VolumeStatus IDs of the system disk).
SYSTEM_LABELS = ("EFI", "BIOS", "BOOT", "META", "STATE", "EPHEMERAL")

COMMANDS = Commands()


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


@COMMANDS.add(
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

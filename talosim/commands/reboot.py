"""`talosctl reboot`: the Reboot sequence, unless a sequence that cannot be taken over runs."""

from __future__ import annotations

from typing import Any

from ..api.command import Commands, Ctx, Fail, Flag
from ..api.conn import Conn, for_each
from ..api.tracker import TRACKER_FLAGS, tracked, tracker
from ..machine import nodes as N
from ..machine.faults import stuck_stage, take_fault

COMMANDS = Commands()


@COMMANDS.add(
    "reboot",
    flags=[
        Flag("mode", short="m", default="default", help="select the reboot mode"),
        *TRACKER_FLAGS,
    ],
)
def reboot(ctx: Ctx) -> None:
    if ctx["mode"] not in ("default", "powercycle"):
        raise Fail(f'invalid reboot mode: "{ctx["mode"]}"')
    conn = Conn(ctx, False)
    state = ctx.state
    boot_ids: dict[str, str] = {}

    def one(node: dict[str, Any]) -> None:
        with state.locked():
            node = N.load(state, node["ip"]) or node
            boot_ids[node["ip"]] = node["boot_id"]
            settings = state.fleet()["settings"]
            if node["stage"] in N.LOCKED_STAGES:
                # The API call answers with an actor ID; the Reboot sequence then fails to take
                # the sequencer lock and publishes "sequence not started: locked" without that
                # actor ID, so `reboot --wait` keeps waiting and follows the running sequence
                # (v1.7.0 internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_controller.go Run,
                # v1alpha1_priority_lock.go; cmd/talosctl/pkg/talos/action/node.go handleEvents).
                N.event(
                    node,
                    "sequence",
                    sequence="reboot",
                    action="NOOP",
                    error="sequence not started: locked",
                    code="LOCKED",
                )
                state.save_node(node)
                return
            N.event(node, "reboot")
            rollback = take_fault(state, node["ip"], "reboot", ("rollback",))
            if rollback and node.get("staged_upgrade"):
                node["staged_upgrade"] = None
            N.schedule(node, N.reboot_steps(settings, {"unschedulable": False}))
            N.advance(node, stuck_stage(state, node["ip"]))
            state.save_node(node)

    if ctx["wait"] or ctx["debug"]:
        tracked(ctx, conn, "reboot", one)
        tracker(ctx, conn.nodes, boot_ids, ctx["timeout"])
        return
    for_each(conn, "reboot", one, "error executing reboot")

"""talosim's own `fault` commands: inject, list and clear faults (talosim/machine/faults.py)."""

from __future__ import annotations

import json
import uuid

from ..api.command import Commands, Ctx, Fail, Flag
from ..machine.faults import KINDS

COMMANDS = Commands()


@COMMANDS.add(
    "fault add",
    flags=[
        Flag("node", help="node address, or * for all"),
        Flag("kind", help=f"one of {', '.join(KINDS)}"),
        Flag(
            "command",
            default="*",
            help="talosctl command it applies to (apply-config, upgrade, upgrade-sequence, ...)",
        ),
        Flag("times", "int", default=-1, help="how many times it fires (-1: until cleared)"),
        Flag("message", help="error text (kind error)"),
        Flag("code", default="Unknown", help="gRPC code of the error (kind error)"),
        Flag("seconds", "seconds", default=0.0, help="how long to hang (kind hang)"),
        Flag("stage", help="stage the node gets stuck in (kind stuck)"),
    ],
)
def fault_add(ctx: Ctx) -> None:
    if ctx["kind"] not in KINDS:
        raise Fail(f"--kind must be one of {', '.join(KINDS)}")
    if not ctx["node"]:
        raise Fail('required flag(s) "node" not set')
    if ctx["kind"] == "stuck" and not ctx["stage"]:
        raise Fail("--kind stuck needs --stage")
    state = ctx.state
    with state.locked():
        faults = state.faults()
        fid = str(uuid.uuid4())[:8]
        faults.append(
            {
                "id": fid,
                "node": ctx["node"],
                "kind": ctx["kind"],
                "command": ctx["command"],
                "times": ctx["times"],
                "message": ctx["message"] or "injected failure",
                "code": ctx["code"],
                "seconds": ctx["seconds"],
                "stage": ctx["stage"],
            }
        )
        state.save_faults(faults)
    ctx.out(fid + "\n")


@COMMANDS.add("fault list")
def fault_list(ctx: Ctx) -> None:
    ctx.out(json.dumps(ctx.state.faults(), indent=2) + "\n")


@COMMANDS.add("fault clear", nargs=(0, None))
def fault_clear(ctx: Ctx) -> None:
    state = ctx.state
    with state.locked():
        faults = state.faults()
        keep = [f for f in faults if ctx.args and f["id"] not in ctx.args]
        state.save_faults(keep)

"""talosctl's action tracker (--wait): follow nodes through a reboot until they are back."""

from __future__ import annotations

import time
import uuid
from typing import Any

from ..machine import clock
from ..machine import nodes as N
from .command import Ctx, Fail, Flag
from .conn import Conn
from .errors import RPC


def tracker(
    ctx: Ctx, ips: list[str], boot_ids: dict[str, str], timeout: float, expect_running: bool = True
) -> None:
    """talosctl's action tracker on a non-TTY: `"<node>": <message>` lines on stderr."""
    state = ctx.state
    for ip in ips:
        ctx.err(f'"{ip}": waiting for actor ID\n')
        ctx.err(f'"{ip}": actor ID: {uuid.uuid4()}\n')
    deadline = time.time() + timeout
    last: dict[str, str] = {}
    done: set[str] = set()
    while len(done) < len(ips):
        for ip in ips:
            if ip in done:
                continue
            node = N.load(state, ip)
            if N.is_unreachable(state, node):
                msg = "unavailable, retrying..."
            else:
                assert node is not None
                ms = N.machine_status(state, node)
                unmet = " ".join(
                    f"{u['name']}:{u['reason']}" for u in ms["status"]["unmetConditions"]
                )
                msg = (
                    f"stage: {node['stage'].upper().replace(' ', '_')} ready: "
                    f"{str(ms['status']['ready']).lower()} unmetCond: [{unmet}]"
                )
                if (
                    node["stage"] == "running"
                    and ms["status"]["ready"]
                    and node["boot_id"] != boot_ids[ip]
                ):
                    if last.get(ip) != msg:
                        ctx.err(f'"{ip}": {msg}\n')
                    ctx.err(f'"{ip}": events check condition met\n')
                    ctx.err(f'"{ip}": post check passed\n')
                    done.add(ip)
                    continue
            if last.get(ip) != msg:
                ctx.err(f'"{ip}": {msg}\n')
                last[ip] = msg
        if len(done) < len(ips):
            if time.time() > deadline:
                for ip in ips:
                    if ip not in done:
                        ctx.err(f'"{ip}": context deadline exceeded\n')
                raise Fail("", suppress=True)
            clock.sleep(0.1)


# The action tracker's flags, shared by upgrade, reboot and reset (cmd/talosctl/cmd/talos/track.go)
TRACKER_FLAGS = [
    Flag(
        "wait",
        "bool",
        default=True,
        help="wait for the operation to complete, tracking its "
        "progress. always set to true when --debug is set",
    ),
    Flag(
        "debug",
        "bool",
        help="debug operation from kernel logs. --wait is set to true when this flag is set",
    ),
    Flag(
        "timeout",
        "duration",
        default=1800.0,
        help="time to wait for the operation is complete if --debug or --wait is set",
    ),
]


def tracked(ctx: Ctx, conn: Conn, command: str, one: Any) -> None:
    """Start the action on every node, then follow them with the tracker (--wait)."""
    for ip in conn.nodes:
        try:
            one(conn.target(ip, command))
        except RPC as e:
            ctx.err(f'"{ip}": {e}\n')
            raise Fail("", suppress=True) from None

"""`talosctl health`: the server-side checks in talosctl's order, waited for until they pass."""

from __future__ import annotations

import json
import time

from ..api.command import Commands, Ctx, Fail, Flag
from ..api.conn import Conn, single
from ..api.errors import RPC, refused
from ..machine import clock, releases
from ..machine import nodes as N
from ..machine.checks import CHECKS_17, CHECKS_18, check

COMMANDS = Commands()


@COMMANDS.add(
    "health",
    flags=[
        Flag(
            "wait-timeout",
            "duration",
            default=1200.0,
            help="timeout to wait for the cluster to be ready",
        ),
        Flag("control-plane-nodes", "strings", help="specify IPs of control plane nodes"),
        Flag("worker-nodes", "strings", help="specify IPs of worker nodes"),
        Flag("init-node", help="specify IPs of init node"),
        Flag(
            "k8s-endpoint",
            help="use endpoint instead of kubeconfig default",
            modelled=False,  # the node-side checks always reach the emulated API server
        ),
        Flag("server", "bool", default=True, help="run server-side check"),
        Flag("run-e2e", "bool", help="run Kubernetes e2e test"),
    ],
)
def health(ctx: Ctx) -> None:
    if not ctx["server"] or ctx["run-e2e"]:
        raise Fail("emulator: unsupported flag --server=false/--run-e2e for talosctl health")
    conn = Conn(ctx, False)
    ip = single(conn, "health")
    try:
        node = conn.target(ip, "health")
    except RPC as e:
        raise Fail(f"healthcheck error: {e}") from None
    state = ctx.state
    cps, workers = list(ctx["control-plane-nodes"]), list(ctx["worker-nodes"])
    if ctx["init-node"]:
        cps.insert(0, ctx["init-node"])
    if not cps and not workers:
        for n in state.nodes():
            if n.get("cluster_id") == node.get("cluster_id"):
                (cps if N.is_controlplane(n) else workers).append(n["ip"])
    ctx.err(f"discovered nodes: [{' '.join(json.dumps(x) for x in cps + workers)}]\n")
    minor = tuple(int(x) for x in node["talos_version"].lstrip("v").split(".")[:2])
    checks = CHECKS_18 if minor >= (1, 8) else CHECKS_17
    skips = releases.health_skips(node["talos_version"], node.get("config") or {})
    deadline = time.time() + ctx["wait-timeout"]
    for name in checks:
        ctx.err(f"waiting for {name}: ...\n")
        last = None
        while True:
            result = "SKIP" if name in skips else check(state, name, cps, workers, refused)
            if result is None or result == "SKIP":
                ctx.err(f"waiting for {name}: {'OK' if result is None else 'SKIP'}\n")
                break
            if result != last:
                ctx.err(f"waiting for {name}: {result}\n")
                last = result
            if time.time() >= deadline:
                raise Fail(
                    "healthcheck error: rpc error: code = DeadlineExceeded desc = "
                    "context deadline exceeded"
                )
            clock.sleep(min(0.2, max(0.0, deadline - time.time())))

"""talosim's own `kubeapi` commands: run or stop a cluster's emulated Kubernetes API server."""

from __future__ import annotations

from ..api.command import Commands, Ctx, Flag

COMMANDS = Commands()


@COMMANDS.add(
    "kubeapi serve",
    flags=[
        Flag("cluster-id", help="cluster id (file name under clusters/)"),
        Flag("host", help="loopback address to listen on"),
        Flag("port", "int", default=6443, help="port"),
    ],
)
def kubeapi_serve(ctx: Ctx) -> None:
    from ..machine import kubeapi

    kubeapi.serve(ctx.state, ctx["cluster-id"], ctx["host"], ctx["port"])


@COMMANDS.add("kubeapi stop", flags=[Flag("cluster-id", help="cluster id; all when omitted")])
def kubeapi_stop(ctx: Ctx) -> None:
    from ..machine import kubeapi

    for c in ctx.state.clusters():
        if not ctx["cluster-id"] or c["id"] == ctx["cluster-id"]:
            kubeapi.stop(ctx.state, c["id"])

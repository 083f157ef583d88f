"""`talosctl version`: the client's release and, unless --client, each node's."""

from __future__ import annotations

from .. import played
from ..api.command import Commands, Ctx, Fail, Flag
from ..api.conn import Conn
from ..api.errors import RPC, multierror
from ..machine import releases

COMMANDS = Commands()


def _version_block(tag: str, node: str | None = None) -> str:
    facts = releases.tag_facts(tag)  # SHA and Go of each tag: talosim/data/releases.yaml
    lines = []
    if node:
        lines.append(f"\tNODE:        {node}")
    lines += [
        f"\tTag:         {tag}",
        f"\tSHA:         {facts.get('sha', '00000000')}",
        "\tBuilt:       ",
        f"\tGo version:  {facts.get('go', 'go1.22.2')}",
        "\tOS/Arch:     linux/amd64",
    ]
    if node:
        lines.append("\tEnabled:     RBAC")
    return "\n".join(lines) + "\n"


@COMMANDS.add(
    "version",
    flags=[
        Flag("client", "bool", help="Print client version only"),
        Flag("short", "bool", help="Print the short version"),
        Flag("insecure", "bool", short="i", help="use Talos maintenance mode API"),
        Flag("json", "bool", hidden=True, modelled=False),
    ],
)
def version(ctx: Ctx) -> None:
    ctx.out("Client:\n")
    client = played()
    ctx.out(f"Talos {client}\n" if ctx["short"] else _version_block(client))
    if ctx["client"]:
        return
    conn = Conn(ctx, ctx["insecure"])
    ctx.out("Server:\n")
    errs: list[str] = []
    ok = 0
    for ip in conn.nodes:
        try:
            node = conn.target(ip, "version")
            if not node.get("config"):
                raise RPC("Unimplemented", "API is not implemented in maintenance mode")
        except RPC as e:
            if conn.insecure or conn.endpoint is None:
                raise Fail(f"error getting version: {e}") from None
            errs.append(f"{ip}: {e}")
            continue
        ok += 1
        ctx.out(_version_block(node["talos_version"], ip))
    if errs and not ok:
        raise Fail("error getting version: " + multierror(errs))
    if errs:
        ctx.err("WARNING: " + multierror(errs))

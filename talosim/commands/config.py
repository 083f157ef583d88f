"""`talosctl config *`: the contexts, endpoints and nodes of the talosconfig file."""

from __future__ import annotations

import json
from pathlib import Path
from typing import Any

from ..api import talosconfig
from ..api.command import Commands, Ctx, Fail, Flag, table
from ..machine import machineconfig as mc
from ..machine import pki

COMMANDS = Commands()


def _open_current(ctx: Ctx) -> tuple[dict[str, Any], str]:
    cfg = ctx.talosconfig("error reading config")
    current = cfg.get("context", "")
    if not current:
        raise Fail("no context is set")
    if current not in cfg["contexts"]:
        raise Fail(f'context "{current}" is not defined')
    name = ctx["context"] or current
    if name not in cfg["contexts"]:
        raise Fail(f'context "{name}" is not defined')
    return cfg, name


@COMMANDS.add("config endpoint", nargs=(1, None), aliases=("endpoints",))
def config_endpoint(ctx: Ctx) -> None:
    cfg, name = _open_current(ctx)
    cfg["contexts"][name]["endpoints"] = [a.strip() for a in ctx.args]
    talosconfig.save(ctx.talosconfig_path(), cfg)


@COMMANDS.add("config node", nargs=(0, None), aliases=("nodes",))
def config_node(ctx: Ctx) -> None:
    cfg, name = _open_current(ctx)
    cfg["contexts"][name]["nodes"] = [a.strip() for a in ctx.args]
    talosconfig.save(ctx.talosconfig_path(), cfg)


@COMMANDS.add("config context", nargs=(1, 1), aliases=("use-context",))
def config_context(ctx: Ctx) -> None:
    cfg = ctx.talosconfig("error reading config")
    name = ctx.args[0]
    if name not in cfg["contexts"]:
        raise Fail(f'context "{name}" is not defined')
    cfg["context"] = name
    talosconfig.save(ctx.talosconfig_path(), cfg)


@COMMANDS.add("config contexts", aliases=("get-contexts",))
def config_contexts(ctx: Ctx) -> None:
    cfg = ctx.talosconfig("error reading config")
    rows = [["CURRENT", "NAME", "ENDPOINTS", "NODES"]]
    for name in sorted(cfg["contexts"]):
        c = cfg["contexts"][name]
        nodes = c.get("nodes") or []
        shown = ",".join(nodes[:3]) + ("..." if len(nodes) > 3 else "")
        rows.append(
            [
                "*" if name == cfg.get("context") else "",
                name,
                ",".join(c.get("endpoints") or []),
                shown,
            ]
        )
    ctx.out(table(rows))


@COMMANDS.add("config merge", nargs=(1, None))
def config_merge(ctx: Ctx) -> None:
    cfg = ctx.talosconfig("error reading config")
    try:
        src = talosconfig.load(Path(ctx.args[0]))
    except talosconfig.TalosconfigError as e:
        raise Fail(f"error reading config: {e}") from None
    for msg in talosconfig.merge(cfg, src):
        ctx.err(msg + "\n")
    talosconfig.save(ctx.talosconfig_path(), cfg)


@COMMANDS.add(
    "config info",
    flags=[Flag("output", short="o", default="text", help="output format (json|yaml|text)")],
)
def config_info(ctx: Ctx) -> None:
    cfg, name = _open_current(ctx)
    c = cfg["contexts"][name]
    roles: list[str] = []
    not_after = None
    if c.get("crt"):
        crt = pki.unb64(c["crt"])
        roles = pki.organizations(crt)
        not_after = pki.not_after(crt)
    fmt = ctx["output"]
    nodes, eps = c.get("nodes") or [], c.get("endpoints") or []
    if fmt == "text":
        lines = [
            f"{'Current context:':<21}{cfg['context']}",
            f"{'Nodes:':<21}{', '.join(nodes) or 'not defined'}",
            f"{'Endpoints:':<21}{', '.join(eps) or 'not defined'}",
        ]
        if not_after:
            lines.append(f"{'Roles:':<21}{', '.join(roles)}")
            lines.append(f"{'Certificate expires:':<21}{not_after:%Y-%m-%d}")
        ctx.out("\n".join(lines) + "\n")
        return
    data = {
        "context": cfg["context"],
        "nodes": nodes or None,
        "endpoints": eps or None,
        "roles": roles or None,
        "certTTL": "",
        "certNotAfter": f"{not_after:%Y-%m-%d}" if not_after else "",
    }
    if fmt == "json":
        ctx.out(json.dumps(data, indent=2) + "\n")
    elif fmt == "yaml":
        ctx.out(mc.encode(data))
    else:
        raise Fail(f'unknown output format: "{fmt}"')

"""`talosctl get`: Talos API resources of the target nodes, as a table, JSON, YAML or jsonpath."""

from __future__ import annotations

import json
from typing import Any

from ..api.command import Commands, Ctx, Fail, Flag, table
from ..api.conn import Conn
from ..api.errors import RPC, multierror
from ..api.resources import RESOURCES, build, jsonpath
from ..machine import machineconfig as mc

COMMANDS = Commands()


@COMMANDS.add(
    "get",
    nargs=(1, 2),
    aliases=("g",),
    use="talosctl get <type> [<id>]",
    flags=[
        Flag(
            "output", short="o", default="table", help="output mode (json, table, yaml, jsonpath)"
        ),
        Flag(
            "namespace",
            help="resource namespace (default is to use default namespace per resource)",
        ),
        Flag("watch", "bool", short="w", help="watch resource changes"),
        Flag(
            "insecure",
            "bool",
            short="i",
            help="get resources using the insecure (encrypted with no auth) maintenance service",
        ),
    ],
)
def get(ctx: Ctx) -> None:
    kind = next((k for k, v in RESOURCES.items() if ctx.args[0].lower() in v[3]), None)
    if kind is None:
        raise Fail(f'rpc error: code = NotFound desc = resource "{ctx.args[0]}" is not registered')
    if ctx["watch"]:
        raise Fail("emulator: unsupported flag --watch for talosctl get")
    if ctx["namespace"] and ctx["namespace"] != RESOURCES[kind][1]:
        # Naming the resource's own namespace is what talosctl does by default; talosim holds
        # each resource type in that one namespace only, so any other is not modelled.
        raise Fail(
            f"emulator: unsupported flag --namespace={ctx['namespace']} for talosctl get "
            f"(talosim holds {RESOURCES[kind][2]} only in namespace {RESOURCES[kind][1]})"
        )
    fmt = ctx["output"]
    if fmt not in ("table", "json", "yaml") and not fmt.startswith("jsonpath="):
        raise Fail(f'output format "{fmt}" is not supported')
    conn = Conn(ctx, ctx["insecure"])
    results: list[dict[str, Any]] = []
    errs: list[str] = []
    for ip in conn.nodes:
        try:
            node = conn.target(ip, "get")
        except RPC as e:
            if conn.insecure or conn.endpoint is None:
                raise Fail(str(e)) from None
            errs.append(str(e))
            continue
        if kind == "machineconfig" and ctx["insecure"]:
            errs.append("rpc error: code = PermissionDenied desc = not authorized")
            continue
        if node.get("config") is None and kind in ("member", "nodename", "machineconfig"):
            continue
        for r in build(ctx.state, node, kind):
            if len(ctx.args) == 2 and r["metadata"]["id"] != ctx.args[1]:
                continue
            results.append({"node": "" if ctx["insecure"] else ip, **r})
        if len(ctx.args) == 2 and not any(r["metadata"]["id"] == ctx.args[1] for r in results):
            rtype, ns = RESOURCES[kind][0], RESOURCES[kind][1]
            errs.append(
                f"rpc error: code = NotFound desc = resource {rtype}({ns}/{ctx.args[1]}"
                "@undefined) doesn't exist"
            )
    _print_resources(ctx, kind, fmt, results)
    if errs:
        raise Fail(multierror(errs))


def _cells(kind: str, s: dict[str, Any]) -> list[str]:
    if kind == "machinestatus":
        return [s["stage"], str(s["status"]["ready"]).lower()]
    if kind == "member":
        return [s["hostname"], s["machineType"], s["operatingSystem"], json.dumps(s["addresses"])]
    if kind == "nodename":
        return [s["nodename"]]
    return []


def _print_resources(ctx: Ctx, kind: str, fmt: str, results: list[dict[str, Any]]) -> None:
    if fmt == "json":
        for r in results:
            ctx.out(json.dumps(r, indent=4, sort_keys=True) + "\n")
    elif fmt == "yaml":
        docs = []
        for r in results:
            body = mc.encode({"metadata": r["metadata"], "spec": r["spec"]})
            docs.append(f"node: {r['node']}\n{body}")
        ctx.out("---\n".join(docs))
    elif fmt.startswith("jsonpath="):
        for r in results:
            for v in jsonpath(fmt[len("jsonpath=") :], json.loads(json.dumps(r))):
                ctx.out(
                    (
                        json.dumps(v, indent=4)
                        if isinstance(v, dict | list)
                        else ("true" if v is True else "false" if v is False else str(v))
                    )
                    + "\n"
                )
    else:
        extra = {
            "machinestatus": ["STAGE", "READY"],
            "member": ["HOSTNAME", "MACHINE TYPE", "OS", "ADDRESSES"],
            "nodename": ["NODENAME"],
            "machineconfig": [],
        }[kind]
        rows = [["NODE", "NAMESPACE", "TYPE", "ID", "VERSION", *extra]]
        for r in results:
            s, m = r["spec"], r["metadata"]
            cells = _cells(kind, s)
            rows.append(
                [r["node"], m["namespace"], RESOURCES[kind][2], m["id"], str(m["version"]), *cells]
            )
        ctx.out(table(rows))

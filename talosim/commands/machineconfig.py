"""`talosctl machineconfig patch`: patches applied to a machine config file offline."""

from __future__ import annotations

import os
from pathlib import Path

from .. import played
from ..api.command import Commands, Ctx, Fail, Flag
from ..api.configs import contract_of_docs
from ..machine import machineconfig as mc
from ..machine import patch as mpatch

COMMANDS = Commands()


@COMMANDS.add(
    "machineconfig patch",
    nargs=(1, 1),
    aliases=(),
    use="talosctl machineconfig patch <machineconfig-file> [flags]",
    flags=[
        Flag(
            "patch",
            "array",
            short="p",
            help="patch generated machineconfigs (applied to all node types), use @file to read a patch from file",
        ),
        Flag(
            "output",
            short="o",
            help="output destination. if not specified, output will be printed to stdout",
        ),
    ],
)
def machineconfig_patch(ctx: Ctx) -> None:
    path = ctx.args[0]
    try:
        raw = Path(path).read_text()
    except FileNotFoundError:
        raise Fail(f"open {path}: no such file or directory") from None
    docs = mc.decode_docs(raw)
    contract = contract_of_docs(docs)
    try:
        patches = [mpatch.load_patch(p, contract) for p in ctx["patch"]]
    except mc.ConfigError as e:
        raise Fail(str(e)) from None
    if not patches:
        result = raw
    else:
        try:
            out_docs = mpatch.apply(docs, patches, contract)
        except mc.ConfigError as e:
            raise Fail(str(e)) from None
        result = mc.encode_config(out_docs, played(), json6902=patches[-1].kind == "json6902")
    if ctx["output"]:
        parent = os.path.dirname(ctx["output"])
        if parent:
            os.makedirs(parent, exist_ok=True)
        with open(ctx["output"], "w") as f:
            f.write(result)
        os.chmod(ctx["output"], 0o644)
    else:
        ctx.out(result + "\n")

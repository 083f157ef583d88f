"""`talosctl validate`: a machine config checked for a runtime mode, as talosctl does offline."""

from __future__ import annotations

from pathlib import Path

from ..api.command import Commands, Ctx, Fail, Flag
from ..api.configs import contract_of_docs
from ..machine import gendocs
from ..machine import machineconfig as mc

COMMANDS = Commands()


@COMMANDS.add(
    "validate",
    flags=[
        Flag("config", short="c", help="the path of the config file"),
        Flag(
            "mode",
            short="m",
            help="the mode to validate the config for (valid values are metal, cloud, and container)",
        ),
        Flag("strict", "bool", help="treat validation warnings as errors"),
    ],
)
def validate(ctx: Ctx) -> None:
    if "mode" not in ctx.flags.changed:
        raise Fail('required flag(s) "mode" not set')
    path = ctx["config"]
    try:
        text = Path(path).read_text() if path else ""
        if not path:
            raise FileNotFoundError
    except FileNotFoundError:
        raise Fail(f"open {path}: no such file or directory") from None
    if ctx["mode"] not in ("metal", "cloud", "container"):
        raise Fail(f'unknown runtime mode: "{ctx["mode"]}"')
    docs = mc.decode_docs(text)
    contract = contract_of_docs(docs)
    for d in docs:
        if isinstance(d, dict) and mc.is_v1alpha1(d):
            mc.check_unknown(d, contract, contract >= (1, 8))
        elif isinstance(d, dict) and "kind" not in d:
            raise Fail("missing kind")
    # from contract 1.14 install and cluster identity live in their own documents
    docs = gendocs.fold_docs(docs)
    contract = contract_of_docs(docs)
    errors, warnings = mc.validate(docs, ctx["mode"], contract)
    if ctx["strict"]:
        errors += [f"warning: {w}" for w in warnings]
        warnings = []
    for w in warnings:
        ctx.err(f"WARNING: {w}\n")
    if errors:
        raise Fail(mc.multierror(errors))
    ctx.out(f"{path} is valid for {ctx['mode']} mode\n")

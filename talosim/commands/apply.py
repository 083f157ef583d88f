"""`talosctl apply-config`: a node in maintenance mode installs; a running one applies the
config in the mode asked (auto, no-reboot, reboot, staged, try), as machined decides."""

from __future__ import annotations

import difflib
from pathlib import Path
from typing import Any

from .. import played
from ..api.command import Commands, Ctx, Fail, Flag
from ..api.configs import contract_of_docs, load_patches
from ..api.conn import Conn, for_each
from ..api.errors import CERT_REQUIRED, RPC
from ..machine import gendocs, releases
from ..machine import machineconfig as mc
from ..machine import nodes as N
from ..machine import patch as mpatch
from ..machine.clock import now
from ..machine.faults import stuck_stage
from ..machine.state import State

COMMANDS = Commands()


def _modes(client: str) -> tuple[str, ...]:
    """talosctl's --mode values: interactive is gone from 1.13, reboot from 1.14 (releases.yaml)."""
    return tuple(
        m
        for m in ("auto", "interactive", "no-reboot", "reboot", "staged", "try")
        if not (m == "interactive" and releases.since("apply_mode_interactive_removed", client))
        and not (m == "reboot" and releases.since("apply_mode_reboot_removed", client))
    )


def _install_disk_problem(node: dict[str, Any], doc: dict[str, Any]) -> str | None:
    disk = ((doc.get("machine") or {}).get("install") or {}).get("disk")
    if disk and disk not in [d["path"] for d in node["disks"]]:
        return f'specified install disk does not exist: "{disk}"'
    return None


def _apply_config_flags(client: str) -> list[Flag]:
    return [
        Flag("file", short="f", help="the filename of the updated configuration"),
        Flag(
            "insecure",
            "bool",
            short="i",
            help="apply the config using the insecure (encrypted with no auth) maintenance service",
        ),
        Flag("mode", short="m", default="auto", choices=_modes(client), help="apply config mode"),
        Flag("dry-run", "bool", help="check how the config change will be applied in dry-run mode"),
        Flag(
            "config-patch",
            "strings",
            short="p",
            help="the list of config patches to apply to the local config file before sending it to the node",
        ),
        Flag(
            "cert-fingerprint",
            "strings",
            help="list of server certificate fingeprints to accept (defaults to no check)",
            modelled=False,  # talosim's maintenance nodes present no certificate to pin
        ),
        Flag(
            "timeout",
            "duration",
            default=60.0,
            help="the config will be rolled back after specified timeout (if try mode is selected)",
        ),
    ]


@COMMANDS.add("apply-config", aliases=("apply",), nargs=(0, 1), flags=_apply_config_flags)
def apply_config(ctx: Ctx) -> None:
    if ctx.args and ctx.args[0] not in ("config", "machineconfig"):
        raise Fail(f"unknown positional argument {ctx.args[0]}")
    if not ctx["file"]:
        raise Fail("no filename supplied for configuration")
    try:
        raw = Path(ctx["file"]).read_text()
    except FileNotFoundError:
        raise Fail(
            f'failed to read configuration from "{ctx["file"]}": open {ctx["file"]}: '
            "no such file or directory"
        ) from None
    if not raw.strip():
        raise Fail("no configuration data read")
    docs = mc.decode_docs(raw)
    if ctx["config-patch"]:
        contract = contract_of_docs(docs)
        patches = load_patches(ctx["config-patch"], contract)
        docs = mpatch.apply(docs, patches, contract)
        # talosctl sends patched.Bytes(): Go-struct order, or JSONToYAML's after a JSON6902 patch
        raw = mc.encode_config(docs, played(), json6902=patches[-1].kind == "json6902")
        docs = mc.decode_docs(raw)
    mode = ctx["mode"]
    if mode == "interactive":
        raise Fail("emulator: unsupported flag --mode=interactive for talosctl apply-config")
    conn = Conn(ctx, ctx["insecure"])
    wrap = "error applying new configuration"
    if conn.insecure:
        ip = conn.nodes[0]  # several --nodes are load-balanced endpoints: one node gets it
        try:
            node = conn.target(ip, "apply-config")
        except RPC as e:
            raise Fail(f"{wrap}: {e}") from None
        if ctx["dry-run"]:
            ctx.err(
                "Dry run summary:\nNode is running in maintenance mode and does not have a config yet.\n"
            )
            return
        if mode not in ("auto", "reboot", "try"):
            raise Fail(
                f"{wrap}: rpc error: code = Unimplemented desc = apply configuration "
                f"--mode='{mode}' is not supported in maintenance mode"
            )
        _apply_maintenance(ctx, node["ip"], docs, raw)
        return

    def one(node: dict[str, Any]) -> None:
        _apply_running(ctx, node, docs, raw, mode)

    for_each(conn, "apply-config", one, wrap)


def _check_config(node: dict[str, Any], docs: list[Any]) -> dict[str, Any]:
    docs = gendocs.fold_docs(docs)  # 1.14 documents seen through the v1alpha1 paths
    v1 = next((d for d in docs if isinstance(d, dict) and mc.is_v1alpha1(d)), None)
    if v1 is None:
        raise RPC(
            "InvalidArgument",
            "configuration validation failed: 1 error occurred:\n\t* "
            "machine instructions are required\n\n",
        )
    contract = contract_of_docs(docs)
    try:
        mc.check_unknown(v1, contract, False)
    except mc.ConfigError as e:
        raise RPC("Unknown", f"failed to parse config: {e}") from None
    errors, _ = mc.validate(docs, "metal", contract)
    problem = _install_disk_problem(node, v1)
    if problem:
        errors.append(problem)
    if errors:
        raise RPC("InvalidArgument", "configuration validation failed: " + mc.multierror(errors))
    return v1


def _ensure_cluster(state: State, doc: dict[str, Any]) -> str:
    c = doc["cluster"]
    cid = c["id"].replace("/", "_").replace("+", "-").rstrip("=")
    if state.cluster(cid) is None:
        state.save_cluster(
            {
                "id": cid,
                "name": c.get("clusterName") or "",
                "endpoint": c["controlPlane"]["endpoint"],
                "bootstrapped": False,
                "bootstrap_node": None,
                "members": [],
                "k8s_ca": c["ca"],
                "created": now(),
            }
        )
    return cid


def _apply_maintenance(ctx: Ctx, ip: str, docs: list[Any], raw: str) -> None:
    state = ctx.state
    with state.locked():
        node = N.load(state, ip)
        assert node is not None
        if node.get("config"):
            raise Fail(f"error applying new configuration: {CERT_REQUIRED}")
        try:
            doc = _check_config(node, docs)
        except RPC as e:
            raise Fail(f"error applying new configuration: {e}") from None
        settings = state.fleet()["settings"]
        node["config"], node["config_text"] = doc, raw
        node["cluster_id"] = _ensure_cluster(state, doc)
        mtype = doc["machine"]["type"]
        if node.get("intended_role") and node["intended_role"] != mtype:
            N.event(node, "role mismatch", intended=node["intended_role"], applied=mtype)
            node["role_mismatch"] = {"intended": node["intended_role"], "applied": mtype}
        image = doc["machine"]["install"].get("image", "")
        tag = image.rsplit(":", 1)[-1] if ":" in image else node["talos_version"]
        N.event(node, "apply-config", mode="maintenance", type=mtype)
        N.schedule(
            node,
            [
                (0.0, "installing", {}),
                (
                    settings["install_seconds"],
                    "rebooting",
                    {"talos_version": tag, "bootloader": releases.bootloader_for_install(tag)},
                ),
                (settings["reboot_seconds"], "booting", {}),
                (settings["boot_seconds"], "running", {}),
            ],
        )
        N.advance(node, stuck_stage(state, ip))
        state.save_node(node)


def _diff(old: str, new: str) -> str:
    d = "".join(
        difflib.unified_diff(old.splitlines(keepends=True), new.splitlines(keepends=True), "a", "b")
    )
    return d or "No changes."


def _apply_running(ctx: Ctx, node: dict[str, Any], docs: list[Any], raw: str, mode: str) -> None:
    state = ctx.state
    no_reboots = releases.since("apply_mode_reboot_removed", node["talos_version"])
    if no_reboots and mode == "reboot":
        # a 1.14 node refuses REBOOT outside maintenance (v1alpha1_server.go @v1.14.0-rc.1)
        raise RPC(
            "Unimplemented",
            "the REBOOT mode is not supported, please use AUTO or NO_REBOOT modes instead",
        )
    doc = _check_config(node, docs)
    old = node["config"]
    if doc["machine"]["type"] != old["machine"]["type"]:
        raise RPC(
            "InvalidArgument",
            "configuration validation failed: 1 error occurred:\n\t* "
            "machine type can't be changed\n\n",
        )
    needs_reboot = doc["machine"].get("install") != old["machine"].get("install")
    if no_reboots:
        needs_reboot = False  # from 1.14 AUTO means NO_REBOOT, which never asks for a reboot
    # machined diffs both re-encoded from its Go types (configdiff.go EncodeBytes, comments off)
    old_text = mc.encode_config([old], node["talos_version"])
    new_text = mc.encode_config([doc], node["talos_version"])
    if mode == "auto":
        details = (
            "Applied configuration with a reboot: install configuration changed"
            if needs_reboot
            else "Applied configuration without a reboot"
        )
    elif mode == "no-reboot":
        if needs_reboot:
            raise RPC(
                "InvalidArgument",
                "apply configuration requires a reboot: install configuration changed",
            )
        details = "Applied configuration without a reboot"
    elif mode == "reboot":
        details = "Applied configuration with a reboot"
    elif mode == "staged":
        details = "Staged configuration to be applied after the next reboot"
    else:
        details = (
            "Applied configuration without a reboot\nThe config is applied in 'try' mode "
            f"and will be automatically reverted back in {int(ctx['timeout'] // 60)}m{int(ctx['timeout'] % 60)}s"
        )
    if ctx["dry-run"]:
        ctx.err(
            f"Dry run summary:\n{details} (skipped in dry-run).\nConfig diff:\n\n{_diff(old_text, new_text)}\n"
        )
        return
    with state.locked():
        node = N.load(state, node["ip"]) or node
        settings = state.fleet()["settings"]
        if mode == "staged":
            node["staged_config"] = [doc, raw]
        elif mode == "try":
            node["config"], node["config_text"] = doc, raw
            node["timeline"].append(
                {
                    "at": now() + ctx["timeout"],
                    "stage": node["stage"],
                    "set": {"config": old, "config_text": node.get("config_text")},
                }
            )
        else:
            node["config"], node["config_text"] = doc, raw
            if needs_reboot or mode == "reboot":
                N.schedule(node, N.reboot_steps(settings))
        N.event(node, "apply-config", mode=mode)
        N.advance(node, stuck_stage(state, node["ip"]))
        state.save_node(node)
    ctx.err(details + "\n")

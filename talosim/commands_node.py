"""talosctl commands that talk to (emulated) nodes over the Talos API.

Connection rules (contract §1.1, §1.3): with --insecure the nodes are dialled directly, no
client certificate, and only maintenance mode answers; otherwise the first reachable endpoint
must present the talosconfig CA and accept its client certificate, and proxies to the target
node (errors then carry a `<node>: ` prefix).
"""

from __future__ import annotations

import datetime as dt
import difflib
import json
import time
import uuid
from pathlib import Path
from typing import Any

from . import TALOSCTL_VERSION
from .cli import Ctx, Fail, command, endpoint_host
from .commands_gen import _table, load_patches
from .flags import Flag
from .machine import gendocs, manifests, pki, releases
from .machine import machineconfig as mc
from .machine import nodes as N
from .machine import patch as mpatch
from .machine.checks import CHECKS_17, CHECKS_18, check
from .machine.clock import now, wait_until
from .machine.faults import stuck_stage, take_fault
from .machine.state import State


class RPC(Exception):
    def __init__(self, code: str, desc: str) -> None:
        super().__init__(f"rpc error: code = {code} desc = {desc}")
        self.code = code


def refused(ip: str) -> RPC:
    return RPC(
        "Unavailable",
        'connection error: desc = "transport: Error while dialing: dial tcp '
        f'{ip}:50000: connect: connection refused"',
    )


UNKNOWN_AUTHORITY = RPC(
    "Unavailable",
    'connection error: desc = "transport: authentication '
    "handshake failed: tls: failed to verify certificate: x509: certificate "
    'signed by unknown authority"',
)
CERT_REQUIRED = RPC(
    "Unavailable",
    'connection error: desc = "transport: authentication handshake '
    'failed: remote error: tls: certificate required"',
)


def multierror(errs: list[str]) -> str:
    """hashicorp/go-multierror's text, blank line at the end included."""
    return mc.multierror(errs)


# -- connection -------------------------------------------------------------------------------
class Conn:
    """An authenticated (or insecure) session with a set of target nodes."""

    def __init__(self, ctx: Ctx, insecure: bool, need_nodes: bool = True) -> None:
        self.ctx = ctx
        self.state = ctx.state
        self.insecure = insecure
        self.nodes: list[str] = list(ctx["nodes"])
        self.endpoint: dict[str, Any] | None = None
        if insecure:
            if not self.nodes:
                raise Fail("failed to determine endpoints")
            return
        cfg = ctx.talosconfig()
        context = ctx.context(cfg)
        endpoints = list(ctx["endpoints"]) or list((context or {}).get("endpoints") or [])
        if not endpoints:
            raise Fail("error constructing client: failed to determine endpoints")
        if context is None:
            name = ctx["context"] or cfg.get("context")
            if not cfg["contexts"]:
                raise Fail(
                    "error constructing client: failed to create client connection: "
                    "failed to resolve configuration context: talos config file is empty"
                )
            raise Fail(
                "error constructing client: failed to create client connection: failed to "
                f'resolve configuration context: context "{name}" not found in config'
            )
        if not self.nodes:
            self.nodes = list(context.get("nodes") or [])
        if need_nodes and not self.nodes:
            raise Fail(
                "nodes are not set for the command: please use `--nodes` flag or "
                "configuration file to set the nodes to run the command against"
            )
        self.context = context
        self.endpoints = [endpoint_host(e) for e in endpoints]

    def _resolve_endpoint(self, host: str) -> dict[str, Any] | None:
        node = N.load(self.state, host)
        if node is not None:
            return node
        # A VIP answers on the running control plane that holds it (after bootstrap).
        for n in self.state.nodes():
            n = N.refresh(self.state, n)
            if not N.is_controlplane(n) or n["stage"] != "running":
                continue
            ifaces = ((n["config"].get("machine") or {}).get("network") or {}).get(
                "interfaces"
            ) or []
            if any((i.get("vip") or {}).get("ip") == host for i in ifaces):
                cl = N.cluster_of(self.state, n)
                if cl and cl.get("bootstrapped"):
                    return n
        return None

    def dial(self) -> dict[str, Any]:
        """Connect to the first reachable endpoint and authenticate (mTLS)."""
        if self.endpoint is not None:
            return self.endpoint
        for host in self.endpoints:
            node = self._resolve_endpoint(host)
            if node is None or N.is_unreachable(self.state, node):
                continue
            if not node.get("config"):
                raise UNKNOWN_AUTHORITY  # maintenance mode presents a self-signed certificate
            ca = pki.unb64(node["config"]["machine"]["ca"]["crt"])
            if self.context.get("ca") and pki.unb64(self.context["ca"]) != ca:
                raise UNKNOWN_AUTHORITY
            crt = self.context.get("crt")
            key_usage = releases.client_key_usage_enforced(node["talos_version"], node["config"])
            if key_usage and crt and not releases.has_client_auth_usage(pki.unb64(crt)):
                crt = None  # apid wants the clientAuth extended key usage: "bad certificate"
            if not crt or not pki.signed_by(pki.unb64(crt), ca):
                raise RPC(
                    "Unavailable",
                    'connection error: desc = "transport: authentication '
                    'handshake failed: remote error: tls: bad certificate"',
                )
            self.endpoint = node
            self._ensure_kubeapi(node)
            return node
        raise refused(self.endpoints[0])

    def _ensure_kubeapi(self, node: dict[str, Any]) -> None:
        """A bootstrapped cluster's API server runs whenever the cluster is used: it stops
        after an idle period, and the next talosctl call starts it again."""
        cluster = N.cluster_of(self.state, node)
        if cluster and cluster.get("bootstrapped") and cluster.get("k8s_ca"):
            from .machine import kubeapi

            kubeapi.ensure(self.state, cluster)

    def target(self, ip: str, command: str) -> dict[str, Any]:
        """The node record of `ip`, reached through the endpoint (or directly when insecure)."""
        if self.insecure:
            node = N.load(self.state, ip)
            if N.is_unreachable(self.state, node):
                raise refused(ip)
            assert node is not None
            if node.get("config"):
                raise CERT_REQUIRED
        else:
            ep = self.dial()
            node = ep if ep["ip"] == ip else N.load(self.state, ip)
            if N.is_unreachable(self.state, node):
                raise refused(ip)
            assert node is not None
            if not node.get("config") or node.get("cluster_id") != ep.get("cluster_id"):
                raise UNKNOWN_AUTHORITY
        self._faults(ip, command)
        return node

    def _faults(self, ip: str, command: str) -> None:
        with self.state.locked():
            hang = take_fault(self.state, ip, command, ("hang",))
        if hang:
            # on the fleet clock: a frozen clock holds the call until a test advances it
            wait_until(now() + float(hang.get("seconds", 0)), self.state.root)
        with self.state.locked():
            err = take_fault(self.state, ip, command, ("error",))
        if err:
            raise RPC(err.get("code", "Unknown"), err.get("message", "injected failure"))

    def label(self, ip: str) -> str:
        """How a per-node error is prefixed: proxied calls carry the node, insecure ones not."""
        return "" if self.insecure else f"{ip}: "


def for_each(conn: Conn, command: str, fn: Any, wrap: str) -> None:
    """Run fn(node) per target; collect per-node errors into talosctl's multierror."""
    errs = []
    for ip in conn.nodes:
        try:
            node = conn.target(ip, command)
            fn(node)
        except RPC as e:
            if conn.insecure or e.code == "Unavailable" and conn.endpoint is None:
                raise Fail(f"{wrap}: {e}") from None
            errs.append(f"{conn.label(ip)}{e}")
    if errs:
        raise Fail(f"{wrap}: " + multierror(errs))


def single(conn: Conn, name: str) -> str:
    if len(conn.nodes) > 1:
        raise Fail(f'command "{name}" is not supported with multiple nodes')
    return conn.nodes[0]


# -- get --------------------------------------------------------------------------------------
RESOURCES = {
    "machinestatus": (
        "MachineStatuses.runtime.talos.dev",
        "runtime",
        "MachineStatus",
        (
            "machinestatus",
            "machinestatuses",
            "machinestatuses.runtime",
            "machinestatuses.runtime.talos",
            "machinestatuses.runtime.talos.dev",
        ),
    ),
    "member": (
        "Members.cluster.talos.dev",
        "cluster",
        "Member",
        (
            "member",
            "members",
            "members.cluster",
            "members.cluster.talos",
            "members.cluster.talos.dev",
        ),
    ),
    "nodename": (
        "Nodenames.kubernetes.talos.dev",
        "k8s",
        "Nodename",
        (
            "nodename",
            "nodenames",
            "nodenames.kubernetes",
            "nodenames.kubernetes.talos",
            "nodenames.kubernetes.talos.dev",
        ),
    ),
    "machineconfig": (
        "MachineConfigs.config.talos.dev",
        "config",
        "MachineConfig",
        (
            "machineconfig",
            "machineconfigs",
            "mc",
            "machineconfigs.config",
            "machineconfigs.config.talos",
            "machineconfigs.config.talos.dev",
        ),
    ),
}


def _iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _resources(state: State, node: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    rtype, ns, _, _ = RESOURCES[kind]
    meta = {
        "namespace": ns,
        "type": rtype,
        "version": node.get("resource_version", 1),
        "owner": "",
        "phase": "running",
        "created": _iso(node["created"]),
        "updated": _iso(node.get("stage_since", node["created"])),
    }
    if kind == "machinestatus":
        return [
            {
                "metadata": {**meta, "id": "machine", "owner": "runtime.MachineStatusController"},
                "spec": N.machine_status(state, node),
            }
        ]
    if kind == "nodename":
        return [
            {
                "metadata": {**meta, "id": "nodename", "owner": "k8s.NodenameController"},
                "spec": {
                    "nodename": N.hostname(node),
                    "hostnameVersion": "1",
                    "skipNodeRegistration": False,
                },
            }
        ]
    if kind == "machineconfig":
        return [{"metadata": {**meta, "id": "v1alpha1"}, "spec": node["config"]}]
    out = []
    for other in state.nodes():
        other = N.refresh(state, other)
        if (
            other.get("cluster_id") != node.get("cluster_id")
            or other["stage"] in N.UNREACHABLE_STAGES
        ):
            continue
        spec: dict[str, Any] = {
            "nodeId": N.member_id(other),
            "addresses": [other["ip"]],
            "hostname": N.hostname(other),
            "machineType": N.machine_type(other),
            "operatingSystem": f"Talos ({other['talos_version']})",
        }
        if N.is_controlplane(other):
            spec["controlPlane"] = {"port": 6443}
        out.append(
            {
                "metadata": {**meta, "id": N.hostname(other), "owner": "cluster.MemberController"},
                "spec": spec,
            }
        )
    return out


def _jsonpath(expr: str, obj: Any) -> list[Any]:
    """The subset of k8s jsonpath talosctl users write: {.a.b}, {.a[0].b}, {.a[*].b}."""
    import re

    inner = expr.strip()
    if inner.startswith("{") and inner.endswith("}"):
        inner = inner[1:-1]
    if not inner.startswith("."):
        raise Fail(f"error parsing jsonpath: unrecognized identifier {inner}")
    vals = [obj]
    for part in re.findall(r"\.([^.\[]+)|\[(\*|\d+)\]", inner):
        name, idx = part
        nxt: list[Any] = []
        for v in vals:
            if name:
                if isinstance(v, dict) and name in v:
                    nxt.append(v[name])
            elif idx == "*" and isinstance(v, list):
                nxt.extend(v)
            elif isinstance(v, list) and int(idx) < len(v):
                nxt.append(v[int(idx)])
        vals = nxt
    return vals


@command(
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
        for r in _resources(ctx.state, node, kind):
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
            for v in _jsonpath(fmt[len("jsonpath=") :], json.loads(json.dumps(r))):
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
        ctx.out(_table(rows))


# -- version ----------------------------------------------------------------------------------
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


@command(
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
    ctx.out(f"Talos {TALOSCTL_VERSION}\n" if ctx["short"] else _version_block(TALOSCTL_VERSION))
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


# -- apply-config -----------------------------------------------------------------------------
# talosctl's --mode values: interactive is gone from 1.13, reboot from 1.14 (releases.yaml)
MODES = tuple(
    m
    for m in ("auto", "interactive", "no-reboot", "reboot", "staged", "try")
    if not (
        m == "interactive" and releases.since("apply_mode_interactive_removed", TALOSCTL_VERSION)
    )
    and not (m == "reboot" and releases.since("apply_mode_reboot_removed", TALOSCTL_VERSION))
)


def _install_disk_problem(node: dict[str, Any], doc: dict[str, Any]) -> str | None:
    disk = ((doc.get("machine") or {}).get("install") or {}).get("disk")
    if disk and disk not in [d["path"] for d in node["disks"]]:
        return f'specified install disk does not exist: "{disk}"'
    return None


@command(
    "apply-config",
    aliases=("apply",),
    nargs=(0, 1),
    flags=[
        Flag("file", short="f", help="the filename of the updated configuration"),
        Flag(
            "insecure",
            "bool",
            short="i",
            help="apply the config using the insecure (encrypted with no auth) maintenance service",
        ),
        Flag("mode", short="m", default="auto", choices=MODES, help="apply config mode"),
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
    ],
)
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
        from .commands_gen import _contract_of_docs

        contract = _contract_of_docs(docs)
        patches = load_patches(ctx["config-patch"], contract)
        docs = mpatch.apply(docs, patches, contract)
        # talosctl sends patched.Bytes(): Go-struct order, or JSONToYAML's after a JSON6902 patch
        raw = mc.encode_config(docs, TALOSCTL_VERSION, json6902=patches[-1].kind == "json6902")
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
    from .commands_gen import _contract_of_docs

    docs = gendocs.fold_docs(docs)  # 1.14 documents seen through the v1alpha1 paths
    v1 = next((d for d in docs if isinstance(d, dict) and mc.is_v1alpha1(d)), None)
    if v1 is None:
        raise RPC(
            "InvalidArgument",
            "configuration validation failed: 1 error occurred:\n\t* "
            "machine instructions are required\n\n",
        )
    contract = _contract_of_docs(docs)
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


# -- health -----------------------------------------------------------------------------------
@command(
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
            time.sleep(min(0.2, max(0.0, deadline - time.time())))


# -- kubeconfig -------------------------------------------------------------------------------
@command(
    "kubeconfig",
    nargs=(0, 1),
    use="talosctl kubeconfig [local-path]",
    flags=[
        Flag(
            "force",
            "bool",
            short="f",
            help="Force overwrite of kubeconfig if already present, force overwrite on kubeconfig merge",
        ),
        Flag("force-context-name", help="Force context name for kubeconfig merge"),
        Flag("merge", "bool", short="m", default=True, help="Merge with existing kubeconfig"),
    ],
)
def kubeconfig(ctx: Ctx) -> None:
    from . import kubeconfig as kc

    conn = Conn(ctx, False)
    ip = single(conn, "kubeconfig")
    try:
        node = conn.target(ip, "kubeconfig")
    except RPC as e:
        raise Fail(f"error copying: 1 error occurred:\n\t* {ip}: {e}\n") from None
    if not N.is_controlplane(node):
        raise Fail(
            f"error copying: 1 error occurred:\n\t* {ip}: rpc error: code = Unknown "
            "desc = kubeconfig is only available on control plane nodes\n"
        )
    kc.write(ctx, node)


# -- upgrade / reboot / reset -----------------------------------------------------------------
def _tracker(
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
            time.sleep(0.1)


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


def _tracked(ctx: Ctx, conn: Conn, command: str, one: Any) -> None:
    """Start the action on every node, then follow them with the tracker (--wait)."""
    for ip in conn.nodes:
        try:
            one(conn.target(ip, command))
        except RPC as e:
            ctx.err(f'"{ip}": {e}\n')
            raise Fail("", suppress=True) from None


def _upgrade_checks(state: State, node: dict[str, Any], preserve: bool) -> None:
    cluster = N.cluster_of(state, node)
    members = N.members(state, cluster)
    minor = tuple(int(x) for x in node["talos_version"].lstrip("v").split(".")[:2])
    prefix = "error validating etcd for upgrade: "
    if len(members) == 1 and minor < (1, 8) and not preserve:
        raise RPC(
            "Unknown",
            prefix + "only 1 etcd member found; assuming this is not an HA "
            "setup and refusing to upgrade; if this is a single-node cluster, use "
            "--preserve to upgrade",
        )
    for m in members:
        # "installing": a staged upgrade runs its installer early in boot, before etcd starts
        if m["stage"] in ("rebooting", "booting", "upgrading", "installing", "off"):
            raise RPC(
                "Unknown",
                prefix + f"etcd member {N.member_id(m)} is not started, all "
                "members must be running to perform an upgrade",
            )
        if not N.etcd_healthy(state, m, cluster):
            raise RPC(
                "Unknown",
                prefix + f"etcd member {N.member_id(m)} is not healthy; all members "
                "must be healthy to perform an upgrade: context deadline exceeded",
            )
    if 1 < len(members) < 3:
        raise RPC(
            "Unknown",
            prefix + f"etcd member count({len(members)}) is insufficient to "
            "maintain quorum if upgrade commences",
        )


def _image_version(image: str) -> str:
    tag = image.rsplit(":", 1)[-1] if ":" in image.rsplit("/", 1)[-1] else ""
    import re

    if not re.fullmatch(r"v\d+\.\d+\.\d+(-[0-9A-Za-z.-]+)?", tag):
        raise RPC(
            "Unknown",
            f'error validating installer image "{image}": emulator: installer tags must be vX.Y.Z',
        )
    missing = releases.installer_image_problem(image, tag)  # no ghcr installer from 1.14
    if missing:
        raise RPC("Unknown", f'error validating installer image "{image}": {missing}')
    return tag


@command(
    "upgrade",
    flags=[
        Flag(
            "image",
            short="i",
            default=releases.default_installer_image(TALOSCTL_VERSION),
            help="the container image to use for performing the install",
        ),
        Flag(
            "reboot-mode",
            short="m",
            default="default",
            help="select the reboot mode during upgrade",
        ),
        Flag("preserve", "bool", short="p", help="preserve data"),
        Flag("stage", "bool", short="s", help="stage the upgrade to perform it after a reboot"),
        # talosctl >= 1.13 (cmd/talosctl/cmd/talos/upgrade.go @v1.13.9: BoolVar "legacy")
        *(
            [Flag("legacy", "bool", help="force use of legacy upgrade method")]
            if releases.since("lifecycle_upgrade", TALOSCTL_VERSION)
            else []
        ),
        Flag(
            "force",
            "bool",
            short="f",
            help="force the upgrade (skip checks on etcd health and members, might lead to data loss)",
        ),
        Flag(
            "insecure",
            "bool",
            help="upgrade using the insecure (encrypted with no auth) maintenance service",
        ),
        *TRACKER_FLAGS,
    ],
)
def upgrade(ctx: Ctx) -> None:
    if ctx["reboot-mode"] not in ("default", "powercycle"):
        raise Fail(f"invalid reboot mode: {ctx['reboot-mode']}")
    wait = ctx["wait"] or ctx["debug"]
    if wait and ctx["insecure"]:
        raise Fail("cannot use --wait and --insecure together")
    if ctx["insecure"]:
        raise Fail("emulator: unsupported flag --insecure for talosctl upgrade")
    _warn_deprecated_upgrade_flags(ctx)
    if ctx.flags.values.get("legacy"):
        # upgrade.go @v1.13.9 cli.Warning (pkg/cli/output.go prefixes "WARNING: ")
        ctx.err(
            "WARNING: Forcing use of legacy upgrade method. This flag is deprecated and will be "
            "removed in Talos 1.18.\n"
        )
    conn = Conn(ctx, False)
    state = ctx.state
    acks: list[tuple[str, str]] = []
    boot_ids: dict[str, str] = {}

    def one(node: dict[str, Any]) -> None:
        version = _image_version(ctx["image"])
        with state.locked():
            node = N.load(state, node["ip"]) or node
            # LifecycleService.Upgrade (talosctl and node >= 1.13) has no etcd quorum guard
            lifecycle = releases.uses_lifecycle_upgrade(TALOSCTL_VERSION, node["talos_version"])
            lifecycle = lifecycle and not ctx.flags.values.get("legacy")
            if N.is_controlplane(node) and not ctx["force"] and not lifecycle:
                _upgrade_checks(state, node, ctx["preserve"])
            boot_ids[node["ip"]] = node["boot_id"]
            settings = state.fleet()["settings"]
            if ctx["stage"] and _stage_honoured(ctx, node):
                rollback = take_fault(state, node["ip"], "upgrade", ("rollback",))
                up = {"image": ctx["image"], "version": version, "rollback": bool(rollback)}
                N.event(node, "upgrade staged", image=ctx["image"])
                N.schedule(node, N.stage_upgrade_steps(settings, up))
                node["staged_upgrade"] = up
                node["upgrade_failure"] = None
            else:
                seq_fault = take_fault(state, node["ip"], "upgrade-sequence", ("error",))
                seq_fault = seq_fault or releases.installer_preflight(
                    node["talos_version"], version
                )
                rollback = take_fault(state, node["ip"], "upgrade", ("rollback",))
                N.event(node, "upgrade", image=ctx["image"], failed=bool(seq_fault))
                if seq_fault:
                    node["upgrade_failure"] = seq_fault.get("message", "sequence failed")
                    N.schedule(
                        node,
                        [
                            (0.0, "upgrading", {}),
                            (settings["upgrade_seconds"], "running", {"unschedulable": False}),
                        ],
                        reboot=False,
                    )
                else:
                    node["upgrade_failure"] = None
                    new = node["talos_version"] if rollback else version
                    N.schedule(
                        node,
                        [
                            (0.0, "upgrading", {"unschedulable": True}),
                            (
                                settings["upgrade_seconds"],
                                "rebooting",
                                {
                                    "talos_version": new,
                                    **releases.boot_after_upgrade(node, lifecycle),
                                },
                            ),
                            (settings["reboot_seconds"], "booting", {}),
                            (settings["boot_seconds"], "running", {"unschedulable": False}),
                        ],
                    )
            N.advance(node, stuck_stage(state, node["ip"]))
            state.save_node(node)
        acks.append(
            (node["ip"], time.strftime("%Y-%m-%d %H:%M:%S.000000000 +0000 UTC", time.gmtime()))
        )

    if wait:
        # a staged upgrade is waited for too: its sequence reboots the node by itself
        _tracked(ctx, conn, "upgrade", one)
        _upgrade_wait(ctx, conn.nodes, boot_ids)
        return
    for_each(conn, "upgrade", one, "error performing upgrade")
    rows = [["NODE", "ACK", "STARTED"]] + [
        [ip, "Upgrade request received", t + "   "] for ip, t in acks
    ]
    ctx.out(_table(rows))


# talosctl v1.13 upgrades through LifecycleService.Upgrade when the node runs Talos
# ">1.13.0-alpha.2 <2.0.0" (talosUpgradeAPIVersionRange) and falls back to the legacy
# MachineService.Upgrade otherwise; --force, --insecure, --preserve and --stage only act on that
# legacy path and are deprecated (v1.13.0 cmd/talosctl/cmd/talos/upgrade.go).
LIFECYCLE_UPGRADE_FROM = (1, 13)
LEGACY_UPGRADE_FLAGS = ("force", "insecure", "preserve", "stage")


def _client_minor() -> tuple[int, int]:
    return _minor(TALOSCTL_VERSION)


def _warn_deprecated_upgrade_flags(ctx: Ctx) -> None:
    """pflag's deprecation notice, printed on stderr while parsing (v1.13.0 upgrade.go init())."""
    if _client_minor() < LIFECYCLE_UPGRADE_FROM:
        return
    for name in LEGACY_UPGRADE_FLAGS:
        if name in ctx.flags.changed:
            ctx.err(
                f"Flag --{name} has been deprecated, legacy flag for MachineService.Upgrade "
                "fallback, to be removed in Talos 1.18\n"
            )


def _stage_honoured(ctx: Ctx, node: dict[str, Any]) -> bool:
    """Whether `--stage` reaches a StageUpgrade sequence: always up to talosctl v1.12; from
    v1.13 only on the legacy path (a node older than 1.13, or --legacy)."""
    if _client_minor() < LIFECYCLE_UPGRADE_FROM or ctx.flags.values.get("legacy"):
        return True
    if _minor(node["talos_version"]) < LIFECYCLE_UPGRADE_FROM:
        ctx.err("New upgrade API is not available, falling back to legacy\n")
        return True
    N.event(node, "upgrade --stage ignored (LifecycleService path)")
    return False


def _upgrade_wait(ctx: Ctx, ips: list[str], boot_ids: dict[str, str]) -> None:
    state = ctx.state
    for ip in ips:
        node = N.load(state, ip)
        if node and node.get("upgrade_failure"):
            ctx.err(f'"{ip}": waiting for actor ID\n"{ip}": actor ID: {uuid.uuid4()}\n')
            ctx.err(f'"{ip}": task: upgrade action: START\n')
            ctx.err(
                f'"{ip}": sequence: upgrade action: START error: [code: INTERNAL message: '
                f"{node['upgrade_failure']}]\n"
            )
            ctx.err(f'"{ip}": {node["upgrade_failure"]}\n')
            raise Fail("", suppress=True)
    _tracker(ctx, ips, boot_ids, ctx["timeout"])


@command(
    "reboot",
    flags=[
        Flag("mode", short="m", default="default", help="select the reboot mode"),
        *TRACKER_FLAGS,
    ],
)
def reboot(ctx: Ctx) -> None:
    if ctx["mode"] not in ("default", "powercycle"):
        raise Fail(f'invalid reboot mode: "{ctx["mode"]}"')
    conn = Conn(ctx, False)
    state = ctx.state
    boot_ids: dict[str, str] = {}

    def one(node: dict[str, Any]) -> None:
        with state.locked():
            node = N.load(state, node["ip"]) or node
            boot_ids[node["ip"]] = node["boot_id"]
            settings = state.fleet()["settings"]
            if node["stage"] in N.LOCKED_STAGES:
                # The API call answers with an actor ID; the Reboot sequence then fails to take
                # the sequencer lock and publishes "sequence not started: locked" without that
                # actor ID, so `reboot --wait` keeps waiting and follows the running sequence
                # (v1.7.0 internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_controller.go Run,
                # v1alpha1_priority_lock.go; cmd/talosctl/pkg/talos/action/node.go handleEvents).
                N.event(
                    node,
                    "sequence",
                    sequence="reboot",
                    action="NOOP",
                    error="sequence not started: locked",
                    code="LOCKED",
                )
                state.save_node(node)
                return
            N.event(node, "reboot")
            rollback = take_fault(state, node["ip"], "reboot", ("rollback",))
            if rollback and node.get("staged_upgrade"):
                node["staged_upgrade"] = None
            N.schedule(node, N.reboot_steps(settings, {"unschedulable": False}))
            N.advance(node, stuck_stage(state, node["ip"]))
            state.save_node(node)

    if ctx["wait"] or ctx["debug"]:
        _tracked(ctx, conn, "reboot", one)
        _tracker(ctx, conn.nodes, boot_ids, ctx["timeout"])
        return
    for_each(conn, "reboot", one, "error executing reboot")


# -- upgrade-k8s ------------------------------------------------------------------------------
def _minor(v: str) -> tuple[int, int]:
    a = v.lstrip("v").split(".")
    return int(a[0]), int(a[1])


@command(
    "upgrade-k8s",
    flags=[
        Flag("from", help="the Kubernetes control plane version to upgrade from"),
        Flag(
            "to",
            default=releases.default_kubernetes(TALOSCTL_VERSION),
            help="the Kubernetes control plane version to upgrade to",
        ),
        # talosim's upgrade-k8s always reaches the emulated API server and re-encodes configs
        # without documentation: those three flags are not modelled
        Flag("endpoint", help="the cluster control plane endpoint", modelled=False),
        Flag("dry-run", "bool", help="skip the actual upgrade and show the upgrade plan instead"),
        Flag("pre-pull-images", "bool", default=True, help="pre-pull images before upgrade"),
        Flag("upgrade-kubelet", "bool", default=True, help="upgrade kubelet service"),
        Flag(
            "with-docs",
            "bool",
            default=True,
            help="patch all machine configs adding the documentation for each field",
            modelled=False,
        ),
        Flag(
            "with-examples",
            "bool",
            default=True,
            help="patch all machine configs with the commented examples",
            modelled=False,
        ),
        # image repositories; the tag is always v<to> (v1.7.0 pkg/machinery/constants/constants.go
        # for the defaults, pkg/cluster/kubernetes/talos_managed.go for "%s:v%s")
        Flag(
            "apiserver-image",
            default="registry.k8s.io/kube-apiserver",
            help="kube-apiserver image to use",
        ),
        Flag(
            "controller-manager-image",
            default="registry.k8s.io/kube-controller-manager",
            help="kube-controller-manager image to use",
        ),
        Flag(
            "scheduler-image",
            default="registry.k8s.io/kube-scheduler",
            help="kube-scheduler image to use",
        ),
        Flag("proxy-image", default="registry.k8s.io/kube-proxy", help="kube-proxy image to use"),
        Flag("kubelet-image", default="ghcr.io/siderolabs/kubelet", help="kubelet image to use"),
        # server-side apply of the manifests from talosctl 1.13 (upgrade-k8s.go @v1.13.9)
        *(
            [
                Flag(
                    "manifests-no-prune",
                    "bool",
                    help="whether pruning of previously applied objects should happen after apply",
                ),
                Flag(
                    "manifests-force",
                    "bool",
                    help="whether to recreate objects that contain immutable field changes",
                    modelled=False,
                ),
                Flag(
                    "manifests-inventory-policy",
                    default="AdoptIfNoInventory",
                    help="kubernetes SSA inventory policy (one of 'MustMatch', "
                    "'AdoptIfNoInventory' or 'AdoptAll')",
                    modelled=False,
                ),
                Flag(
                    "manifests-reconcile-timeout",
                    "duration",
                    default=300.0,
                    help="how long to wait for resources to be fully reconciled "
                    "(set to zero to disable waiting)",
                    modelled=False,
                ),
            ]
            if releases.since("manifests_ssa_prune", TALOSCTL_VERSION)
            else []
        ),
    ],
)
def upgrade_k8s(ctx: Ctx) -> None:
    conn = Conn(ctx, False)
    ip = single(conn, "upgrade-k8s")
    state = ctx.state
    try:
        node = conn.target(ip, "upgrade-k8s")
    except RPC as e:
        raise Fail(f"error fetching controlplane nodes: {e}") from None
    cid = node.get("cluster_id")
    recs = [N.refresh(state, n) for n in state.nodes() if n.get("cluster_id") == cid]
    cps = [r for r in recs if N.is_controlplane(r)]
    workers = [r for r in recs if not N.is_controlplane(r)]
    to = ctx["to"].removeprefix("v")
    if ctx["from"]:
        frm = ctx["from"].removeprefix("v")
    else:
        frm = min(
            (r.get("kubelet_version") or "0.0.0" for r in cps),
            key=lambda v: tuple(int(x) for x in v.split(".")),
        )
        ctx.out(f"automatically detected the lowest Kubernetes version {frm}\n")
    f_minor, t_minor = _minor(frm), _minor(to)
    if not (t_minor == f_minor or (t_minor[0] == f_minor[0] and t_minor[1] == f_minor[1] + 1)):
        raise Fail(
            f"unsupported upgrade path {f_minor[0]}.{f_minor[1]}->{t_minor[0]}.{t_minor[1]} "
            f'(from "{frm}" to "{to}")'
        )
    for r in recs:
        played = releases.is_played(r["talos_version"])
        cap = releases.kubernetes_max_minor(r["talos_version"]) if played else None
        if cap and _minor(to) > _minor(cap):
            raise Fail(
                f"error creating upgrade path: Kubernetes {to} is not supported by Talos "
                f"{r['talos_version']} on node {r['ip']} (newest supported: {cap})"
            )
    ctx.out(f"discovered controlplane nodes [{' '.join(json.dumps(r['ip']) for r in cps)}]\n")
    ctx.out(f"discovered worker nodes [{' '.join(json.dumps(r['ip']) for r in workers)}]\n")
    ctx.out("checking for removed Kubernetes component flags\n")
    ctx.out("checking for removed Kubernetes API resource versions\n")
    dry = ctx["dry-run"]
    repo = {
        "kube-apiserver": ctx["apiserver-image"],
        "kube-controller-manager": ctx["controller-manager-image"],
        "kube-scheduler": ctx["scheduler-image"],
        "kube-proxy": ctx["proxy-image"],
        "kubelet": ctx["kubelet-image"],
    }
    if ctx["pre-pull-images"] and not dry:
        for r in cps:
            for comp in ("kube-apiserver", "kube-controller-manager", "kube-scheduler"):
                ctx.out(f' > "{r["ip"]}": pre-pulling {repo[comp]}:v{to}\n')
        for r in recs:
            ctx.out(f' > "{r["ip"]}": pre-pulling {repo["kubelet"]}:v{to}\n')
    images = {
        "apiServer": "kube-apiserver",
        "controllerManager": "kube-controller-manager",
        "scheduler": "kube-scheduler",
    }
    for key, comp in images.items():
        ctx.out(f'updating "{comp}" to version "{to}"\n')
        for r in cps:
            cur = (
                ((r["config"]["cluster"].get(key) or {}).get("image") or "")
                .rsplit(":", 1)[-1]
                .lstrip("v")
            )
            if not _k8s_begin(ctx, r["ip"], comp, f"v{cur}", cur == to, to, dry, echo=True):
                continue
            _k8s_step(
                ctx,
                r["ip"],
                lambda c, k=key, comp=comp: (
                    c["cluster"].setdefault(k, {}).update({"image": f"{repo[comp]}:v{to}"})
                ),
            )
            ctx.out(f' > "{r["ip"]}": machine configuration patched\n')
            ctx.out(f' > "{r["ip"]}": waiting for {comp} pod update\n')
            ctx.out(f' < "{r["ip"]}": successfully updated\n')
    ctx.out(f'updating kube-proxy to version "{to}"\n')
    for r in cps:
        ctx.out(f' > "{r["ip"]}": starting update\n')
        if dry:
            ctx.out(" > skipped in dry-run\n")
            continue
        _k8s_step(
            ctx,
            r["ip"],
            lambda c: (
                c["cluster"]
                .setdefault("proxy", {})
                .update({"image": f"{repo['kube-proxy']}:v{to}"})
            ),
        )
    if ctx["upgrade-kubelet"]:
        ctx.out(f'updating kubelet to version "{to}"\n')
        for r in cps + workers:
            r = N.load(state, r["ip"]) or r
            cur = r.get("kubelet_version") or ""
            if not _k8s_begin(ctx, r["ip"], "kubelet", cur, cur == to, to, dry, echo=False):
                continue
            with state.locked():
                fault = take_fault(state, r["ip"], "upgrade-k8s", ("error",))
            if fault:
                raise Fail(
                    f"failed upgrading kubelet: error updating node {r['ip']!r}: "
                    f"{fault.get('message', 'injected failure')}"
                )

            def kub(c: dict[str, Any]) -> None:
                c["machine"].setdefault("kubelet", {})["image"] = f"{repo['kubelet']}:v{to}"

            _k8s_step(ctx, r["ip"], kub, kubelet=to)
            ctx.out(f' > "{r["ip"]}": machine configuration patched\n')
            ctx.out(f' > "{r["ip"]}": waiting for kubelet restart\n')
            ctx.out(f' > "{r["ip"]}": waiting for node update\n')
            ctx.out(f' < "{r["ip"]}": successfully updated\n')
    ctx.out("updating manifests\n")
    for kind, name in (
        ("ClusterRole", "system:cloud-controller-manager"),
        ("ConfigMap", "kube-proxy"),
    ):
        ctx.out(f" > processing manifest {kind} {name}\n")
        ctx.out("(dry-run) < dry run, change skipped\n" if dry else " < no changes\n")
    if cid and cps and manifests.uses_ssa(TALOSCTL_VERSION, [r["talos_version"] for r in recs]):
        # inline manifests no longer declared are pruned (talosim/manifests.py)
        no_prune = bool(ctx.flags.values.get("manifests-no-prune"))
        with state.locked():
            cl = state.cluster(cid)
            lines = manifests.sync(cl, cps[0]["config"], dry=dry, no_prune=no_prune) if cl else []
            if cl and not dry:
                state.save_cluster(cl)
        for line in lines:
            ctx.out(line + "\n")
    if not dry:
        ctx.out("waiting for all manifests to be applied\n")
        with state.locked():
            cl = state.cluster(cid) if cid else None
            if cl:
                cl["kubernetes_version"] = to
                state.save_cluster(cl)


def _k8s_begin(
    ctx: Ctx, ip: str, comp: str, shown: str, current: bool, to: str, dry: bool, *, echo: bool
) -> bool:
    """upgrade-k8s' per-node preamble; True when the node must actually be updated."""
    ctx.out(f' > "{ip}": starting update\n')
    if current:
        if echo:
            ctx.out(f" > update {comp}: {shown} -> {to}\n")
        ctx.out(f' < "{ip}": successfully updated\n')
        return False
    ctx.out(f" > update {comp}: {shown} -> {to}\n")
    if dry:
        ctx.out(" > skipped in dry-run\n")
        return False
    return True


def _k8s_step(ctx: Ctx, ip: str, change: Any, kubelet: str | None = None) -> None:
    state = ctx.state
    with state.locked():
        r = N.load(state, ip)
        assert r is not None
        change(r["config"])
        # talosctl re-encodes the patched config from its Go structs (pkg/cluster/kubernetes)
        r["config_text"] = mc.encode_config([r["config"]], TALOSCTL_VERSION)
        r["config"] = mc.decode_docs(r["config_text"])[0]
        if kubelet:
            r["kubelet_version"] = kubelet
        r["resource_version"] = r.get("resource_version", 1) + 1
        state.save_node(r)

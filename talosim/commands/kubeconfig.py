"""`talosctl kubeconfig`: the admin kubeconfig of an emulated cluster, merged like go-kubeconfig.

The server URL is always the emulated API server on loopback, whatever the cluster's endpoint.
"""

from __future__ import annotations

import copy
import os
from pathlib import Path
from typing import Any

import yaml

from ..api.command import Commands, Ctx, Fail, Flag
from ..api.conn import Conn, single
from ..api.errors import RPC
from ..machine import nodes as N
from ..machine import pki

COMMANDS = Commands()


@COMMANDS.add(
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
    write(ctx, node)


def _raw(cluster_name: str, server: str, ca: str, crt: bytes, key: bytes) -> dict[str, Any]:
    user = f"admin@{cluster_name}"
    return {
        "apiVersion": "v1",
        "kind": "Config",
        "clusters": [
            {"name": cluster_name, "cluster": {"server": server, "certificate-authority-data": ca}}
        ],
        "users": [
            {
                "name": user,
                "user": {"client-certificate-data": pki.b64(crt), "client-key-data": pki.b64(key)},
            }
        ],
        "contexts": [
            {
                "context": {"cluster": cluster_name, "namespace": "default", "user": user},
                "name": user,
            }
        ],
        "current-context": user,
    }


def _dump(cfg: dict[str, Any]) -> str:
    order = [
        "apiVersion",
        "clusters",
        "contexts",
        "current-context",
        "kind",
        "preferences",
        "users",
    ]
    body = {k: cfg[k] for k in order if k in cfg}
    body.setdefault("preferences", {})
    return yaml.safe_dump(body, sort_keys=False, default_flow_style=False)


def _write(path: Path, cfg: dict[str, Any]) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o755)
    tmp = path.with_name(f".{path.name}.tmp{os.getpid()}")
    fd = os.open(tmp, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
    with os.fdopen(fd, "w") as f:
        f.write(_dump(cfg))
    os.replace(tmp, path)


def _merge(
    ctx: Ctx, existing: dict[str, Any], new: dict[str, Any], force: bool, force_name: str | None
) -> dict[str, Any]:
    out = copy.deepcopy(existing)
    for section in ("clusters", "users", "contexts"):
        out[section] = out.get(section) or []
    cluster_renames: dict[str, str] = {}
    user_renames: dict[str, str] = {}
    labels = {"clusters": "cluster", "users": "auth info", "contexts": "context"}
    body_key = {"clusters": "cluster", "users": "user", "contexts": "context"}
    for section in ("clusters", "users", "contexts"):
        for entry in new[section]:
            entry = copy.deepcopy(entry)
            name = entry["name"]
            # go-kubeconfig substitutes the cluster's new name into auth-info and context names
            for old, repl in cluster_renames.items():
                name = name.replace(old, repl)
            if section == "contexts":
                ref = entry["context"]
                ref["cluster"] = cluster_renames.get(ref["cluster"], ref["cluster"])
                ref["user"] = user_renames.get(ref["user"], ref["user"])
                if force_name:
                    name = force_name
            names = {e["name"]: e for e in out[section]}
            if name in names and names[name].get(body_key[section]) != entry[body_key[section]]:
                if force:
                    out[section] = [e for e in out[section] if e["name"] != name]
                else:
                    i = 1
                    while f"{name}-{i}" in names:
                        i += 1
                    ctx.out(f'renamed {labels[section]} "{name}" -> "{name}-{i}"\n')
                    renamed = f"{name}-{i}"
                    if section == "clusters":
                        cluster_renames[entry["name"]] = renamed
                    elif section == "users":
                        user_renames[entry["name"]] = renamed
                    name = renamed
            elif name in names:
                if section == "contexts":
                    out["current-context"] = name
                continue
            entry["name"] = name
            if section == "contexts":
                out["current-context"] = name
            out[section].append(entry)
    out.setdefault("apiVersion", "v1")
    out.setdefault("kind", "Config")
    return out


def write(ctx: Ctx, node: dict[str, Any]) -> None:
    state = ctx.state
    cfg = node["config"]
    cluster = state.cluster(node["cluster_id"])
    if cluster is None or not cluster.get("bootstrapped"):
        raise Fail(
            "error copying: 1 error occurred:\n\t* "
            f"{node['ip']}: rpc error: code = Unavailable desc = kubeconfig is not "
            "available yet: etcd is not bootstrapped\n"
        )
    from ..machine import kubeapi  # the API server's modules load only for calls that use it

    server = kubeapi.ensure(state, cluster)
    ca = cfg["cluster"]["ca"]
    crt, key = pki.issue(
        pki.unb64(ca["crt"]),
        pki.unb64(ca["key"]),
        kind="ec",
        cn="admin",
        org="system:masters",
        client=True,
    )
    name = cfg["cluster"].get("clusterName") or cluster["name"]
    raw = _raw(name, server, ca["crt"], crt, key)
    if ctx.args:
        path = Path(ctx.args[0])
        merge = ctx["merge"]
    elif ctx["merge"]:
        env = os.environ.get("KUBECONFIG", "")
        if os.pathsep in env:
            raise Fail("multiple kubeconfig files defined")
        path = Path(env) if env else Path.home() / ".kube" / "config"
        merge = True
    else:
        path = Path.cwd()
        merge = False
    if path.is_dir():
        path = path / "kubeconfig"
    if path.exists():
        if merge:
            existing = yaml.safe_load(path.read_text()) or {}
            _write(path, _merge(ctx, existing, raw, ctx["force"], ctx["force-context-name"]))
            return
        if not ctx["force"]:
            raise Fail(f'kubeconfig file already exists, use --force to overwrite: "{path}"')
    if ctx["force-context-name"]:
        raw["contexts"][0]["name"] = ctx["force-context-name"]
        raw["current-context"] = ctx["force-context-name"]
    _write(path, raw)

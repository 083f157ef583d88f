"""The Talos API resources `talosctl get` reads (COSI): their types and aliases, each built from
the machine state, and the jsonpath subset its -o jsonpath= output takes."""

from __future__ import annotations

import re
from typing import Any

from ..machine import nodes as N
from ..machine.state import State
from .command import Fail

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


def build(state: State, node: dict[str, Any], kind: str) -> list[dict[str, Any]]:
    rtype, ns, _, _ = RESOURCES[kind]
    meta = {
        "namespace": ns,
        "type": rtype,
        "version": node.get("resource_version", 1),
        "owner": "",
        "phase": "running",
        "created": N.iso(node["created"]),
        "updated": N.iso(node.get("stage_since", node["created"])),
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


def jsonpath(expr: str, obj: Any) -> list[Any]:
    """The subset of k8s jsonpath talosctl users write: {.a.b}, {.a[0].b}, {.a[*].b}."""
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

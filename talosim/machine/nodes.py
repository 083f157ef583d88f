"""Emulated machines: stages that advance on a stored timeline, readiness, etcd membership.

A node never needs a daemon: each transition is scheduled as (time, stage, fields to set), and
whoever reads the node first applies the transitions that are due (`advance`).
"""

from __future__ import annotations

import datetime as dt
import hashlib
import uuid
from typing import Any

from .clock import now, reached
from .faults import stuck_stage
from .state import State

STAGES = (
    "unknown",
    "booting",
    "installing",
    "maintenance",
    "running",
    "rebooting",
    "shutting down",
    "resetting",
    "upgrading",
)
# While rebooting (or powered off) nothing answers on port 50000.
UNREACHABLE_STAGES = {"rebooting", "off"}
# Stages whose machined sequence a reboot request cannot take over: Upgrade, StageUpgrade,
# Install, Shutdown (v1.7.0..v1.14.0-rc.1 internal/app/machined/pkg/runtime/sequencer.go,
# sequenceTakeOver: only Boot, Initialize, Reboot and Reset can be taken over by Reboot).
LOCKED_STAGES = {"upgrading", "installing", "shutting down"}


def iso(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def new_node(
    ip: str, disks: list[dict[str, str]], talos_version: str, role: str | None
) -> dict[str, Any]:
    t = now()
    return {
        "ip": ip,
        "disks": disks,
        "intended_role": role,
        "talos_version": talos_version,
        "stage": "maintenance",
        "stage_since": t,
        "created": t,
        "boot_id": str(uuid.uuid4()),
        "timeline": [],
        "config": None,
        "config_text": None,
        "staged_config": None,
        "staged_upgrade": None,
        "cluster_id": None,
        "kubelet_version": None,
        "unschedulable": False,
        "resource_version": 1,
        "events": [{"t": t, "event": "created", "stage": "maintenance"}],
    }


def event(node: dict[str, Any], name: str, **detail: Any) -> None:
    node["events"].append({"t": now(), "event": name, **detail})
    node["events"] = node["events"][-200:]


def advance(node: dict[str, Any], stuck: str | None = None, at: float | None = None) -> bool:
    """Apply due transitions; returns True when the node changed."""
    t = now() if at is None else at
    changed = False
    while node["timeline"] and reached(t, node["timeline"][0]["at"]):
        if stuck and node["stage"] == stuck:
            break
        step = node["timeline"].pop(0)
        for k, v in step.get("set", {}).items():
            node[k] = v
        if step.get("apply_staged"):
            _apply_staged(node)
            if node.get("staged_upgrade"):
                _install_staged_upgrade(node, step)
        if step["stage"] == "running" and node.get("config"):
            node["booted_once"] = True
        if step["stage"] != node["stage"]:
            node["stage"] = step["stage"]
            node["stage_since"] = step["at"]
            node["events"].append({"t": step["at"], "event": "stage", "stage": step["stage"]})
        if step.get("new_boot"):
            node["boot_id"] = str(uuid.uuid4())
        node["resource_version"] = node.get("resource_version", 1) + 1
        changed = True
    return changed


def _apply_staged(node: dict[str, Any]) -> None:
    if node.get("staged_config"):
        node["config"], node["config_text"] = node["staged_config"]
        node["staged_config"] = None
        event(node, "staged config applied")


def _install_staged_upgrade(node: dict[str, Any], step: dict[str, Any]) -> None:
    """The first boot after a staged upgrade runs the installer, then reboots into the new
    version (v1.7.0 internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_state.go reads the
    StagedUpgradeImageRef META tag at boot and installs from that image)."""
    up = node["staged_upgrade"]
    node["staged_upgrade"] = None
    new = node["talos_version"] if up.get("rollback") else up["version"]
    event(node, "staged upgrade installing", image=up["image"])
    step["stage"] = "installing"
    at = step["at"] + up["install_seconds"]
    node["timeline"] = [
        {"at": at, "stage": "rebooting", "set": {"talos_version": new}},
        {"at": (at := at + up["reboot_seconds"]), "stage": "booting", "set": {}, "new_boot": True},
        {"at": at + up["boot_seconds"], "stage": "running", "set": {"unschedulable": False}},
    ]


def schedule(
    node: dict[str, Any], steps: list[tuple[float, str, dict[str, Any]]], **flags: Any
) -> None:
    """Replace the timeline: steps of (delay from now, stage, fields to set)."""
    t = now()
    node["timeline"] = []
    acc = t
    after_reboot = False
    for delay, stage, fields in steps:
        acc += max(0.0, delay)
        entry: dict[str, Any] = {"at": acc, "stage": stage, "set": fields}
        # the first stage after a reboot belongs to a new boot, which applies what was staged
        if (stage == "booting" or after_reboot) and flags.get("reboot", True):
            entry["new_boot"] = True
            entry["apply_staged"] = True
        after_reboot = stage == "rebooting"
        node["timeline"].append(entry)


def stage_upgrade_steps(
    settings: dict[str, Any], up: dict[str, Any]
) -> list[tuple[float, str, dict[str, Any]]]:
    """The StageUpgrade sequence: stop pods and services, then reboot by itself
    (internal/app/machined/pkg/runtime/v1alpha1/v1alpha1_sequencer.go, v1.7.0..v1.12.x: its last
    phase is "reboot"). The next boot installs the staged image (`_install_staged_upgrade`)."""
    up.update(
        install_seconds=settings["install_seconds"],
        reboot_seconds=settings["reboot_seconds"],
        boot_seconds=settings["boot_seconds"],
    )
    return [
        (0.0, "upgrading", {}),
        (settings["upgrade_seconds"], "rebooting", {}),
        (settings["reboot_seconds"], "booting", {}),
        (settings["boot_seconds"], "running", {"unschedulable": False}),
    ]


def reboot_steps(
    settings: dict[str, Any], then: dict[str, Any] | None = None
) -> list[tuple[float, str, dict[str, Any]]]:
    return [
        (0.0, "rebooting", {}),
        (settings["reboot_seconds"], "booting", {}),
        (settings["boot_seconds"], "running", then or {}),
    ]


def machine_type(node: dict[str, Any]) -> str | None:
    cfg = node.get("config") or {}
    return (cfg.get("machine") or {}).get("type")


def is_controlplane(node: dict[str, Any]) -> bool:
    return machine_type(node) in ("controlplane", "init")


def hostname(node: dict[str, Any]) -> str:
    cfg = node.get("config") or {}
    name = ((cfg.get("machine") or {}).get("network") or {}).get("hostname")
    if name:
        return str(name)
    # Talos' stable hostname: talos-xxx-yyy derived from the machine id.
    h = hashlib.sha256(node["ip"].encode()).hexdigest()
    return f"talos-{h[:3]}-{h[3:6]}"


def member_id(node: dict[str, Any]) -> str:
    return hashlib.sha256(f"{node['ip']}/{node.get('cluster_id')}".encode()).hexdigest()[:16]


def cluster_of(state: State, node: dict[str, Any]) -> dict[str, Any] | None:
    cid = node.get("cluster_id")
    return state.cluster(cid) if cid else None


def members(state: State, cluster: dict[str, Any] | None) -> list[dict[str, Any]]:
    """etcd members: control planes of a bootstrapped cluster that have booted with its config.

    Derived, not stored, so that readers never need to write (a reset node leaves by losing its
    config; a control plane joins once it has run after the bootstrap).
    """
    if not cluster or not cluster.get("bootstrapped"):
        return []
    out = []
    for n in state.nodes():
        n = refresh(state, n)
        if (
            n.get("cluster_id") == cluster["id"]
            and is_controlplane(n)
            and n.get("booted_once")
            and not n.get("etcd_left")  # `etcd leave` / remove-member (machine/etcd.py)
        ):
            out.append(n)
    out.sort(key=lambda n: (n["ip"] != cluster.get("bootstrap_node"), n["ip"]))
    return out


def etcd_healthy(state: State, node: dict[str, Any], cluster: dict[str, Any] | None) -> bool:
    if not (
        cluster
        and cluster.get("bootstrapped")
        and is_controlplane(node)
        and node.get("booted_once")
        and node.get("cluster_id") == cluster["id"]
    ):
        return False
    if node["stage"] not in ("running", "booting"):
        return False
    if node.get("etcd_left") or node.get("etcd_wiped"):
        return False  # left etcd, or lost its data without leaving (machine/etcd.py)
    return not any(f["node"] == node["ip"] and f["kind"] == "etcd-down" for f in state.faults())


def k8s_registered(node: dict[str, Any], cluster: dict[str, Any] | None) -> bool:
    """Whether the kubelet has registered a Node object (it stays while the node reboots)."""
    return bool(
        cluster
        and cluster.get("bootstrapped")
        and node.get("config")
        and node.get("booted_once")
        and node.get("cluster_id") == cluster["id"]
    )


def k8s_ready(node: dict[str, Any], cluster: dict[str, Any] | None) -> bool:
    """The Kubernetes Node's Ready condition."""
    return k8s_registered(node, cluster) and node["stage"] == "running"


def machine_status(state: State, node: dict[str, Any]) -> dict[str, Any]:
    """spec of the MachineStatus resource: readiness is only checked in booting and running."""
    stage = node["stage"]
    if stage not in ("booting", "running"):
        return {"stage": stage, "status": {"ready": True, "unmetConditions": []}}
    unmet = []
    if stage == "booting":
        unmet.append({"name": "services", "reason": "waiting on: machined, apid"})
    else:
        cluster = cluster_of(state, node)
        if is_controlplane(node):
            if not etcd_healthy(state, node, cluster):
                unmet.append({"name": "services", "reason": "etcd not healthy"})
            if not (cluster and cluster.get("bootstrapped")):
                unmet.append(
                    {"name": "staticPods", "reason": "static pods not running: kube-apiserver"}
                )
        if not k8s_ready(node, cluster):
            unmet.append({"name": "nodeReady", "reason": "node not ready"})
    return {"stage": stage, "status": {"ready": not unmet, "unmetConditions": unmet}}


def refresh(state: State, node: dict[str, Any]) -> dict[str, Any]:
    """Advance a node to now, in memory only: writers persist it under the state lock."""
    advance(node, stuck_stage(state, node["ip"]))
    if node["stage"] == "running" and node.get("config"):
        node["booted_once"] = True
    if node.get("kubelet_version") is None and node.get("config"):
        image = ((node["config"].get("machine") or {}).get("kubelet") or {}).get("image", "")
        node["kubelet_version"] = image.rsplit(":", 1)[-1].removeprefix("v") or None
    return node


def load(state: State, ip: str) -> dict[str, Any] | None:
    node = state.node(ip)
    return refresh(state, node) if node else None


def is_unreachable(state: State, node: dict[str, Any] | None) -> bool:
    if node is None or node["stage"] in UNREACHABLE_STAGES:
        return True
    return any(
        f["node"] == node["ip"] and f["kind"] == "unreachable" and f.get("times", -1) != 0
        for f in state.faults()
    )

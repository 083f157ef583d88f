"""The Kubernetes objects of an emulated cluster (nodes, kube-system pods, namespaces), derived from
the machines' state on every request, and the server-side Tables kubectl prints."""

from __future__ import annotations

import datetime as dt
import hashlib
import time
from typing import Any

from .. import nodes as N
from ..clock import now
from ..state import State

KERNEL = {
    "1.6": "6.1.82-talos",
    "1.7": "6.6.28-talos",
    "1.8": "6.6.58-talos",
    "1.9": "6.12.6-talos",
}
CONTAINERD = {"1.6": "1.7.13", "1.7": "1.7.15", "1.8": "2.0.0", "1.9": "2.0.1"}


def _ts(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _minor(version: str) -> str:
    return ".".join(version.lstrip("v").split(".")[:2])


def cluster_nodes(state: State, cluster: dict[str, Any]) -> list[dict[str, Any]]:
    out = []
    for n in state.nodes():
        n = N.refresh(state, n)
        if n.get("cluster_id") == cluster["id"] and N.k8s_registered(n, cluster):
            out.append(n)
    return out


def node_object(n: dict[str, Any], cluster: dict[str, Any]) -> dict[str, Any]:
    name = N.hostname(n)
    ready = N.k8s_ready(n, cluster)
    labels = {
        "beta.kubernetes.io/arch": "amd64",
        "beta.kubernetes.io/os": "linux",
        "kubernetes.io/arch": "amd64",
        "kubernetes.io/hostname": name,
        "kubernetes.io/os": "linux",
    }
    taints = []
    if N.is_controlplane(n):
        labels["node-role.kubernetes.io/control-plane"] = ""
        taints.append({"key": "node-role.kubernetes.io/control-plane", "effect": "NoSchedule"})
    if n.get("unschedulable"):
        taints.append(
            {
                "key": "node.kubernetes.io/unschedulable",
                "effect": "NoSchedule",
                "timeAdded": _ts(n.get("stage_since", n["created"])),
            }
        )
    if not ready:
        taints.append({"key": "node.kubernetes.io/not-ready", "effect": "NoSchedule"})
    since = n.get("stage_since", n["created"])
    registered = max(n["created"], cluster.get("bootstrapped_at") or n["created"])
    talos = n["talos_version"]
    spec: dict[str, Any] = {"podCIDR": "10.244.0.0/24", "podCIDRs": ["10.244.0.0/24"]}
    if taints:
        spec["taints"] = taints
    if n.get("unschedulable"):
        spec["unschedulable"] = True
    rv = n.get("resource_version", 1) * 2 + (1 if cluster.get("bootstrapped") else 0)
    return {
        "kind": "Node",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "uid": hashlib.md5(name.encode()).hexdigest(),
            "resourceVersion": str(rv),
            "creationTimestamp": _ts(registered),
            "labels": labels,
            "annotations": {"talos.dev/owned-labels": "[]"},
        },
        "spec": spec,
        "status": {
            "conditions": [
                {
                    "type": "MemoryPressure",
                    "status": "False",
                    "reason": "KubeletHasSufficientMemory",
                    "message": "kubelet has sufficient memory available",
                    "lastHeartbeatTime": _ts(now()),
                    "lastTransitionTime": _ts(registered),
                },
                {
                    "type": "DiskPressure",
                    "status": "False",
                    "reason": "KubeletHasNoDiskPressure",
                    "message": "kubelet has no disk pressure",
                    "lastHeartbeatTime": _ts(now()),
                    "lastTransitionTime": _ts(registered),
                },
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "reason": "KubeletReady" if ready else "KubeletNotReady",
                    "message": "kubelet is posting ready status"
                    if ready
                    else f"node is {n['stage']}: container runtime is down",
                    "lastHeartbeatTime": _ts(now()),
                    "lastTransitionTime": _ts(since),
                },
            ],
            "addresses": [
                {"type": "InternalIP", "address": n["ip"]},
                {"type": "Hostname", "address": name},
            ],
            "nodeInfo": {
                "machineID": hashlib.md5(n["ip"].encode()).hexdigest(),
                "systemUUID": hashlib.md5(("uuid" + n["ip"]).encode()).hexdigest(),
                "bootID": n["boot_id"],
                "kernelVersion": KERNEL.get(_minor(talos), "6.6.28-talos"),
                "osImage": f"Talos ({talos})",
                "containerRuntimeVersion": f"containerd://{CONTAINERD.get(_minor(talos), '1.7.15')}",
                "kubeletVersion": f"v{n.get('kubelet_version') or '0.0.0'}",
                "kubeProxyVersion": f"v{n.get('kubelet_version') or '0.0.0'}",
                "operatingSystem": "linux",
                "architecture": "amd64",
            },
        },
    }


def _age(ts: str) -> str:
    t = dt.datetime.strptime(ts, "%Y-%m-%dT%H:%M:%SZ").replace(tzinfo=dt.UTC)
    s = max(0, int((dt.datetime.now(dt.UTC) - t).total_seconds()))
    if s < 120:
        return f"{s}s"
    if s < 3 * 3600:
        return f"{s // 60}m"
    if s < 48 * 3600:
        return f"{s // 3600}h"
    return f"{s // 86400}d"


def pod_objects(state: State, cluster: dict[str, Any]) -> list[dict[str, Any]]:
    pods = []
    nodes = cluster_nodes(state, cluster)
    for n in nodes:
        if not N.is_controlplane(n):
            continue
        cfg = n["config"]["cluster"]
        for comp, key in (
            ("kube-apiserver", "apiServer"),
            ("kube-controller-manager", "controllerManager"),
            ("kube-scheduler", "scheduler"),
        ):
            image = (cfg.get(key) or {}).get("image", f"registry.k8s.io/{comp}")
            pods.append(
                _pod(
                    f"{comp}-{N.hostname(n)}",
                    n,
                    cluster,
                    image,
                    {"k8s-app": comp, "tier": "control-plane"},
                )
            )
            # static pods are mirror pods, which `kubectl drain` leaves alone
            pods[-1]["metadata"]["annotations"] = {"kubernetes.io/config.mirror": "emulated"}
    # a Cilium DaemonSet's agent pods, one per node, when the CNI is none and the control planes'
    # inline manifests install Cilium (the Job of the Talos Cilium guide deploys the DaemonSet)
    cp_cfg: dict[str, Any] = next(
        (n["config"]["cluster"] for n in nodes if N.is_controlplane(n)), {}
    )
    manifests = [str(m.get("name", "")) for m in cp_cfg.get("inlineManifests") or []]
    if ((cp_cfg.get("network") or {}).get("cni") or {}).get("name") == "none" and any(
        "cilium" in m for m in manifests
    ):
        for n in nodes:
            pods.append(
                _pod(
                    f"cilium-{hashlib.md5(n['ip'].encode()).hexdigest()[:5]}",
                    n,
                    cluster,
                    "quay.io/cilium/cilium",
                    {"k8s-app": "cilium"},
                )
            )
            pods[-1]["metadata"]["ownerReferences"] = [{**DAEMONSET_OWNER, "name": "cilium"}]
    # a Deployment's pods: a cordoned node's are rescheduled (evicted) onto the others
    for n in [n for n in nodes if not n.get("unschedulable")][:2]:
        pods.append(
            _pod(
                f"coredns-64b67fc8fd-{hashlib.md5(n['ip'].encode()).hexdigest()[:5]}",
                n,
                cluster,
                "registry.k8s.io/coredns/coredns:v1.11.1",
                {"k8s-app": "kube-dns"},
            )
        )
    return pods


def _pod(
    name: str, n: dict[str, Any], cluster: dict[str, Any], image: str, labels: dict[str, str]
) -> dict[str, Any]:
    ready = N.k8s_ready(n, cluster)
    since = _ts(n.get("stage_since", n["created"]))
    return {
        "kind": "Pod",
        "apiVersion": "v1",
        "metadata": {
            "name": name,
            "namespace": "kube-system",
            "labels": labels,
            "uid": hashlib.md5(name.encode()).hexdigest(),
            "resourceVersion": str(n.get("resource_version", 1) * 2 + 1),
            "creationTimestamp": _ts(max(n["created"], cluster.get("bootstrapped_at") or 0)),
        },
        "spec": {
            "nodeName": N.hostname(n),
            "containers": [{"name": name.split("-")[0], "image": image}],
        },
        "status": {
            "phase": "Running" if ready else "Pending",
            "hostIP": n["ip"],
            "podIP": n["ip"],
            "conditions": [
                {
                    "type": "Ready",
                    "status": "True" if ready else "False",
                    "lastTransitionTime": since,
                }
            ],
            "containerStatuses": [
                {
                    "name": name.split("-")[0],
                    "ready": ready,
                    "restartCount": 0,
                    "image": image,
                    "started": ready,
                    "state": {"running": {"startedAt": since}}
                    if ready
                    else {"waiting": {"reason": "ContainerCreating"}},
                }
            ],
        },
    }


def namespace_objects(cluster: dict[str, Any]) -> list[dict[str, Any]]:
    t = _ts(cluster.get("bootstrapped_at") or time.time())
    return [
        {
            "kind": "Namespace",
            "apiVersion": "v1",
            "metadata": {
                "name": ns,
                "uid": hashlib.md5(ns.encode()).hexdigest(),
                "resourceVersion": "1",
                "creationTimestamp": t,
                "labels": {"kubernetes.io/metadata.name": ns},
            },
            "spec": {"finalizers": ["kubernetes"]},
            "status": {"phase": "Active"},
        }
        for ns in (*BUILTIN_NAMESPACES, *user_namespaces(cluster))
    ]


NS_KEY = "/registry/namespaces/"
# the controller reference of a DaemonSet's pods (name added per DaemonSet)
DAEMONSET_OWNER = {"apiVersion": "apps/v1", "kind": "DaemonSet", "controller": True}
BUILTIN_NAMESPACES = ("default", "kube-node-lease", "kube-public", "kube-system")


def user_namespaces(cluster: dict[str, Any]) -> list[str]:
    """Namespaces clients created: kept in the cluster's etcd data (talosim/machine/etcd.py),
    so they survive exactly as long as etcd does, and come back from a snapshot."""
    keys = (cluster.get("etcd_data") or {}).get("keys") or {}
    return sorted(k.removeprefix(NS_KEY) for k in keys if k.startswith(NS_KEY))


def table(kind: str, objs: list[dict[str, Any]]) -> dict[str, Any]:
    """A meta.k8s.io/v1 Table, the server-side printing kubectl asks for."""

    def col(name: str, typ: str = "string", priority: int = 0, fmt: str = "") -> dict[str, Any]:
        return {"name": name, "type": typ, "format": fmt, "description": name, "priority": priority}

    rows = []
    if kind == "Node":
        cols = [
            col("Name", fmt="name"),
            col("Status"),
            col("Roles"),
            col("Age"),
            col("Version"),
            col("Internal-IP", priority=1),
            col("External-IP", priority=1),
            col("OS-Image", priority=1),
            col("Kernel-Version", priority=1),
            col("Container-Runtime", priority=1),
        ]
        for o in objs:
            ready = next(c["status"] for c in o["status"]["conditions"] if c["type"] == "Ready")
            status = "Ready" if ready == "True" else "NotReady"
            if o["spec"].get("unschedulable"):
                status += ",SchedulingDisabled"
            roles = (
                ",".join(
                    k.split("/", 1)[1]
                    for k in o["metadata"]["labels"]
                    if k.startswith("node-role.kubernetes.io/")
                )
                or "<none>"
            )
            info = o["status"]["nodeInfo"]
            cells = [
                o["metadata"]["name"],
                status,
                roles,
                _age(o["metadata"]["creationTimestamp"]),
                info["kubeletVersion"],
                o["status"]["addresses"][0]["address"],
                "<none>",
                info["osImage"],
                info["kernelVersion"],
                info["containerRuntimeVersion"],
            ]
            rows.append(
                {
                    "cells": cells,
                    "object": {
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o["metadata"],
                    },
                }
            )
    elif kind == "Pod":
        cols = [
            col("Name", fmt="name"),
            col("Ready"),
            col("Status"),
            col("Restarts", "string"),
            col("Age"),
            col("IP", priority=1),
            col("Node", priority=1),
        ]
        for o in objs:
            ready = o["status"]["containerStatuses"][0]["ready"]
            rows.append(
                {
                    "cells": [
                        o["metadata"]["name"],
                        "1/1" if ready else "0/1",
                        o["status"]["phase"],
                        "0",
                        _age(o["metadata"]["creationTimestamp"]),
                        o["status"]["podIP"],
                        o["spec"]["nodeName"],
                    ],
                    "object": {
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o["metadata"],
                    },
                }
            )
    else:
        cols = [col("Name", fmt="name"), col("Status"), col("Age")]
        for o in objs:
            rows.append(
                {
                    "cells": [
                        o["metadata"]["name"],
                        "Active",
                        _age(o["metadata"]["creationTimestamp"]),
                    ],
                    "object": {
                        "kind": "PartialObjectMetadata",
                        "apiVersion": "meta.k8s.io/v1",
                        "metadata": o["metadata"],
                    },
                }
            )
    return {
        "kind": "Table",
        "apiVersion": "meta.k8s.io/v1",
        "metadata": {"resourceVersion": "1"},
        "columnDefinitions": cols,
        "rows": rows,
    }


API_RESOURCES = {
    "kind": "APIResourceList",
    "groupVersion": "v1",
    "resources": [
        {
            "name": "nodes",
            "singularName": "node",
            "namespaced": False,
            "kind": "Node",
            "verbs": ["get", "list", "patch", "watch"],
            "shortNames": ["no"],
        },
        {
            "name": "nodes/status",
            "singularName": "",
            "namespaced": False,
            "kind": "Node",
            "verbs": ["get"],
        },
        {
            "name": "namespaces",
            "singularName": "namespace",
            "namespaced": False,
            "kind": "Namespace",
            "verbs": ["get", "list", "watch"],
            "shortNames": ["ns"],
        },
        {
            "name": "pods",
            "singularName": "pod",
            "namespaced": True,
            "kind": "Pod",
            "verbs": ["get", "list", "watch"],
            "shortNames": ["po"],
            "categories": ["all"],
        },
    ],
}

"""An emulated Kubernetes API server for an emulated cluster, served over TLS on loopback.

One detached process per cluster (pid file in the state folder), started on demand; it stops by
itself after an idle period and on `fleet destroy`. It authenticates clients by certificates
signed by the cluster's Kubernetes CA and serves what kubectl needs for nodes, kube-system pods
and namespaces, reading the emulator's state on every request.
"""

from __future__ import annotations

import contextlib
import datetime as dt
import hashlib
import json
import os
import signal
import socket
import socketserver
import ssl
import subprocess
import sys
import tempfile
import threading
import time
from http.server import BaseHTTPRequestHandler, ThreadingHTTPServer
from pathlib import Path
from typing import Any
from urllib.parse import parse_qs, urlsplit

from . import nodes as N
from . import pki
from .state import State, now, read_json, write_json

KERNEL = {
    "1.6": "6.1.82-talos",
    "1.7": "6.6.28-talos",
    "1.8": "6.6.58-talos",
    "1.9": "6.12.6-talos",
}
CONTAINERD = {"1.6": "1.7.13", "1.7": "1.7.15", "1.8": "2.0.0", "1.9": "2.0.1"}


# -- lifecycle (called from talosctl commands) --------------------------------------------------
def _address(state: State, cid: str, attempt: int) -> str:
    h = hashlib.sha256(f"{state.root}/{cid}/{attempt}".encode()).digest()
    # 127.0.0.0/16 holds the demo nodes and common services: stay out of it.
    return f"127.{1 + h[0] % 250}.{h[1]}.{1 + h[2] % 250}"


def _alive(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.3):
        return True
    return False


def _pidfile(state: State, cid: str) -> Path:
    return state.root / "kubeapi" / f"{cid}.json"


def ensure(state: State, cluster: dict[str, Any]) -> str:
    """Start the cluster's API server if it is not running; return its https URL."""
    info = read_json(_pidfile(state, cluster["id"])) or {}
    if info and _alive(info["host"], info["port"]):
        return f"https://{info['host']}:{info['port']}"
    host = info.get("host") or _address(state, cluster["id"], 0)
    port = 6443
    for attempt in range(8):
        if attempt:
            host = _address(state, cluster["id"], attempt)
        (state.root / "kubeapi").mkdir(parents=True, exist_ok=True, mode=0o700)
        fd = os.open(
            state.root / "kubeapi" / f"{cluster['id']}.log",
            os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            0o600,
        )
        log = os.fdopen(fd, "ab")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "talosim",
                "kubeapi",
                "serve",
                "--cluster-id",
                cluster["id"],
                "--host",
                host,
                "--port",
                str(port),
            ],
            stdin=subprocess.DEVNULL,
            stdout=log,
            stderr=log,
            start_new_session=True,
            env={**os.environ, "TALOSIM_STATE": str(state.root)},
            cwd=str(state.root),
        )
        log.close()  # the server process keeps its own copy
        deadline = time.time() + 10
        while time.time() < deadline:
            if proc.poll() is not None:
                break
            if _alive(host, port):
                write_json(
                    _pidfile(state, cluster["id"]), {"host": host, "port": port, "pid": proc.pid}
                )
                return f"https://{host}:{port}"
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
    raise RuntimeError(
        "emulated API server failed to start; see "
        + str(state.root / "kubeapi" / f"{cluster['id']}.log")
    )


def stop(state: State, cid: str) -> None:
    info = read_json(_pidfile(state, cid)) or {}
    pid = info.get("pid")
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            try:
                os.kill(pid, 0)
            except ProcessLookupError:
                break
            time.sleep(0.05)
    with contextlib.suppress(FileNotFoundError):
        _pidfile(state, cid).unlink()


# -- objects ------------------------------------------------------------------------------------
def _ts(t: float) -> str:
    return dt.datetime.fromtimestamp(t, dt.UTC).strftime("%Y-%m-%dT%H:%M:%SZ")


def _minor(version: str) -> str:
    return ".".join(version.lstrip("v").split(".")[:2])


def _cluster_nodes(state: State, cluster: dict[str, Any]) -> list[dict[str, Any]]:
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
    nodes = _cluster_nodes(state, cluster)
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
    """Namespaces clients created: kept in the cluster's etcd data (talosim/commands_etcd.py),
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


# -- server -------------------------------------------------------------------------------------
class Handler(BaseHTTPRequestHandler):
    server: Server
    protocol_version = "HTTP/1.1"

    def log_message(self, fmt: str, *args: Any) -> None:
        pass

    # helpers
    def _send(self, code: int, body: Any, ctype: str = "application/json") -> None:
        data = body if isinstance(body, bytes) else json.dumps(body).encode()
        self.send_response(code)
        self.send_header("Content-Type", ctype)
        self.send_header("Content-Length", str(len(data)))
        self.end_headers()
        self.wfile.write(data)

    def _status(self, code: int, reason: str, message: str) -> None:
        self._send(
            code,
            {
                "kind": "Status",
                "apiVersion": "v1",
                "metadata": {},
                "status": "Failure",
                "message": message,
                "reason": reason,
                "code": code,
            },
        )

    def _authenticated(self) -> bool:
        cert = self.connection.getpeercert() if isinstance(self.connection, ssl.SSLSocket) else None
        if not cert:
            self._status(401, "Unauthorized", "Unauthorized")
            return False
        return True

    def _wants_table(self) -> bool:
        return "as=Table" in self.headers.get("Accept", "")

    def _cluster(self) -> dict[str, Any]:
        c = self.server.state.cluster(self.server.cid)
        assert c is not None
        return c

    def do_GET(self) -> None:
        self.server.touch()
        if not self._authenticated():
            return
        url = urlsplit(self.path)
        q = {k: v[-1] for k, v in parse_qs(url.query).items()}
        path = url.path.rstrip("/")
        state, cluster = self.server.state, self._cluster()
        if path in ("/healthz", "/readyz", "/livez"):
            return self._send(200, b"ok", "text/plain")
        if path == "/version":
            v = cluster.get("kubernetes_version") or "0.0.0"
            major, minor, _ = v.split(".")
            return self._send(
                200,
                {
                    "major": major,
                    "minor": minor,
                    "gitVersion": f"v{v}",
                    "gitCommit": "emulated",
                    "gitTreeState": "clean",
                    "buildDate": "2024-04-17T17:27:03Z",
                    "goVersion": "go1.22.2",
                    "compiler": "gc",
                    "platform": "linux/amd64",
                },
            )
        if path == "/api":
            return self._send(
                200,
                {
                    "kind": "APIVersions",
                    "versions": ["v1"],
                    "serverAddressByClientCIDRs": [
                        {
                            "clientCIDR": "0.0.0.0/0",
                            "serverAddress": f"{self.server.host}:6443",
                        }
                    ],
                },
            )
        if path.startswith("/apis/apps/v1/namespaces/") and "/daemonsets/" in path:
            return self._daemonset(path.rsplit("/", 1)[1], state, cluster)
        if path == "/apis":
            return self._send(200, {"kind": "APIGroupList", "apiVersion": "v1", "groups": []})
        if path == "/api/v1":
            return self._send(200, API_RESOURCES)
        parts = path.split("/")[3:]  # after /api/v1
        if path.startswith("/api/v1/") and parts:
            return self._resource(parts, q, state, cluster)
        self._status(404, "NotFound", "the server could not find the requested resource")

    def _daemonset(self, name: str, state: State, cluster: dict[str, Any]) -> None:
        """The DaemonSet that owns some pods (what `kubectl drain --ignore-daemonsets` reads)."""
        owned = [
            pod
            for pod in pod_objects(state, cluster)
            for ref in pod["metadata"].get("ownerReferences") or []
            if ref["kind"] == "DaemonSet" and ref["name"] == name
        ]
        if not owned:
            return self._status(404, "NotFound", f'daemonsets.apps "{name}" not found')
        meta = {"name": name, "namespace": owned[0]["metadata"]["namespace"]}
        self._send(
            200,
            {
                "kind": "DaemonSet",
                "apiVersion": "apps/v1",
                "metadata": {**meta, "uid": hashlib.md5(name.encode()).hexdigest()},
                "spec": {"selector": {"matchLabels": owned[0]["metadata"]["labels"]}},
                "status": {"desiredNumberScheduled": len(owned), "numberReady": len(owned)},
            },
        )

    def _resource(
        self, parts: list[str], q: dict[str, str], state: State, cluster: dict[str, Any]
    ) -> None:
        kind, objs, name = None, [], None
        if parts[0] == "nodes":
            kind = "Node"
            objs = [node_object(n, cluster) for n in _cluster_nodes(state, cluster)]
            name = parts[1] if len(parts) > 1 else None
        elif parts[0] == "namespaces" and len(parts) <= 2:
            kind = "Namespace"
            objs = namespace_objects(cluster)
            name = parts[1] if len(parts) > 1 else None
        elif parts[0] == "pods" or (
            parts[0] == "namespaces" and len(parts) >= 3 and parts[2] == "pods"
        ):
            kind = "Pod"
            ns = parts[1] if parts[0] == "namespaces" else None
            objs = [p for p in pod_objects(state, cluster) if ns in (None, "kube-system")]
            name = parts[3] if parts[0] == "namespaces" and len(parts) > 3 else None
        if kind is None:
            return self._status(404, "NotFound", "the server could not find the requested resource")
        sel = q.get("fieldSelector", "")
        if sel.startswith("metadata.name="):
            objs = [o for o in objs if o["metadata"]["name"] == sel.split("=", 1)[1]]
        if sel.startswith("spec.nodeName=") and kind == "Pod":  # kubectl drain's pod list
            objs = [o for o in objs if o["spec"]["nodeName"] == sel.split("=", 1)[1]]
        if q.get("watch") in ("1", "true"):
            return self._watch(kind, parts, q)
        if name is not None:
            match = [o for o in objs if o["metadata"]["name"] == name]
            if not match:
                plural = {"Node": "nodes", "Pod": "pods", "Namespace": "namespaces"}[kind]
                return self._status(404, "NotFound", f'{plural} "{name}" not found')
            return self._send(200, table(kind, match) if self._wants_table() else match[0])
        if self._wants_table():
            return self._send(200, table(kind, objs))
        rv = str(max([int(o["metadata"]["resourceVersion"]) for o in objs] or [1]))
        return self._send(
            200,
            {
                "kind": f"{kind}List",
                "apiVersion": "v1",
                "metadata": {"resourceVersion": rv},
                "items": objs,
            },
        )

    def _watch(self, kind: str, parts: list[str], q: dict[str, str]) -> None:
        sel = q.get("fieldSelector", "")
        want = sel.split("=", 1)[1] if sel.startswith("metadata.name=") else None
        since = int(q.get("resourceVersion") or 0)
        timeout = float(q.get("timeoutSeconds") or 1800)
        self.send_response(200)
        self.send_header("Content-Type", "application/json")
        self.send_header("Transfer-Encoding", "chunked")
        self.end_headers()
        seen: dict[str, str] = {}
        deadline = time.time() + timeout
        state = self.server.state
        try:
            while time.time() < deadline and not self.server.stopping:
                self.server.touch()
                cluster = self._cluster()
                objs = (
                    [node_object(n, cluster) for n in _cluster_nodes(state, cluster)]
                    if kind == "Node"
                    else pod_objects(state, cluster)
                    if kind == "Pod"
                    else namespace_objects(cluster)
                )
                for o in objs:
                    name = o["metadata"]["name"]
                    if want and name != want:
                        continue
                    rv = o["metadata"]["resourceVersion"]
                    if seen.get(name) == rv:
                        continue
                    if name not in seen and int(rv) <= since:
                        seen[name] = rv
                        continue
                    typ = "MODIFIED" if since or name in seen else "ADDED"
                    seen[name] = rv
                    data = json.dumps({"type": typ, "object": o}).encode() + b"\n"
                    self.wfile.write(f"{len(data):x}\r\n".encode() + data + b"\r\n")
                    self.wfile.flush()
                time.sleep(0.1)
            self.wfile.write(b"0\r\n\r\n")
        except (BrokenPipeError, ConnectionResetError, ssl.SSLError):
            pass

    def do_PATCH(self) -> None:
        self.server.touch()
        if not self._authenticated():
            return
        length = int(self.headers.get("Content-Length") or 0)
        try:
            patch = json.loads(self.rfile.read(length) or b"{}")
        except json.JSONDecodeError:
            return self._status(400, "BadRequest", "invalid patch body")
        parts = urlsplit(self.path).path.rstrip("/").split("/")[3:]
        if len(parts) != 2 or parts[0] != "nodes":
            return self._status(405, "MethodNotAllowed", "the server does not allow this method")
        state = self.server.state
        with state.locked():
            cluster = self._cluster()
            target = next(
                (n for n in _cluster_nodes(state, cluster) if N.hostname(n) == parts[1]), None
            )
            if target is None:
                return self._status(404, "NotFound", f'nodes "{parts[1]}" not found')
            spec = patch.get("spec") or {}
            if "unschedulable" in spec:
                target["unschedulable"] = bool(spec["unschedulable"])
                target["resource_version"] = target.get("resource_version", 1) + 1
                N.event(target, "cordon" if target["unschedulable"] else "uncordon")
                state.save_node(target)
        self._send(200, node_object(target, cluster))

    def do_POST(self) -> None:
        self.server.touch()
        if not self._authenticated():
            return
        path = urlsplit(self.path).path.rstrip("/")
        if path != "/api/v1/namespaces":
            return self._status(
                405,
                "MethodNotAllowed",
                "emulated API server: read-only except node patch/delete and namespace create",
            )
        length = int(self.headers.get("Content-Length") or 0)
        try:
            name = json.loads(self.rfile.read(length) or b"{}")["metadata"]["name"]
        except (json.JSONDecodeError, KeyError, TypeError):
            return self._status(400, "BadRequest", "invalid namespace body")
        state = self.server.state
        with state.locked():
            cluster = self._cluster()
            data = cluster.get("etcd_data") or {"revision": 1, "keys": {}}
            if name in BUILTIN_NAMESPACES or NS_KEY + name in data["keys"]:
                return self._status(409, "AlreadyExists", f'namespaces "{name}" already exists')
            data["keys"][NS_KEY + name] = json.dumps({"name": name})
            data["revision"] = int(data.get("revision", 1)) + 1
            cluster["etcd_data"] = data
            state.save_cluster(cluster)
        obj = next(o for o in namespace_objects(cluster) if o["metadata"]["name"] == name)
        self._send(201, obj)

    def do_DELETE(self) -> None:
        self.server.touch()
        if not self._authenticated():
            return
        parts = urlsplit(self.path).path.rstrip("/").split("/")[3:]
        if len(parts) != 2 or parts[0] != "nodes":
            return self._status(405, "MethodNotAllowed", "the server does not allow this method")
        state, cluster = self.server.state, self._cluster()
        target = next(
            (n for n in _cluster_nodes(state, cluster) if N.hostname(n) == parts[1]), None
        )
        if target is None:
            return self._status(404, "NotFound", f'nodes "{parts[1]}" not found')
        # The object of a machine that still runs its kubelet is registered again at once, so
        # the Node (derived from the machine) stays; after a reset it is gone for good.
        self._send(200, node_object(target, cluster))

    do_PUT = do_POST


class Server(ThreadingHTTPServer):
    daemon_threads = True
    allow_reuse_address = True

    def __init__(self, addr: tuple[str, int], state: State, cid: str, idle: float) -> None:
        super().__init__(addr, Handler)
        self.state, self.cid, self.idle = state, cid, idle
        self.host = addr[0]
        self.last = time.time()
        self.stopping = False

    def touch(self) -> None:
        self.last = time.time()

    def server_bind(self) -> None:
        # http.server.HTTPServer.server_bind resolves the bound address with socket.getfqdn, a
        # reverse-DNS (PTR) query that leaves the machine: talosim makes no network call at all.
        socketserver.TCPServer.server_bind(self)
        host, port = self.server_address[:2]
        self.server_name = str(host)
        self.server_port = int(port)


def serve(state: State, cid: str, host: str, port: int) -> None:
    if not host.startswith("127."):
        raise SystemExit(
            f"refusing to bind {host}: the emulated API server listens on loopback only"
        )
    cluster = state.cluster(cid)
    if cluster is None or not cluster.get("k8s_ca"):
        raise SystemExit(f"no bootstrapped cluster {cid} in {state.root}")
    ca = cluster["k8s_ca"]
    crt, key = pki.issue(
        pki.unb64(ca["crt"]),
        pki.unb64(ca["key"]),
        kind="ec",
        cn="kube-apiserver",
        server=True,
        sans=[host, "127.0.0.1", "localhost", "kubernetes", "kubernetes.default.svc"],
    )
    tmp = Path(tempfile.mkdtemp(prefix="talosim-kubeapi-"))
    try:
        os.chmod(tmp, 0o700)
        (tmp / "tls.crt").write_bytes(crt)
        (tmp / "tls.key").write_bytes(key)
        os.chmod(tmp / "tls.key", 0o600)
        ctx = ssl.SSLContext(ssl.PROTOCOL_TLS_SERVER)
        ctx.load_cert_chain(tmp / "tls.crt", tmp / "tls.key")
        ctx.load_verify_locations(cadata=pki.unb64(ca["crt"]).decode())
        # Ask for a client certificate; one not signed by the cluster CA fails the handshake,
        # none at all gets 401 Unauthorized.
        ctx.verify_mode = ssl.CERT_OPTIONAL
    finally:
        for f in tmp.iterdir():
            f.unlink()
        tmp.rmdir()
    idle = float(state.fleet()["settings"].get("kubeapi_idle_seconds", 600))
    server = Server((host, port), state, cid, idle)
    server.socket = ctx.wrap_socket(server.socket, server_side=True)

    def reaper() -> None:
        while True:
            time.sleep(0.5)
            if time.time() - server.last > server.idle or not state.root.exists():
                server.stopping = True
                server.shutdown()
                return

    threading.Thread(target=reaper, daemon=True).start()
    signal.signal(signal.SIGTERM, lambda *_: threading.Thread(target=server.shutdown).start())
    try:
        server.serve_forever(poll_interval=0.2)
    finally:
        server.server_close()
        with contextlib.suppress(FileNotFoundError, OSError):
            info = read_json(_pidfile(state, cid)) or {}
            if info.get("pid") == os.getpid():
                _pidfile(state, cid).unlink()

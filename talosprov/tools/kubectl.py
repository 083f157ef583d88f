"""kubectl: argv builders and parsers for the checks talosprov makes through Kubernetes."""

from __future__ import annotations

import json
from dataclasses import dataclass
from pathlib import Path


@dataclass(frozen=True)
class Kubectl:
    kubeconfig: Path

    def _base(self) -> list[str]:
        return ["--kubeconfig", str(self.kubeconfig)]

    def get_nodes(self) -> list[str]:
        return [*self._base(), "get", "nodes", "--output", "json", "--request-timeout", "20s"]

    def get_pods(self, namespace: str) -> list[str]:
        return [
            *self._base(),
            "get",
            "pods",
            "--namespace",
            namespace,
            "--output",
            "json",
            "--request-timeout",
            "20s",
        ]

    def cordon(self, name: str) -> list[str]:
        return [*self._base(), "cordon", name, "--request-timeout", "20s"]

    def drain(self, name: str, timeout: float = 300) -> list[str]:
        # static pods are mirror pods, which drain skips; DaemonSet pods stay with the node
        return [
            *self._base(),
            "drain",
            name,
            "--ignore-daemonsets",
            "--delete-emptydir-data",
            "--timeout",
            f"{int(timeout)}s",
        ]

    def delete_node(self, name: str) -> list[str]:
        return [*self._base(), "delete", "node", name, "--ignore-not-found", "--wait=false"]


@dataclass(frozen=True)
class NodeInfo:
    name: str
    ip: str
    ready: bool
    kubelet: str
    os_image: str
    unschedulable: bool
    roles: tuple[str, ...]


def parse_nodes(stdout: str) -> list[NodeInfo]:
    out = []
    for item in json.loads(stdout).get("items", []):
        status = item.get("status", {})
        ready = any(
            c.get("type") == "Ready" and c.get("status") == "True"
            for c in status.get("conditions", [])
        )
        ip = next(
            (a["address"] for a in status.get("addresses", []) if a["type"] == "InternalIP"), ""
        )
        labels = item.get("metadata", {}).get("labels", {})
        roles = tuple(
            sorted(k.split("/", 1)[1] for k in labels if k.startswith("node-role.kubernetes.io/"))
        )
        info = status.get("nodeInfo", {})
        out.append(
            NodeInfo(
                name=item["metadata"]["name"],
                ip=ip,
                ready=ready,
                kubelet=info.get("kubeletVersion", "").removeprefix("v"),
                os_image=info.get("osImage", ""),
                unschedulable=bool(item.get("spec", {}).get("unschedulable")),
                roles=roles,
            )
        )
    return out


def parse_pods_ready(stdout: str) -> dict[str, bool]:
    return {
        p["metadata"]["name"]: all(
            c.get("ready") for c in p.get("status", {}).get("containerStatuses", [])
        )
        and p.get("status", {}).get("phase") == "Running"
        for p in json.loads(stdout).get("items", [])
    }

"""A live cluster is what its cluster file declares (run by `invoke verify`, marker `cluster`)."""

from __future__ import annotations

import pytest

from talosprov.tools.talosctl import parse_etcd_members, parse_etcd_status, parse_machineconfig
from tests.cluster.conftest import Live

pytestmark = pytest.mark.cluster


def _ips(nodes: list[dict]) -> dict[str, dict]:
    return {
        next(a["address"] for a in n["status"]["addresses"] if a["type"] == "InternalIP"): n
        for n in nodes
    }


def test_node_count_and_roles_match_the_cluster_file(live: Live) -> None:
    nodes = _ips(live.kube_json("get", "nodes")["items"])
    assert set(nodes) == {n.ip for n in live.cluster.nodes}
    for n in live.cluster.nodes:
        labels = nodes[n.ip]["metadata"]["labels"]
        assert ("node-role.kubernetes.io/control-plane" in labels) is n.is_controlplane, n.ip


def test_every_node_is_ready(live: Live) -> None:
    for ip, n in _ips(live.kube_json("get", "nodes")["items"]).items():
        ready = next(c for c in n["status"]["conditions"] if c["type"] == "Ready")
        assert ready["status"] == "True", ip


def test_versions_are_as_declared(live: Live) -> None:
    nodes = _ips(live.kube_json("get", "nodes")["items"])
    for n in live.cluster.nodes:
        info = nodes[n.ip]["status"]["nodeInfo"]
        assert info["kubeletVersion"] == f"v{live.cluster.kubernetes_version}", n.ip
        assert info["osImage"] == f"Talos ({live.cluster.talos_version})", n.ip
    out = live.talos(
        "version",
        "--nodes",
        ",".join(n.ip for n in live.cluster.nodes),
        "--endpoints",
        live.cluster.controlplanes[0].ip,
    )
    server = out.split("Server:", 1)[1]
    assert server.count(f"Tag:         {live.cluster.talos_version}") == len(live.cluster.nodes)


def test_etcd_members_are_the_control_planes_and_healthy(live: Live) -> None:
    cp = live.cluster.controlplanes[0].ip
    members = parse_etcd_members(live.talos("etcd", "members", "--nodes", cp, "--endpoints", cp))
    peers = {m["peer_urls"].split("//")[1].split(":")[0] for m in members}
    assert peers == {n.ip for n in live.cluster.controlplanes}
    assert [m["learner"] for m in members] == ["false"] * len(members)
    ips = [n.ip for n in live.cluster.controlplanes]
    rows = parse_etcd_status(
        live.talos("etcd", "status", "--nodes", ",".join(ips), "--endpoints", cp)
    )
    assert [r["node"] for r in rows] == ips
    # `etcd status` exits 0 even when a member reports errors (an alarm): read the ERRORS column
    assert {r["node"]: r["errors"] for r in rows} == {ip: [] for ip in ips}
    assert len({r["leader"] for r in rows}) == 1, "members disagree about the leader"


def test_api_server_certificate_carries_the_vip(live: Live) -> None:
    if not live.cluster.vip:
        pytest.skip(f"{live.cluster.name} has no VIP")
    cp = live.cluster.controlplanes[0].ip
    out = live.talos(
        "get", "machineconfig", "v1alpha1", "--nodes", cp, "--endpoints", cp, "-o", "yaml"
    )
    spec = parse_machineconfig(out)
    assert live.cluster.vip in spec["cluster"]["apiServer"]["certSANs"]

"""Plans of the day-2 workflows: state in, ordered steps, a no-op or a refusal out.

Cases: tests/cases/plan/{node-add,node-remove,node-reset,restore,backup}/*.yaml.
"""

from __future__ import annotations

import re
import time
from pathlib import Path
from typing import Any

import pytest
import yaml

from talosprov.errors import TalosProvError
from talosprov.model import Cluster, parse_cluster
from talosprov.tools.kubectl import NodeInfo
from talosprov.workflows import etcd, nodes
from tests.conftest import ROOT

CASES = ROOT / "tests" / "cases" / "plan"
NODE_PLANS = {
    "node-add": nodes.plan_add,
    "node-remove": nodes.plan_remove,
    "node-reset": nodes.plan_reset,
}
NODE_CASES = sorted(p for d in NODE_PLANS for p in (CASES / d).glob("*.yaml"))
RESTORE = sorted((CASES / "restore").glob("*.yaml"))
BACKUP = sorted((CASES / "backup").glob("*.yaml"))
# the time a backup plan is made at in every case: 2026-12-02 08:00:00 UTC
STAMP = time.struct_time((2026, 12, 2, 8, 0, 0, 2, 336, 0))


def _cluster(name: str) -> Cluster:
    path = CASES / "clusters" / f"{name}.yaml"
    return parse_cluster(path.read_text(), str(path.relative_to(ROOT)))


def _view(spec: dict[str, Any] | None) -> etcd.EtcdView | None:
    if spec is None:
        return None
    healthy = {str(ip): bool(ok) for ip, ok in spec["healthy"].items()}
    members = tuple(
        {"peer_urls": f"https://{ip}:2380", "id": f"{i + 1:016x}"}
        for i, ip in enumerate(spec["members"])
    )
    errors = {ip: "etcd is not running" for ip, ok in healthy.items() if not ok}
    return etcd.EtcdView(healthy, errors, members)


def _kube(ips: list[str], cluster: Cluster) -> dict[str, NodeInfo]:
    return {
        ip: NodeInfo(cluster.node(ip).hostname, ip, True, "1.30.0", "Talos", False, ())
        for ip in ips
    }


def _raises(spec: dict[str, Any]) -> Any:
    return pytest.raises(TalosProvError, match=re.escape(spec["error"]))


@pytest.mark.parametrize("case", NODE_CASES, ids=[f"{c.parent.name}/{c.stem}" for c in NODE_CASES])
def test_node_plan(case: Path) -> None:
    spec: dict[str, Any] = yaml.safe_load(case.read_text())
    cluster = _cluster(spec["cluster"])
    obs = spec["observed"]
    observed = nodes.Observed(
        obs["probe"], _view(obs.get("etcd")), _kube(obs.get("kube", []), cluster)
    )
    planner = NODE_PLANS[case.parent.name]
    target = cluster.node(spec["node"])
    if "error" in spec:
        with _raises(spec):
            planner(cluster, target, observed)
        return
    p = planner(cluster, target, observed)
    assert p.noop == spec.get("noop")
    assert [[s.kind, s.node] for s in p.steps] == spec.get("steps", [])


@pytest.mark.parametrize("case", RESTORE, ids=[c.stem for c in RESTORE])
def test_restore_plan(case: Path) -> None:
    spec: dict[str, Any] = yaml.safe_load(case.read_text())
    cluster = _cluster(spec["cluster"])
    progress = etcd.RestoreProgress(
        spec.get("finished", False), frozenset(spec.get("done_steps", []))
    )
    healthy = spec.get("etcd_healthy", False)
    args = (cluster, Path("/backups/x.snapshot"), "sha", spec["probes"], healthy, progress)
    if "error" in spec:
        with _raises(spec):
            etcd.plan_restore(*args)
        return
    p = etcd.plan_restore(*args)
    assert p.noop == spec.get("noop")
    assert [[s.kind, list(s.nodes)] for s in p.steps] == spec.get("steps", [])


@pytest.mark.parametrize("case", BACKUP, ids=[c.stem for c in BACKUP])
def test_backup_plan(case: Path) -> None:
    spec: dict[str, Any] = yaml.safe_load(case.read_text())
    cluster = _cluster(spec["cluster"])
    view = etcd.EtcdView(
        spec["healthy"], {ip: "down" for ip, ok in spec["healthy"].items() if not ok}, ()
    )
    if "error" in spec:
        with _raises(spec):
            etcd.plan_backup(cluster, view, spec["existing"], spec["keep"], STAMP)
        return
    p = etcd.plan_backup(cluster, view, spec["existing"], spec["keep"], STAMP)
    assert (p.node, p.name, list(p.prune)) == (spec["node"], spec["name"], spec["prune"])

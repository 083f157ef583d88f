"""plan() of install and upgrade: state in, ordered steps (or no-op with a reason) out."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from talosprov.errors import TalosProvError
from talosprov.model import Cluster, parse_cluster
from talosprov.tools.talosctl import MachineStatus
from talosprov.versions import Version
from talosprov.workflows import install, upgrade
from talosprov.workflows.runtime import Probe
from tests.conftest import ROOT

CASES = ROOT / "tests" / "cases" / "plan"
INSTALL = sorted((CASES / "install").glob("*.yaml"))
UPGRADE = sorted((CASES / "upgrade").glob("*.yaml"))


def _cluster(name: str) -> Cluster:
    """The case's cluster from tests/cases/plan/clusters/ (never the repository's clusters/)."""
    path = CASES / "clusters" / f"{name}.yaml"
    return parse_cluster(path.read_text(), str(path.relative_to(ROOT)))


def _probe(ip: str, text: str) -> Probe:
    words = text.split()
    if words[0] != "configured":
        return Probe(ip, words[0])
    return Probe(ip, "configured", MachineStatus(words[1], words[2] == "ready", ()))


@pytest.mark.parametrize("case", INSTALL, ids=[c.stem for c in INSTALL])
def test_install_plan(case: Path) -> None:
    spec: dict[str, Any] = yaml.safe_load(case.read_text())
    cluster = _cluster(spec["cluster"])
    observed = {ip: _probe(ip, text) for ip, text in spec["observed"].items()}
    if "error" in spec:
        with pytest.raises(
            TalosProvError, match=spec["error"].replace("(", r"\(").replace(")", r"\)")
        ):
            install.plan(cluster, observed, spec.get("live_types"))
        return
    p = install.plan(
        cluster, observed, spec.get("live_types"), spec.get("kubeconfig_present", True)
    )
    assert p.noop == spec.get("noop")
    assert [[s.kind, list(s.nodes)] for s in p.steps] == spec["steps"]


@pytest.mark.parametrize("case", UPGRADE, ids=[c.stem for c in UPGRADE])
def test_upgrade_plan(case: Path) -> None:
    spec: dict[str, Any] = yaml.safe_load(case.read_text())
    cluster = _cluster(spec["cluster"])
    obs = spec["observed"]
    observed = {
        n.ip: upgrade.Observed(n.ip, "running", obs.get(n.ip, obs["default"]))
        for n in cluster.nodes
    }
    target = Version.parse(spec["target"])
    kw = {"max_unavailable": spec.get("max_unavailable", 1)}
    if "error" in spec:
        with pytest.raises(TalosProvError, match=spec["error"]):
            upgrade.plan(cluster, observed, target, **kw)
        return
    p = upgrade.plan(cluster, observed, target, **kw)
    if "noop" in spec:
        assert p.noop == spec["noop"]
        assert p.batches == ()
        return
    assert [[s.ip for s in b] for b in p.batches] == spec["batches"]
    if "skipped" in spec:
        assert [ip for ip, _ in p.skipped] == spec["skipped"]
    if "hops" in spec:
        assert all(list(s.hops) == spec["hops"] for b in p.batches for s in b)
    roles = [s.role for b in p.batches for s in b]
    assert roles == sorted(roles, key=lambda r: r != "controlplane"), "a worker before a CP"
    assert all(len(b) == 1 for b in p.batches if b[0].role == "controlplane")

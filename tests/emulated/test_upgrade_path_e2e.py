"""`invoke upgrade --cluster v3` walks the whole path v1.7.0/1.30.0 → v1.14.2/1.37.0 on talosim."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.emulated.e2e import TALOSIM, FleetRepo, nodes_of

pytestmark = [pytest.mark.e2e, pytest.mark.usefixtures("need_kubectl")]

CPS = ["192.168.1.1", "192.168.1.2", "192.168.1.3"]
ALL = [f"192.168.1.{i}" for i in range(1, 11)]
# the operator's talosctl is v1.14.2 (talosim plays it); it drives every hop
ENV = {"TALOSCTL": TALOSIM, "TALOSIM_VERSION": "v1.14.2"}
# all seven workers in one batch: four batches per hop keep the tests short
UP = ("upgrade", "--cluster", "v3", "--max-unavailable", "7")
PATH_MINORS = ["v1.8.4", "v1.9.6", "v1.10.9", "v1.11.6", "v1.12.11", "v1.13.9", "v1.14.2"]
K8S_HOPS = ["1.31.4", "1.32.4", "1.33.6", "1.34.1", "1.35.4", "1.36.3", "1.37.0"]


def _ok(r: Any) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout + r.stderr


@pytest.fixture
def v3(installed_v3: FleetRepo) -> FleetRepo:
    """v3 installed on talosim at v1.7.0/1.30.0, its cluster file bumped and committed."""
    _target(installed_v3)
    return installed_v3


def _target(repo: FleetRepo, talos: str = "v1.14.2", k8s: str = "1.37.0") -> None:
    cf = repo.root / "clusters" / "v3.yaml"
    text = cf.read_text().replace("talos_version: v1.7.0", f"talos_version: {talos}")
    cf.write_text(text.replace("kubernetes_version: 1.30.0", f"kubernetes_version: {k8s}"))
    repo.git("commit", "-qam", f"v3: Talos {talos}, Kubernetes {k8s}")


def _versions(repo: FleetRepo) -> dict[str, str]:
    nodes = json.loads(repo.talosim("fleet", "list", "-o", "json").stdout)
    return {n["ip"]: n["talos_version"] for n in nodes}


def _calls(repo: FleetRepo, cmd: str, since: int = 0) -> list[dict[str, Any]]:
    return [c for c in repo.calls()[since:] if c["cmd"] == cmd]


def _image(call: dict[str, Any]) -> str:
    argv = call["argv"]
    return str(argv[argv.index("--image") + 1])


def _to(call: dict[str, Any]) -> str:
    argv = call["argv"]
    return str(argv[argv.index("--to") + 1])


@pytest.mark.slow
def test_full_path_v17_to_v114_and_k8s_137_then_rerun_is_a_noop(v3: FleetRepo) -> None:
    dry = _ok(v3.invoke("upgrade", "--cluster", "v3", "--dry-run", extra_env=ENV))
    assert "path to Talos v1.14.2, Kubernetes 1.37.0:" in dry
    assert "2. Kubernetes 1.30.0 → 1.31.4 (upgrade-k8s, talosctl ≥ 1.8)" in dry
    assert "reissue-talosconfig" not in dry  # the talosconfig already has clientAuth
    assert "[action] grub-kernel-args" in dry  # v3 has extraKernelArgs and boots GRUB
    n = len(v3.calls())
    assert [c for c in v3.calls() if c["cmd"] in ("upgrade", "upgrade-k8s")] == []
    out = _ok(v3.invoke(*UP, extra_env=ENV, timeout=1200))
    assert "talos-cloudkoffer-v3: upgraded to Talos v1.14.2, Kubernetes 1.37.0" in out
    assert set(_versions(v3).values()) == {"v1.14.2"}
    ups = _calls(v3, "upgrade", n)
    # every node visits every minor in turn, control planes first, one at a time
    assert len(ups) == 10 * 7
    for i, tag in enumerate(PATH_MINORS):
        hop = ups[i * 10 : (i + 1) * 10]
        assert [nodes_of(c)[0] for c in hop[:3]] == CPS  # one at a time, in file order
        assert sorted(nodes_of(c)[0] for c in hop[3:]) == sorted(ALL[3:])
        assert {_image(c).rsplit(":", 1)[1] for c in hop} == {tag}
        assert ("--legacy" in hop[0]["argv"]) == (tag in ("v1.13.9", "v1.14.2"))
    assert _image(ups[-1]).startswith("factory.talos.dev/metal-installer/3765679")
    k8s = [c for c in _calls(v3, "upgrade-k8s", n) if "--dry-run" not in c["argv"]]
    assert [_to(c) for c in k8s] == K8S_HOPS
    # interleaved: each Kubernetes hop comes after its Talos minor on every node, never before
    order = [
        (c["cmd"], _to(c) if c["cmd"] == "upgrade-k8s" else _image(c).rsplit(":", 1)[1])
        for c in v3.calls()[n:]
        if c["cmd"] == "upgrade" or (c["cmd"] == "upgrade-k8s" and "--dry-run" not in c["argv"])
    ]
    firsts = [next(i for i, o in enumerate(order) if o[1] == v) for v in K8S_HOPS]
    lasts = [max(i for i, o in enumerate(order) if o[1] == v) for v in PATH_MINORS]
    assert all(last < first for last, first in zip(lasts, firsts, strict=True))
    assert all(first < last for first, last in zip(firsts, lasts[1:], strict=False))
    n = len(v3.calls())
    out = _ok(v3.invoke("upgrade", "--cluster", "v3", extra_env=ENV))
    assert "nothing to do: every node is already at Talos v1.14.2 and Kubernetes 1.37.0" in out
    assert _calls(v3, "upgrade", n) == []
    assert _calls(v3, "upgrade-k8s", n) == []


STOP_AT_10 = (
    'n=$(cat .gate-count 2>/dev/null || echo 0); n=$((n+1)); echo $n > .gate-count; [ "$n" -ne 10 ]'
)


@pytest.mark.slow
def test_stop_in_the_middle_then_rerun_resumes_from_live_state(v3: FleetRepo) -> None:
    # Resuming needs no more than the hop it stopped in and one after it (the full path has its
    # own test): aim at Talos v1.11.6 / Kubernetes 1.34.1, four Talos hops.
    cf = v3.root / "clusters" / "v3.yaml"
    text = cf.read_text().replace("talos_version: v1.14.2", "talos_version: v1.11.6")
    cf.write_text(text.replace("kubernetes_version: 1.37.0", "kubernetes_version: 1.34.1"))
    v3.git("commit", "-qam", "v3: Talos v1.11.6, Kubernetes 1.34.1")
    # the 10th gate fails: after 192.168.1.2 reached v1.10.9 (3rd hop, 2nd batch)
    r = v3.invoke(*UP, "--gate", STOP_AT_10, extra_env=ENV, timeout=900)
    assert r.returncode == 1, r.stdout + r.stderr
    assert "failed after 192.168.1.2" in r.stderr
    seen = _versions(v3)
    assert [seen[ip] for ip in ALL] == ["v1.10.9"] * 2 + ["v1.9.6"] * 8
    n = len(v3.calls())
    dry = _ok(v3.invoke("upgrade", "--cluster", "v3", "--dry-run", extra_env=ENV))
    assert "1. Talos v1.10.9 on 8 node(s)" in dry
    assert "192.168.1.1 (ck3-cp-1" not in dry.split("2. Kubernetes")[0]
    assert "2. Kubernetes 1.32.4 → 1.33.6" in dry
    _ok(v3.invoke(*UP, extra_env=ENV, timeout=1200))
    ups = _calls(v3, "upgrade", n)
    assert nodes_of(ups[0]) == ["192.168.1.3"]  # the done nodes are skipped
    assert {_image(c).rsplit(":", 1)[1] for c in ups[:8]} == {"v1.10.9"}
    assert {_image(c).rsplit(":", 1)[1] for c in ups[8:]} == {"v1.11.6"}
    assert len(ups) == 8 + 1 * 10
    k8s = [_to(c) for c in _calls(v3, "upgrade-k8s", n) if "--dry-run" not in c["argv"]]
    assert k8s == K8S_HOPS[2:4]
    assert set(_versions(v3).values()) == {"v1.11.6"}


def test_unhealthy_etcd_member_is_refused_by_talosprovs_own_quorum_check(v3: FleetRepo) -> None:
    v3.fault("--node", "192.168.1.3", "--kind", "etcd-down")
    n = len(v3.calls())
    r = v3.invoke(*UP, "--health-timeout", "2", extra_env=ENV)
    assert r.returncode == 1
    assert "etcd is not healthy on every member; not upgrading 192.168.1.1" in r.stderr
    assert "192.168.1.3" in r.stderr
    assert _calls(v3, "upgrade", n) == []
    assert set(_versions(v3).values()) == {"v1.7.0"}


def test_skipping_a_minor_by_hand_is_refused_at_the_installer_floor(v3: FleetRepo) -> None:
    n = len(v3.calls())
    r = v3.invoke("upgrade", "--cluster", "v3", "--via", "v1.9.6", extra_env=ENV)
    assert r.returncode == 1
    assert "refusing the hop v1.7.0 → v1.9.6 on 192.168.1.1 (ck3-cp-1)" in r.stderr
    assert "host version 1.7.0 is too old to upgrade to Talos 1.9.6" in r.stderr
    assert _calls(v3, "upgrade", n) == []
    # the same skip typed into talosctl by hand: the node's installer refuses it
    tc = str(v3.root / ".state" / "talos-cloudkoffer-v3" / "talosconfig")
    img = "ghcr.io/siderolabs/installer:v1.9.6"
    r = v3.talosim("upgrade", "--talosconfig", tc, "--nodes", "192.168.1.4", "--image", img)
    assert r.returncode != 0
    assert "host version 1.7.0 is too old to upgrade to Talos 1.9.6" in r.stdout + r.stderr


def test_missing_talosctl_for_a_hop_is_named_before_anything_changes(v3: FleetRepo) -> None:
    n = len(v3.calls())
    env = {**ENV, "TALOSIM_VERSION": "v1.9.6", "TALOSCTL_1_11": "/nonexistent/talosctl"}
    r = v3.invoke("upgrade", "--cluster", "v3", extra_env=env)
    assert r.returncode == 1
    assert "TALOSCTL_1_11=/nonexistent/talosctl is not an executable file" in r.stderr
    del env["TALOSCTL_1_11"]
    r = v3.invoke("upgrade", "--cluster", "v3", extra_env=env)
    assert r.returncode == 1
    assert "no talosctl for the hop(s) into Talos 1.10, 1.11, 1.12, 1.13, 1.14" in r.stderr
    assert "TALOSCTL_1_10=/path/to/talosctl-1.10" in r.stderr
    assert _calls(v3, "upgrade", n) == []


def test_dropping_the_cilium_inline_manifest_is_refused(v3: FleetRepo) -> None:
    tpl = v3.root / "templates" / "controlplane.yaml.j2"
    tpl.write_text(tpl.read_text().replace("- name: cilium-install", "- name: cilium"))
    r = v3.invoke("generate", "--cluster", "v3", extra_env=ENV, timeout=400)
    assert r.returncode == 1
    assert "drops inline manifest(s) cilium-install from talos-cloudkoffer-v3" in r.stderr
    assert "--allow-manifest-removal" in r.stderr
    gen = v3.root / "generated" / "talos-cloudkoffer-v3" / "controlplane.yaml"
    assert "name: cilium-install" in gen.read_text()  # nothing written
    _ok(
        v3.invoke(
            "generate", "--cluster", "v3", "--allow-manifest-removal", extra_env=ENV, timeout=400
        )
    )
    assert "name: cilium\n" in gen.read_text()


def test_node_by_hostname_wrong_cluster_and_uncommitted_cluster_file(v3: FleetRepo) -> None:
    r = v3.invoke("upgrade", "--cluster", "v2", "--node", "ck3-worker-4", extra_env=ENV)
    assert r.returncode == 1
    assert "cluster talos-cloudkoffer-v2 has no node ck3-worker-4" in r.stderr
    cf = v3.root / "clusters" / "v3.yaml"
    cf.write_text(cf.read_text() + "# an edit nobody reviewed\n")
    out = _ok(v3.invoke("upgrade", "--node", "ck3-worker-4", "--version", "v1.8.4", extra_env=ENV))
    assert "warning: upgrading talos-cloudkoffer-v3 from uncommitted changes" in out
    assert "clusters/v3.yaml" in out
    assert _versions(v3)["192.168.1.4"] == "v1.8.4"
    # one node alone gets no Kubernetes hops: a hop past what Kubernetes 1.30 allows is refused
    n = len(v3.calls())
    r = v3.invoke("upgrade", "--node", "ck3-worker-5", "--version", "v1.13.9", extra_env=ENV)
    assert r.returncode == 1
    assert (
        "refusing to upgrade 192.168.1.5 to v1.13.9: Kubernetes 1.30.0 is not supported by "
        "Talos v1.13.9 (supported: 1.31 to 1.36)" in r.stderr
    )
    assert _calls(v3, "upgrade", n) == []

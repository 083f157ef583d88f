"""`invoke node.add`, `invoke node.remove` and `invoke reset` end to end on talosim."""

from __future__ import annotations

import json
import subprocess
from typing import Any

import pytest

from tests.emulated.e2e import FleetRepo, nodes_of

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.usefixtures("need_kubectl"),  # fails instead of skipping when CI=true
]
CPS = ["127.0.10.1", "127.0.10.2", "127.0.10.3"]
MUTATING = ("apply-config", "reset", "bootstrap", "upgrade", "reboot")


def _ok(r: Any) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout + r.stderr


def _kube_nodes(repo: FleetRepo) -> dict[str, dict[str, Any]]:
    kc = repo.root / ".state" / "talos-demo" / "kubeconfig"
    r = subprocess.run(
        ["kubectl", "--kubeconfig", str(kc), "get", "nodes", "-o", "json"],
        env=repo.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    out = {}
    for item in json.loads(r.stdout)["items"]:
        ip = next(a["address"] for a in item["status"]["addresses"] if a["type"] == "InternalIP")
        out[ip] = item
    return out


def _stage(repo: FleetRepo, ip: str) -> str:
    nodes = json.loads(repo.talosim("fleet", "list", "-o", "json").stdout)
    return str(next(n["stage"] for n in nodes if n["ip"] == ip))


def _etcd_member_ips(repo: FleetRepo, via: str) -> list[str]:
    tc = str(repo.root / ".state" / "talos-demo" / "talosconfig")
    r = repo.talosim("--talosconfig", tc, "etcd", "members", "-n", via, "-e", via)
    assert r.returncode == 0, r.stderr
    return sorted(
        line.split()[3].split("//")[1].split(":")[0] for line in r.stdout.splitlines()[1:]
    )


def _mutations(repo: FleetRepo, since: int) -> list[dict[str, Any]]:
    return [
        c
        for c in repo.calls()[since:]
        if c["cmd"] in MUTATING or c["argv"][:2] in (["etcd", "leave"], ["etcd", "remove-member"])
    ]


def _add_worker_to_cluster_file(repo: FleetRepo, ip: str, hostname: str) -> None:
    cf = repo.root / "clusters" / "demo.yaml"
    text = cf.read_text()
    entry = f"  - ip: {ip}\n    role: worker\n    hostname: {hostname}\nvars:"
    cf.write_text(text.replace("vars:", entry, 1))


def test_node_add_installs_only_the_new_node(installed: FleetRepo) -> None:
    installed.fleet("127.0.10.6", "")
    _add_worker_to_cluster_file(installed, "127.0.10.6", "demo-worker-6")
    r = installed.invoke("node.add", "--cluster", "demo", "--node", "127.0.10.6")
    assert r.returncode == 1
    assert "invoke generate --cluster talos-demo" in r.stderr  # generated/ first
    _ok(installed.invoke("generate", "--cluster", "demo"))
    n = len(installed.calls())
    out = _ok(installed.invoke("node.add", "--cluster", "demo", "--node", "127.0.10.6"))
    assert "add 127.0.10.6 (demo-worker-6) done" in out
    assert [nodes_of(c) for c in _mutations(installed, n)] == [["127.0.10.6"]]
    assert _kube_nodes(installed)["127.0.10.6"]["metadata"]["name"] == "demo-worker-6"
    n = len(installed.calls())
    out = _ok(installed.invoke("node.add", "--cluster", "demo", "--node", "demo-worker-6"))
    assert "nothing to do: 127.0.10.6 (demo-worker-6) is already in the cluster" in out
    assert _mutations(installed, n) == []


def test_node_add_refuses_a_node_that_is_not_in_maintenance_mode(installed: FleetRepo) -> None:
    installed.fleet("127.0.10.6", "")
    _add_worker_to_cluster_file(installed, "127.0.10.6", "demo-worker-6")
    _ok(installed.invoke("generate", "--cluster", "demo"))
    installed.fault("--node", "127.0.10.6", "--kind", "unreachable")
    n = len(installed.calls())
    r = installed.invoke("node.add", "--cluster", "demo", "--node", "127.0.10.6")
    assert r.returncode == 1
    assert "127.0.10.6 (demo-worker-6) is not in maintenance mode (unreachable)" in r.stderr
    assert _mutations(installed, n) == []


def test_node_remove_of_a_worker_drains_resets_and_deletes_it(installed: FleetRepo) -> None:
    n = len(installed.calls())
    out = _ok(installed.invoke("node.remove", "--cluster", "demo", "--node", "127.0.10.5", "--yes"))
    muts = _mutations(installed, n)
    assert [c["cmd"] for c in muts] == ["reset"]
    assert nodes_of(muts[0]) == ["127.0.10.5"]
    assert "--graceful=true" in muts[0]["argv"]
    assert "--reboot=false" in muts[0]["argv"]
    assert "drain 127.0.10.5: kubectl drain demo-worker-5" in out
    assert "remove 127.0.10.5 (demo-worker-5) from clusters/<alias>.yaml" in out
    assert _stage(installed, "127.0.10.5") == "off"
    assert "127.0.10.5" not in _kube_nodes(installed)
    n = len(installed.calls())
    out = _ok(installed.invoke("node.remove", "--cluster", "demo", "--node", "127.0.10.5", "--yes"))
    assert "nothing to do: 127.0.10.5 is no longer part of talos-demo" in out
    assert _mutations(installed, n) == []


def test_node_remove_of_a_control_plane_leaves_etcd_first(installed: FleetRepo) -> None:
    n = len(installed.calls())
    _ok(installed.invoke("node.remove", "--cluster", "demo", "--node", "demo-cp-3", "--yes"))
    muts = _mutations(installed, n)
    assert [(c["argv"][0], nodes_of(c)) for c in muts] == [
        ("etcd", ["127.0.10.3"]),
        ("reset", ["127.0.10.3"]),
    ]
    assert muts[0]["argv"][:2] == ["etcd", "leave"]
    assert _etcd_member_ips(installed, "127.0.10.1") == ["127.0.10.1", "127.0.10.2"]
    assert "127.0.10.3" not in _kube_nodes(installed)


def test_node_remove_refuses_when_the_rest_would_lose_quorum(installed: FleetRepo) -> None:
    installed.fault("--node", "127.0.10.2", "--kind", "etcd-down")
    n = len(installed.calls())
    r = installed.invoke("node.remove", "--cluster", "demo", "--node", "127.0.10.3", "--yes")
    assert r.returncode == 1
    assert "etcd is not fully healthy (127.0.10.2: " in r.stderr
    assert "1 of 2 member(s) would be up and 2 are needed for a majority" in r.stderr
    assert _mutations(installed, n) == []
    assert _etcd_member_ips(installed, "127.0.10.1") == CPS


def test_node_remove_and_reset_refuse_without_confirmation(installed: FleetRepo) -> None:
    n = len(installed.calls())
    r = installed.invoke("node.remove", "--cluster", "demo", "--node", "127.0.10.4")
    assert r.returncode == 1
    assert "re-run with the confirmation flag (--yes" in r.stderr
    assert "reset 127.0.10.4: talosctl reset --graceful --reboot=false" in r.stderr  # the plan
    r = installed.invoke("reset", "--node", "127.0.10.4")
    assert r.returncode == 1
    assert "--yes-wipe" in r.stderr
    out = _ok(installed.invoke("node.remove", "--node", "127.0.10.4", "--dry-run"))
    assert "talosctl reset --talosconfig" in out
    assert "kubectl --kubeconfig" in out
    assert _mutations(installed, n) == []
    assert _stage(installed, "127.0.10.4") == "running"


def test_reset_wipes_a_worker_back_to_maintenance_and_refuses_an_etcd_member(
    installed: FleetRepo,
) -> None:
    n = len(installed.calls())
    r = installed.invoke("reset", "--node", "127.0.10.2", "--yes-wipe")
    assert r.returncode == 1
    assert "127.0.10.2 (demo-cp-2) is a member of etcd" in r.stderr
    assert "invoke node.remove --node 127.0.10.2 --yes" in r.stderr
    assert _mutations(installed, n) == []
    _ok(installed.invoke("reset", "--node", "127.0.10.4", "--yes-wipe"))
    assert _stage(installed, "127.0.10.4") == "maintenance"
    out = _ok(installed.invoke("reset", "--node", "127.0.10.4", "--yes-wipe"))
    assert "nothing to do: 127.0.10.4 is already in maintenance mode" in out


def test_node_remove_refuses_without_kubectl_rather_than_skip_the_drain(
    installed: FleetRepo,
) -> None:
    n = len(installed.calls())
    r = installed.invoke(
        "node.remove",
        "--node",
        "127.0.10.4",
        "--yes",
        extra_env={"KUBECTL": str(installed.base / "no-such-kubectl")},
    )
    assert r.returncode == 1
    assert "node.remove needs kubectl" in r.stderr
    assert _mutations(installed, n) == []

"""`invoke upgrade` and `invoke upgrade-k8s` end to end on talosim."""

from __future__ import annotations

import json
from typing import Any

import pytest

from tests.emulated.e2e import TALOSIM, FleetRepo, nodes_of

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.usefixtures("need_kubectl"),  # fails instead of skipping when CI=true
]
CPS = ["127.0.10.1", "127.0.10.2", "127.0.10.3"]
WORKERS = ["127.0.10.4", "127.0.10.5"]
NEW_TALOSCTL = {"TALOSIM_VERSION": "v1.9.6"}  # the operator installed talosctl v1.9.6


def _ok(r: Any) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout + r.stderr


def _bump(repo: FleetRepo, version: str, alias: str = "demo") -> None:
    cf = repo.root / "clusters" / f"{alias}.yaml"
    cf.write_text(cf.read_text().replace("talos_version: v1.7.0", f"talos_version: {version}"))


def _upgrades(repo: FleetRepo, since: int = 0) -> list[dict[str, Any]]:
    return [c for c in repo.calls()[since:] if c["cmd"] == "upgrade"]


def _version(repo: FleetRepo, ip: str) -> str:
    nodes = json.loads(repo.talosim("fleet", "list", "-o", "json").stdout)
    return next(n["talos_version"] for n in nodes if n["ip"] == ip)


def test_single_node_upgrade_then_skip_when_current(installed: FleetRepo) -> None:
    _bump(installed, "v1.7.4")
    out = _ok(installed.invoke("upgrade", "--node", "127.0.10.4"))
    assert "upgraded to Talos v1.7.4" in out
    assert [nodes_of(c) for c in _upgrades(installed)] == [["127.0.10.4"]]
    assert _version(installed, "127.0.10.4") == "v1.7.4"
    assert _version(installed, "127.0.10.5") == "v1.7.0"
    n = len(installed.calls())
    out = _ok(installed.invoke("upgrade", "--node", "127.0.10.4"))
    assert "nothing to do: every node is already at Talos v1.7.4" in out
    assert _upgrades(installed, n) == []


def test_busy_file_failure_is_retried_once_as_a_staged_upgrade_that_reboots_by_itself(
    installed: FleetRepo,
) -> None:
    _bump(installed, "v1.7.4")
    installed.set_timings(upgrade=0.3, install=0.3, reboot=0.2, boot=0.1)
    installed.fault(
        "--node",
        "127.0.10.5",
        "--kind",
        "error",
        "--command",
        "upgrade-sequence",
        "--times",
        "1",
        "--message",
        "failed to unmount /var: device or resource busy",
    )
    n = len(installed.calls())
    out = _ok(installed.invoke("upgrade", "--node", "127.0.10.5"))
    assert "retrying once as a staged upgrade (it reboots the node by itself)" in out
    calls = installed.calls()[n:]
    ups = [c["argv"] for c in calls if c["cmd"] in ("upgrade", "reboot")]
    assert len(ups) == 2, "no reboot: the StageUpgrade sequence reboots the node itself"
    assert "--stage" not in ups[0]
    assert "--stage" in ups[1]
    assert not [a for a in ups[1] if a.startswith("--wait")], "talosctl waits for the node"
    assert _version(installed, "127.0.10.5") == "v1.7.4"
    nodes = json.loads(installed.talosim("fleet", "list", "-o", "json").stdout)
    events = next(nd["events"] for nd in nodes if nd["ip"] == "127.0.10.5")
    staged = next(i for i, e in enumerate(events) if e["event"] == "upgrade staged")
    assert [e.get("code") for e in events[staged:] if e["event"] == "sequence"] == []
    reboots = [e for e in events[staged:] if e.get("stage") == "rebooting"]
    assert len(reboots) == 2, "the staged sequence's reboot and the installer's, no third"


def test_silent_rollback_is_detected(installed: FleetRepo) -> None:
    _bump(installed, "v1.7.4")
    installed.fault("--node", "127.0.10.4", "--kind", "rollback", "--times", "1")
    r = installed.invoke("upgrade", "--node", "127.0.10.4")
    assert r.returncode == 1
    assert "came back at Talos v1.7.0 after upgrading to v1.7.4" in r.stderr
    assert "A/B rollback" in r.stderr


def test_rolling_upgrade_control_planes_one_at_a_time_then_worker_batches(
    installed: FleetRepo,
) -> None:
    installed.set_timings(upgrade=0.3, reboot=0.3, boot=0.2)
    _bump(installed, "v1.7.4")
    n = len(installed.calls())
    _ok(installed.invoke("upgrade", "--cluster", "demo", "--max-unavailable", "2"))
    ups = _upgrades(installed, n)
    assert [nodes_of(c)[0] for c in ups[:3]] == CPS
    cp_windows = [(c["start"], c["end"]) for c in ups[:3]]
    for (_, end), (start, _) in zip(cp_windows, cp_windows[1:], strict=False):
        assert end <= start, "control planes were upgraded in parallel"
    worker = [c for c in ups if nodes_of(c)[0] in WORKERS]
    assert min(c["start"] for c in worker) >= max(e for _, e in cp_windows)
    # cluster health before the first batch and after each of the 4 (3 control planes, the
    # workers); with no user gate in between, a batch's after-check is the next one's before
    healths = [c for c in installed.calls()[n:] if c["cmd"] == "health"]
    assert len(healths) == 1 + 4
    # the two workers form one batch: their upgrades overlap
    assert worker[0]["start"] < worker[1]["end"]
    assert worker[1]["start"] < worker[0]["end"]
    # the emulator's own timeline agrees: no two control planes were ever down together
    nodes = {
        n["ip"]: n for n in json.loads(installed.talosim("fleet", "list", "-o", "json").stdout)
    }
    down = []
    for ip in CPS:
        ev = [e for e in nodes[ip]["events"] if e["event"] == "stage"]
        start = next(e["t"] for e in ev if e["stage"] == "upgrading")
        end = next(e["t"] for e in ev if e["stage"] == "running" and e["t"] > start)
        down.append((start, end))
    down.sort()
    for (_, end), (start, _) in zip(down, down[1:], strict=False):
        assert end <= start
    journal = [
        json.loads(x)
        for x in (installed.root / ".state" / "talos-demo" / "journal.jsonl")
        .read_text()
        .splitlines()
    ]
    timed = [e for e in journal if e["step"] == "upgrade" and e["status"] == "ok" and e["node"]]
    assert len(timed) == 5
    assert all("seconds" in e for e in timed)
    backups = list((installed.root / ".state" / "talos-demo" / "backups").glob("*.snapshot"))
    assert len(backups) == 3
    assert all(oct(b.stat().st_mode & 0o777) == "0o600" for b in backups)


def test_worker_batches_respect_max_unavailable(installed: FleetRepo) -> None:
    installed.set_timings(upgrade=0.3, reboot=0.2, boot=0.1)
    _bump(installed, "v1.7.4")
    n = len(installed.calls())
    _ok(installed.invoke("upgrade", "--cluster", "demo", "--max-unavailable", "1"))
    worker = [c for c in _upgrades(installed, n) if nodes_of(c)[0] in WORKERS]
    assert worker[0]["end"] <= worker[1]["start"]


def test_failure_on_the_fifth_node_stops_the_roll_and_a_rerun_resumes_there(
    installed: FleetRepo,
) -> None:
    _bump(installed, "v1.7.4")
    installed.fault(
        "--node",
        "127.0.10.5",
        "--kind",
        "error",
        "--command",
        "upgrade",
        "--times",
        "1",
        "--message",
        "installer image pull failed",
    )
    installed.talosim("fleet", "create", "--nodes", "127.0.10.6")  # untouched bystander check
    r = installed.invoke("upgrade", "--cluster", "demo")
    assert r.returncode == 1
    assert "on node 127.0.10.5" in r.stderr
    assert "installer image pull failed" in r.stderr
    assert [_version(installed, ip) for ip in CPS + WORKERS] == ["v1.7.4"] * 4 + ["v1.7.0"]
    n = len(installed.calls())
    _ok(installed.invoke("upgrade", "--cluster", "demo"))
    assert [nodes_of(c) for c in _upgrades(installed, n)] == [["127.0.10.5"]]


def test_later_nodes_stay_untouched_after_a_failure(installed: FleetRepo) -> None:
    _bump(installed, "v1.7.4")
    installed.fault(
        "--node",
        "127.0.10.2",
        "--kind",
        "error",
        "--command",
        "upgrade",
        "--times",
        "1",
        "--message",
        "boom",
    )
    n = len(installed.calls())
    r = installed.invoke("upgrade", "--cluster", "demo")
    assert r.returncode == 1
    assert [nodes_of(c)[0] for c in _upgrades(installed, n)] == ["127.0.10.1", "127.0.10.2"]
    assert [_version(installed, ip) for ip in CPS + WORKERS] == [
        "v1.7.4",
        "v1.7.0",
        "v1.7.0",
        "v1.7.0",
        "v1.7.0",
    ]


def test_unhealthy_etcd_member_blocks_the_start_with_zero_upgrade_calls(
    installed: FleetRepo,
) -> None:
    _bump(installed, "v1.7.4")
    installed.fault("--node", "127.0.10.3", "--kind", "etcd-down")
    n = len(installed.calls())
    r = installed.invoke("upgrade", "--cluster", "demo", "--health-timeout", "2")
    assert r.returncode == 1
    # talosprov's own etcd check runs first (from Talos 1.13 the server no longer checks)
    assert "etcd is not healthy on every member; not upgrading 127.0.10.1" in r.stderr
    assert "127.0.10.3" in r.stderr
    assert _upgrades(installed, n) == []


def test_failing_user_gate_stops_the_roll(installed: FleetRepo) -> None:
    _bump(installed, "v1.7.4")
    n = len(installed.calls())
    r = installed.invoke(
        "upgrade",
        "--cluster",
        "demo",
        "--gate",
        "true",
        "--gate",
        "echo ceph HEALTH_WARN >&2; exit 3",
    )
    assert r.returncode == 1
    assert "gate `echo ceph HEALTH_WARN >&2; exit 3` failed after 127.0.10.1 (exit 3)" in r.stderr
    assert "HEALTH_WARN" in r.stderr
    assert [nodes_of(c)[0] for c in _upgrades(installed, n)] == ["127.0.10.1"]


def test_multi_minor_upgrade_hops_through_each_minor(installed: FleetRepo) -> None:
    _bump(installed, "v1.9.6")
    r = installed.invoke("upgrade", "--node", "127.0.10.4")
    assert r.returncode == 1
    assert (
        "talosctl v1.7.0 (talosim (emulated cluster)) is older than talos-demo's Talos v1.9.6"
        in r.stderr
    )
    dry = _ok(installed.invoke("upgrade", "--node", "127.0.10.4", "--dry-run"))
    assert "127.0.10.4 (demo-worker-4, worker): v1.7.0 → v1.8.4 → v1.9.6" in dry
    n = len(installed.calls())
    _ok(installed.invoke("upgrade", "--node", "127.0.10.4", extra_env=NEW_TALOSCTL))
    images = [a for c in _upgrades(installed, n) for a in c["argv"] if a.startswith("ghcr.io")]
    assert images == ["ghcr.io/siderolabs/installer:v1.8.4", "ghcr.io/siderolabs/installer:v1.9.6"]
    assert _version(installed, "127.0.10.4") == "v1.9.6"


def test_impossible_upgrade_path_is_refused(installed: FleetRepo) -> None:
    r = installed.invoke("upgrade", "--node", "127.0.10.4", "--version", "v1.16.0")
    assert r.returncode == 1
    assert "Talos 1.15 is not in talosprov/data/versions.yaml" in r.stderr
    r = installed.invoke("upgrade", "--node", "127.0.10.4", "--version", "v1.6.0")
    assert r.returncode == 1
    assert "downgrades are not supported" in r.stderr


def test_dry_run_changes_nothing(installed: FleetRepo) -> None:
    _bump(installed, "v1.7.4")
    n = len(installed.calls())
    out = _ok(installed.invoke("upgrade", "--cluster", "demo", "--dry-run"))
    assert "talosctl upgrade --talosconfig" in out
    assert "talosctl etcd snapshot" in out
    assert [c for c in installed.calls()[n:] if c["cmd"] not in ("get", "version")] == []


def test_upgrade_k8s_dry_run_first_then_real_then_verified_and_idempotent(
    installed: FleetRepo,
) -> None:
    n = len(installed.calls())
    out = _ok(installed.invoke("upgrade-k8s", "--cluster", "demo", "--to", "1.30.1"))
    assert "Kubernetes 1.30.0 → 1.30.1, every kubelet and control-plane pod verified" in out
    k8s = [c["argv"] for c in installed.calls()[n:] if c["cmd"] == "upgrade-k8s"]
    assert len(k8s) == 2
    assert "--dry-run" in k8s[0]
    assert "--dry-run" not in k8s[1]
    out = _ok(installed.invoke("upgrade-k8s", "--cluster", "demo", "--to", "1.30.1"))
    assert "nothing to do" in out


@pytest.mark.slow
def test_upgrade_k8s_refuses_skew_and_walks_minors(installed: FleetRepo) -> None:
    r = installed.invoke("upgrade-k8s", "--cluster", "demo", "--to", "1.31.0")
    assert r.returncode == 1
    assert "Kubernetes 1.31.0 is not supported by Talos v1.7.0" in r.stderr
    installed.talosim("fault", "clear")
    _bump(installed, "v1.9.6")
    _ok(installed.invoke("upgrade", "--cluster", "demo", extra_env=NEW_TALOSCTL))
    # two minors: walked one at a time (the 1.31 hop at the patch of data/versions.yaml)
    n = len(installed.calls())
    out = _ok(installed.invoke("upgrade-k8s", "--cluster", "demo", "--to", "1.32.0"))
    assert "Kubernetes 1.30.0 → 1.31.4, every kubelet" in out
    assert "Kubernetes 1.31.4 → 1.32.0, every kubelet" in out
    k8s = [c["argv"] for c in installed.calls()[n:] if c["cmd"] == "upgrade-k8s"]
    assert [a[a.index("--to") + 1] for a in k8s] == ["1.31.4", "1.31.4", "1.32.0", "1.32.0"]


def test_upgrade_k8s_partial_failure_then_rerun_succeeds(installed: FleetRepo) -> None:
    installed.fault(
        "--node",
        "127.0.10.5",
        "--kind",
        "error",
        "--command",
        "upgrade-k8s",
        "--times",
        "1",
        "--message",
        "kubelet restart timed out",
    )
    r = installed.invoke("upgrade-k8s", "--cluster", "demo", "--to", "1.30.1")
    assert r.returncode == 1
    assert "kubelet restart timed out" in r.stderr
    _ok(installed.invoke("upgrade-k8s", "--cluster", "demo", "--to", "1.30.1"))


def test_upgrade_node_of_v3_uses_the_current_talosconfig_context(
    installed_v3: FleetRepo,
) -> None:
    repo = installed_v3
    env = {"TALOSCTL": TALOSIM}
    _bump(repo, "v1.7.4", "v3")
    out = _ok(repo.invoke("upgrade", "--node", "192.168.1.4", extra_env=env))
    assert "talos-cloudkoffer-v3: upgraded to Talos v1.7.4" in out
    ups = [c for c in repo.calls() if c["cmd"] == "upgrade"]
    assert [nodes_of(c) for c in ups] == [["192.168.1.4"]]
    # with no context naming any of v1-v3, the IP is ambiguous: say so and list the candidates
    (repo.home / ".talos" / "config").write_text("context: other\ncontexts: {}\n")
    r = repo.invoke("upgrade", "--node", "192.168.1.4", extra_env=env)
    assert r.returncode == 1
    assert (
        "192.168.1.4 belongs to several clusters (talos-cloudkoffer-v1, talos-cloudkoffer-v2, "
        "talos-cloudkoffer-v3)" in r.stderr
    )
    assert "--cluster" in r.stderr

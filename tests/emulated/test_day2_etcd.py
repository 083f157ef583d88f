"""`invoke backup` and `invoke restore` end to end on talosim: snapshots, disaster recovery."""

from __future__ import annotations

import json
import re
import subprocess
from pathlib import Path
from typing import Any

import pytest

from tests.emulated.e2e import FleetRepo, nodes_of

pytestmark = [
    pytest.mark.e2e,
    pytest.mark.usefixtures("need_kubectl"),  # fails instead of skipping when CI=true
]
CPS = ["127.0.10.1", "127.0.10.2", "127.0.10.3"]
WORKERS = ["127.0.10.4", "127.0.10.5"]


def _ok(r: Any) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout + r.stderr


def _kubectl(repo: FleetRepo, *args: str) -> subprocess.CompletedProcess[str]:
    kc = repo.root / ".state" / "talos-demo" / "kubeconfig"
    return subprocess.run(
        ["kubectl", "--kubeconfig", str(kc), *args],
        env=repo.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )


def _namespaces(repo: FleetRepo) -> list[str]:
    r = _kubectl(repo, "get", "namespaces", "-o", "json")
    assert r.returncode == 0, r.stderr
    return sorted(i["metadata"]["name"] for i in json.loads(r.stdout)["items"])


def _backups(repo: FleetRepo) -> list[Path]:
    return sorted((repo.root / ".state" / "talos-demo" / "backups").glob("*.snapshot"))


def test_backup_writes_a_private_snapshot_and_keeps_the_newest(installed: FleetRepo) -> None:
    out = _ok(installed.invoke("backup", "--cluster", "demo"))
    [snap] = _backups(installed)
    assert f".state/talos-demo/backups/{snap.name} {snap.stat().st_size} bytes" in out
    assert snap.stat().st_mode & 0o777 == 0o600
    assert snap.parent.stat().st_mode & 0o777 == 0o700
    snaps = [c for c in installed.calls() if c["argv"][:2] == ["etcd", "snapshot"]]
    assert [nodes_of(c) for c in snaps] == [["127.0.10.1"]]
    # forked calls often take two backups in one second (`T.snapshot`, `T-2.snapshot`): the
    # ones kept must still be the two just taken (etcd.backup_age; tests/cases/plan/backup)
    taken = []
    for _ in range(3):
        out = _ok(installed.invoke("backup", "--cluster", "demo", "--keep", "2"))
        taken += re.findall(r"backups/(\S+\.snapshot) \d+ bytes", out)
    assert len(taken) == 3
    assert sorted(p.name for p in _backups(installed)) == sorted(taken[1:])


def test_backup_takes_the_snapshot_from_a_healthy_member(installed: FleetRepo) -> None:
    installed.fault("--node", "127.0.10.1", "--kind", "etcd-down")
    _ok(installed.invoke("backup", "--cluster", "demo"))
    snaps = [c for c in installed.calls() if c["argv"][:2] == ["etcd", "snapshot"]]
    assert [nodes_of(c) for c in snaps] == [["127.0.10.2"]]


def test_backup_dry_run_prints_the_command_and_writes_nothing(installed: FleetRepo) -> None:
    out = _ok(installed.invoke("backup", "--cluster", "demo", "--dry-run"))
    assert "talosctl etcd snapshot .state/talos-demo/backups/" in out
    assert _backups(installed) == []


def test_restore_brings_back_a_cluster_that_lost_every_etcd_member(installed: FleetRepo) -> None:
    r = _kubectl(installed, "create", "namespace", "payments")
    assert r.returncode == 0, r.stderr
    _ok(installed.invoke("backup", "--cluster", "demo"))
    [snap] = _backups(installed)
    r = _kubectl(installed, "create", "namespace", "after-backup")
    assert r.returncode == 0, r.stderr

    # disaster: every control plane loses its etcd data
    tc = str(installed.root / ".state" / "talos-demo" / "talosconfig")
    for ip in CPS:
        res = installed.talosim(
            "--talosconfig", tc, "reset", "-n", ip, "-e", ip, "--graceful=false", "--reboot",
            "--system-labels-to-wipe=EPHEMERAL",
        )  # fmt: skip
        assert res.returncode == 0, res.stderr
    res = installed.talosim("--talosconfig", tc, "etcd", "members", "-n", CPS[0], "-e", CPS[0])
    assert "etcd is not running" in res.stderr

    n = len(installed.calls())
    out = _ok(
        installed.invoke("restore", "--cluster", "demo", "--from", str(snap), "--yes-wipe-etcd")
    )
    assert "etcd restored" in out
    calls = installed.calls()[n:]
    resets = [c for c in calls if c["cmd"] == "reset"]
    assert sorted(ip for c in resets for ip in nodes_of(c)) == CPS  # workers are not touched
    assert all("--system-labels-to-wipe=EPHEMERAL" in c["argv"] for c in resets)
    assert all("--graceful=false" in c["argv"] for c in resets)
    boots = [c for c in calls if c["cmd"] == "bootstrap"]
    assert [nodes_of(c) for c in boots] == [[CPS[0]]]
    assert f"--recover-from={snap}" in boots[0]["argv"]
    # the data of the snapshot is back, what came after it is gone; every node is Ready
    names = _namespaces(installed)
    assert "payments" in names
    assert "after-backup" not in names
    st = _ok(installed.invoke("status", "--cluster", "demo", "--json"))
    rows = json.loads(st[: st.rindex("]") + 1])
    assert {r["ip"]: r["ready"] for r in rows} == dict.fromkeys(CPS + WORKERS, "yes")
    # a re-run is a no-op
    out = _ok(
        installed.invoke("restore", "--cluster", "demo", "--from", str(snap), "--yes-wipe-etcd")
    )
    assert "already restored from this snapshot" in out


def test_restore_without_confirmation_prints_the_plan_and_refuses(installed: FleetRepo) -> None:
    _ok(installed.invoke("backup", "--cluster", "demo"))
    [snap] = _backups(installed)
    n = len(installed.calls())
    r = installed.invoke("restore", "--cluster", "demo", "--from", str(snap))
    assert r.returncode == 1
    assert "re-run with --yes-wipe-etcd" in r.stderr
    assert "reset 127.0.10.1, 127.0.10.2, 127.0.10.3" not in r.stderr  # the plan is by kind
    assert "wipe 127.0.10.1, 127.0.10.2, 127.0.10.3" in r.stderr
    assert not [c for c in installed.calls()[n:] if c["cmd"] in ("reset", "bootstrap")]
    out = _ok(installed.invoke("restore", "--cluster", "demo", "--from", str(snap), "--dry-run"))
    assert "--system-labels-to-wipe=EPHEMERAL" in out
    assert f"--recover-from={snap}" in out
    assert not [c for c in installed.calls()[n:] if c["cmd"] in ("reset", "bootstrap")]


def test_restore_refuses_a_missing_snapshot(installed: FleetRepo) -> None:
    r = installed.invoke(
        "restore", "--cluster", "demo", "--from", "nope.snapshot", "--yes-wipe-etcd"
    )
    assert r.returncode == 1
    assert "nope.snapshot: no such file" in r.stderr


def test_a_restore_that_stopped_after_the_recovery_resumes_without_wiping_again(
    installed: FleetRepo,
) -> None:
    r = _kubectl(installed, "create", "namespace", "payments")
    assert r.returncode == 0, r.stderr
    _ok(installed.invoke("backup", "--cluster", "demo"))
    [snap] = _backups(installed)
    installed.fault(
        "--node", "127.0.10.1", "--kind", "error", "--command", "health", "--times", "1"
    )
    r = installed.invoke("restore", "--cluster", "demo", "--from", str(snap), "--yes-wipe-etcd")
    assert r.returncode == 1
    assert "did not become healthy after the recovery" in r.stderr
    n = len(installed.calls())
    out = _ok(
        installed.invoke("restore", "--cluster", "demo", "--from", str(snap), "--yes-wipe-etcd")
    )
    assert "etcd restored" in out
    assert not [c for c in installed.calls()[n:] if c["cmd"] in ("reset", "bootstrap")]
    assert "payments" in _namespaces(installed)

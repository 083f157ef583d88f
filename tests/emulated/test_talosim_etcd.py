"""talosim's etcd recovery: the snapshot's sha256 trailer is checked as etcdutl checks it."""

from __future__ import annotations

import json

from tests.sim import CPS, Sim


def _lose_etcd(sim: Sim) -> None:
    for ip in CPS:
        sim.ok(
            *sim.tc(
                "reset",
                "-n",
                ip,
                "--graceful=false",
                "--reboot",
                "--system-labels-to-wipe=EPHEMERAL",
            )
        )


def _etcd_runs(sim: Sim) -> bool:
    return sim.run(*sim.tc("etcd", "status", "-n", CPS[0])).returncode == 0


def _events(sim: Sim, ip: str) -> list[dict[str, object]]:
    return list(json.loads((sim.state / "nodes" / f"{ip}.json").read_text())["events"])


def test_a_corrupted_snapshot_is_refused_by_etcd_unless_the_hash_check_is_skipped(
    cluster: Sim,
) -> None:
    cluster.ok(*cluster.tc("etcd", "snapshot", "db.snapshot", "-n", CPS[0]))
    path = cluster.cwd / "db.snapshot"
    raw = bytearray(path.read_bytes())
    raw[-1] ^= 0xFF  # the sha256 trailer no longer matches; the database itself still opens
    path.write_bytes(bytes(raw))
    _lose_etcd(cluster)
    # the RPC succeeds; etcd fails to start from the snapshot (services/etcd.go)
    cluster.ok(*cluster.tc("bootstrap", "-n", CPS[0], "--recover-from=db.snapshot"))
    assert not _etcd_runs(cluster)
    assert any(
        "error recovering from the snapshot: expected sha256" in str(e.get("error"))
        for e in _events(cluster, CPS[0])
    )
    cluster.ok(
        *cluster.tc(
            "bootstrap", "-n", CPS[0], "--recover-from=db.snapshot", "--recover-skip-hash-check"
        )
    )
    assert _etcd_runs(cluster)


def test_a_data_directory_copy_needs_the_skip_flag(cluster: Sim) -> None:
    cluster.ok(*cluster.tc("etcd", "snapshot", "db.snapshot", "-n", CPS[0]))
    path = cluster.cwd / "db.snapshot"
    (cluster.cwd / "member.db").write_bytes(path.read_bytes()[:-32])  # no sha256 trailer
    _lose_etcd(cluster)
    cluster.ok(*cluster.tc("bootstrap", "-n", CPS[0], "--recover-from=member.db"))
    assert not _etcd_runs(cluster)
    assert any(
        "snapshot missing hash but --skip-hash-check=false" in str(e.get("error"))
        for e in _events(cluster, CPS[0])
    )
    cluster.ok(
        *cluster.tc(
            "bootstrap", "-n", CPS[0], "--recover-from=member.db", "--recover-skip-hash-check"
        )
    )
    assert _etcd_runs(cluster)

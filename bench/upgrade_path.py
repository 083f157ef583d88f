"""The whole upgrade path v1.7.0/1.30.0 → v1.14.2/1.37.0 of a 3+7 node cluster on talosim.

Stage durations are real ones scaled down: a bare-metal Talos upgrade spends about 90 s pulling
and installing, 30 s rebooting and 40 s booting (T = 160 s per node); scaled by 1/SCALE. The
critical path of one Talos hop is (control planes + ceil(workers / max-unavailable)) node
upgrades, since control planes go one at a time and worker batches one after another; seven hops
make the path, Kubernetes hops are instant on talosim. Measured: the path with instant nodes
(talosprov's own gates, observation and talosctl/kubectl calls), the path with the scaled
durations, and how close the second is to critical path + overhead.
Usage: python bench/upgrade_path.py [SCALE, default 80] [MAX_UNAVAILABLE, default 3]
"""

from __future__ import annotations

import sys

from common import Bench, record

HOPS = 7  # 1.8, 1.9, 1.10, 1.11, 1.12, 1.13, 1.14


def _prepare(b: Bench) -> None:
    b.fleet()
    cf = b.root / "clusters" / "bench.yaml"
    cf.write_text(
        cf.read_text().replace(
            "talos_version: v1.7.0", "talos_version: v1.7.0\nconfig_contract: v1.7"
        )
    )
    b.invoke("install", "--cluster", "bench")
    text = cf.read_text().replace("talos_version: v1.7.0", "talos_version: v1.14.2")
    cf.write_text(text.replace("kubernetes_version: 1.30.0", "kubernetes_version: 1.37.0"))
    # the operator's talosctl is v1.14.2: it drives every hop
    b.env["TALOSIM_VERSION"] = "v1.14.2"


def main() -> None:
    scale = float(sys.argv[1]) if len(sys.argv) > 1 else 80.0
    mu = int(sys.argv[2]) if len(sys.argv) > 2 else 3
    upgrade, reboot, boot = 90 / scale, 30 / scale, 40 / scale
    t = upgrade + reboot + boot
    args = ("upgrade", "--cluster", "bench", "--max-unavailable", str(mu))
    base = Bench()
    try:
        _prepare(base)
        overhead = base.invoke(*args)
        ups = len([c for c in base.calls() if c["cmd"] == "upgrade"])
    finally:
        base.close()
    b = Bench()
    try:
        _prepare(b)
        b.talosim(
            "fleet",
            "timings",
            *("--set", f"upgrade={upgrade}", "--set", f"reboot={reboot}"),
            *("--set", f"boot={boot}"),
        )
        took = b.invoke(*args)
        again = b.invoke(*args)
    finally:
        b.close()
    per_hop = b.cps + -(-(b.n - b.cps) // mu)
    critical = HOPS * per_hop * t
    record(
        "upgrade_path",
        {
            "nodes": b.n,
            "path": "v1.7.0/1.30.0 -> v1.14.2/1.37.0 (7 Talos hops, 7 Kubernetes hops)",
            "scale": scale,
            "T_seconds_per_node": round(t, 2),
            "T_real_seconds_per_node": 160,
            "max_unavailable": mu,
            "node_upgrades": ups,
            "critical_path_seconds": round(critical, 1),
            "overhead_with_instant_nodes_seconds": round(overhead, 1),
            "path_seconds": round(took, 1),
            "node_time_in_path_seconds": round(took - overhead, 1),
            "node_time_over_critical_path": round((took - overhead) / critical, 2),
            "critical_path_real_minutes": round(HOPS * per_hop * 160 / 60, 1),
            "serial_every_node_real_minutes": round(HOPS * b.n * 160 / 60, 1),
            "rerun_noop_seconds": round(again, 1),
        },
    )


if __name__ == "__main__":
    main()

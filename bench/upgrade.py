"""Rolling upgrade of 3 control planes and 7 workers, per-node time T, --max-unavailable 3.

The bar (issue 7): close to (3 + 3) T plus gates, not 10 T. Usage: python bench/upgrade.py [T]
"""

from __future__ import annotations

import sys

from common import Bench, record


def main() -> None:
    t = float(sys.argv[1]) if len(sys.argv) > 1 else 4.0
    b = Bench()
    try:
        b.fleet()
        b.invoke("install", "--cluster", "bench")
        cf = b.root / "clusters" / "bench.yaml"
        # gate cost: the same upgrade with instant nodes
        b.talosim("fault", "clear")

        def timings(upgrade: float, reboot: float, boot: float) -> None:
            b.talosim(
                "fleet",
                "timings",
                *("--set", f"upgrade={upgrade}", "--set", f"reboot={reboot}"),
                *("--set", f"boot={boot}"),
            )

        cf.write_text(cf.read_text().replace("talos_version: v1.7.0", "talos_version: v1.7.4"))
        timings(0, 0, 0)
        gates = b.invoke("upgrade", "--cluster", "bench", "--max-unavailable", "3")
        cf.write_text(cf.read_text().replace("talos_version: v1.7.4", "talos_version: v1.7.7"))
        timings(t * 0.4, t * 0.4, t * 0.2)
        took = b.invoke("upgrade", "--cluster", "bench", "--max-unavailable", "3")
        batches = 3 + -(-7 // 3)
        record(
            "upgrade",
            {
                "nodes": b.n,
                "T_seconds": t,
                "max_unavailable": 3,
                "batches": batches,
                "upgrade_seconds": round(took, 1),
                "gates_and_overhead_with_instant_nodes_seconds": round(gates, 1),
                "node_time_in_upgrade_seconds": round(took - gates, 1),
                "node_time_over_T": round((took - gates) / t, 2),
                "bar_6T_plus_gates_seconds": round(6 * t + gates, 1),
                "serial_10T_plus_gates_seconds": round(10 * t + gates, 1),
                "meets_bar": took <= 6 * t + gates + 0.5 * t,
            },
        )
    finally:
        b.close()


if __name__ == "__main__":
    main()

"""Install a 10-node cluster whose nodes take T seconds each to install and reboot.

The bar (issue 6): close to the critical path, about 2 T plus bootstrap and health, not 10 T as
the runbook's loops take. Usage: python bench/install.py [T seconds, default 6]
"""

from __future__ import annotations

import sys

from common import Bench, record


def main() -> None:
    t = float(sys.argv[1]) if len(sys.argv) > 1 else 6.0
    b = Bench()
    try:
        b.fleet(install=t * 0.6, reboot=t * 0.2, boot=t * 0.2)
        # baseline: what install costs with instant nodes (generation, bootstrap, health, checks)
        base = Bench()
        try:
            base.fleet()
            overhead = base.invoke("install", "--cluster", "bench")
        finally:
            base.close()
        took = b.invoke("install", "--cluster", "bench")
        again = b.invoke("install", "--cluster", "bench")
        applies = [c for c in b.calls() if c["cmd"] == "apply-config"]
        spread = max(c["start"] for c in applies) - min(c["start"] for c in applies)
        record(
            "install",
            {
                "nodes": b.n,
                "T_seconds": t,
                "install_seconds": round(took, 1),
                "overhead_with_instant_nodes_seconds": round(overhead, 1),
                "node_time_in_install_seconds": round(took - overhead, 1),
                "node_time_over_T": round((took - overhead) / t, 2),
                "bar_2T_plus_overhead_seconds": round(2 * t + overhead, 1),
                "serial_runbook_10T_plus_overhead_seconds": round(10 * t + overhead, 1),
                "apply_calls_spread_seconds": round(spread, 2),
                "rerun_noop_seconds": round(again, 1),
                "meets_bar": took <= 2 * t + overhead,
            },
        )
    finally:
        b.close()


if __name__ == "__main__":
    main()

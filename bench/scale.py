"""Install, status and rolling upgrade of 10, 50 and 100-node emulated clusters, with timelines.

Stage times are a bare-metal NUC's (install 90 s, reboot 45 s, boot 45 s, upgrade 60 s) scaled down
by a common factor, so the nodes' own time stays in proportion to the tool's. Reports, per size:
wall time, the critical path (what the nodes themselves need: nothing can finish sooner), the
tool's own overhead per node and per talosctl call, and the number of talosctl and kubectl calls.
Writes bench/reports/scale.json and one PNG timeline per run.

Usage: python bench/scale.py [--sizes 10,50,100] [--scale 30] [--max-unavailable 10]
"""

from __future__ import annotations

import argparse
import json
import os
import stat
import time
from pathlib import Path

from common import ROOT, Bench
from timeline import calls_in, node_spans, plot

REAL = {"install": 90.0, "reboot": 45.0, "boot": 45.0, "upgrade": 60.0}
REPORTS = ROOT / "bench" / "reports"


def kubectl_counter(b: Bench) -> Path:
    """A KUBECTL wrapper (not named kubectl, not on PATH) that counts calls, then runs kubectl."""
    real = os.environ.get("KUBECTL") or "kubectl"
    log = b.tmp / "kubectl.calls"
    wrapper = b.tmp / "count-kubectl"
    wrapper.write_text(f'#!/bin/sh\necho x >> "{log}"\nexec "{real}" "$@"\n')
    wrapper.chmod(wrapper.stat().st_mode | stat.S_IXUSR)
    b.env["KUBECTL"] = str(wrapper)
    return log


def count(log: Path) -> int:
    return len(log.read_text().splitlines()) if log.exists() else 0


def timed(b: Bench, log: Path, *args: str) -> dict:
    before = count(log)
    start = time.time()
    took = b.invoke(*args)
    end = start + took
    calls = calls_in(b.root / ".talosim", start, end)
    busy = sum(c["end"] - c["start"] for c in calls)
    return {
        "seconds": round(took, 2),
        "start": start,
        "end": end,
        "talosctl_calls": len(calls),
        "talosctl_call_mean_seconds": round(busy / len(calls), 3) if calls else 0.0,
        "kubectl_calls": count(log) - before,
    }


def set_timings(b: Bench, **seconds: float) -> None:
    """Change the fleet's stage times through talosim's own command, else its settings file."""
    try:
        b.talosim("fleet", "timings", *[f"--{k}-seconds={v}" for k, v in seconds.items()])
    except Exception:  # older talosim without `fleet timings`
        p = b.root / ".talosim" / "fleet.json"
        f = json.loads(p.read_text())
        f["settings"].update({f"{k}_seconds": v for k, v in seconds.items()})
        p.write_text(json.dumps(f))


def run(n: int, factor: float, max_unavailable: int) -> dict:
    t = {k: v / factor for k, v in REAL.items()}
    b = Bench(cps=3, workers=n - 3, net="127.0.30")
    try:
        log = kubectl_counter(b)
        b.fleet(install=t["install"], reboot=t["reboot"], boot=t["boot"])
        install = timed(b, log, "install", "--cluster", "bench")
        # Nothing can be Ready before one install + reboot + boot; the nodes do it in parallel.
        install["critical_path_seconds"] = round(t["install"] + t["reboot"] + t["boot"], 2)
        status = timed(b, log, "status", "--cluster", "bench")

        cf = b.root / "clusters" / "bench.yaml"
        cf.write_text(cf.read_text().replace("talos_version: v1.7.0", "talos_version: v1.7.4"))
        set_timings(b, upgrade=t["upgrade"], reboot=t["reboot"], boot=t["boot"])
        upgrade = timed(
            b, log, "upgrade", "--cluster", "bench", "--max-unavailable", str(max_unavailable)
        )
        # Control planes one at a time, then the workers in batches: each batch one node's time.
        batches = 3 + -(-(n - 3) // max_unavailable)
        per_node = t["upgrade"] + t["reboot"] + t["boot"]
        upgrade["batches"] = batches
        upgrade["critical_path_seconds"] = round(batches * per_node, 2)

        state = b.root / ".talosim"
        for name, r in (("install", install), ("upgrade", upgrade)):
            spans = node_spans(state, r["start"], r["end"])
            plot(
                spans,
                r["seconds"],
                r["critical_path_seconds"],
                f"{name}: {n} nodes (stage times ÷ {factor:g})",
                REPORTS / f"scale-{n}-{name}.png",
            )
        for r in (install, status, upgrade):
            cp = r.get("critical_path_seconds", 0.0)
            r["tool_overhead_seconds"] = round(r["seconds"] - cp, 2)
            r["tool_overhead_per_node_seconds"] = round((r["seconds"] - cp) / n, 3)
            r["over_critical_path"] = round(r["seconds"] / cp, 2) if cp else None
            del r["start"], r["end"]
        return {
            "nodes": n,
            "stage_seconds": t,
            "install": install,
            "status": status,
            "upgrade": upgrade,
        }
    finally:
        b.close()


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--sizes", default="10,50,100")
    ap.add_argument("--scale", type=float, default=30.0, help="divide real stage times by this")
    ap.add_argument("--max-unavailable", type=int, default=10)
    ap.add_argument("--out", default="scale.json", help="STRING file name under bench/reports/")
    a = ap.parse_args()
    results = [run(int(n), a.scale, a.max_unavailable) for n in a.sizes.split(",")]
    REPORTS.mkdir(parents=True, exist_ok=True)
    out = {"machine_cores": os.cpu_count(), "scale": a.scale, "runs": results}
    (REPORTS / a.out).write_text(json.dumps(out, indent=2) + "\n")
    print(
        f"{'nodes':>5} {'task':<8} {'seconds':>8} {'crit.path':>9} {'×cp':>5} "
        f"{'ovh/node':>8} {'talosctl':>8} {'s/call':>6} {'kubectl':>7}"
    )
    for r in results:
        for task in ("install", "status", "upgrade"):
            x = r[task]
            print(
                f"{r['nodes']:>5} {task:<8} {x['seconds']:>8} "
                f"{x.get('critical_path_seconds', '-'):>9} {x['over_critical_path'] or '-':>5} "
                f"{x['tool_overhead_per_node_seconds']:>8} {x['talosctl_calls']:>8} "
                f"{x['talosctl_call_mean_seconds']:>6} {x['kubectl_calls']:>7}"
            )


if __name__ == "__main__":
    main()

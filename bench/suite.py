"""How long the whole test suite takes (issue #13's bar: under 3 minutes on 2 cores).

Runs `pytest` as `invoke test` does (the repository's addopts: -n auto, not the live-cluster
tests) in a subprocess, on a copy of the repository's tracked files, and reports wall time, CPU
count and the pass/fail/skip counts; `--durations` lists the slowest tests, which is where to cut
process spawns. A measurement, not a test: nothing fails when the bar is missed, but the verdict
is printed and saved to bench/results/suite-<time>.json.

    .venv/bin/python bench/suite.py [--workers N] [--runs 2] [-- extra pytest args]
"""

from __future__ import annotations

import argparse
import json
import os
import re
import shutil
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
BAR_SECONDS = 180


def tracked_copy() -> Path:
    """The tracked files (working-tree content) in a temporary folder: what a fresh clone has."""
    files = subprocess.run(
        ["git", "ls-files", "-z"], cwd=ROOT, capture_output=True, check=True
    ).stdout.decode()
    dest = Path(tempfile.mkdtemp(prefix="talosprov-suite-")) / "repo"
    for rel in filter(None, files.split("\0")):
        src = ROOT / rel
        if src.is_file():
            (dest / rel).parent.mkdir(parents=True, exist_ok=True)
            shutil.copy2(src, dest / rel)
    # a clone, not a folder: tests read `git ls-files` (e.g. the scan of tracked files)
    git = ["git", "-c", "user.name=bench", "-c", "user.email=bench@example.invalid"]
    for args in (["init", "-q"], ["add", "-A"], ["commit", "-qm", "tracked files"]):
        subprocess.run([*git, *args], cwd=dest, check=True, capture_output=True)
    # as scripts/setup does for a checkout: where PYTHONDONTWRITEBYTECODE is set, nothing else
    # would write the copy's bytecode and every process would compile it again
    subprocess.run(
        [sys.executable, "-m", "compileall", "-q", "talosprov", "talosim", "tasks.py"],
        cwd=dest,
        check=True,
        capture_output=True,
    )
    # and its talosim's native launcher, built for this interpreter and the copy's talosim (a
    # clone's own setup would build it; without gcc the copy runs the Python launcher)
    native = dest / "talosim" / "native"
    subprocess.run(
        [native / "build", sys.executable, dest / "talosim", native / "talosim-launch"],
        check=False,
        capture_output=True,
    )
    return dest


def counts(summary: str) -> dict[str, int]:
    """`12 passed, 1 skipped in 3.2s` -> {"passed": 12, "skipped": 1}."""
    return {
        k: int(n) for n, k in re.findall(r"(\d+) (passed|failed|skipped|errors?|xfailed)", summary)
    }


def run_once(repo: Path, workers: str, extra: list[str]) -> dict[str, object]:
    env = {
        k: v for k, v in os.environ.items() if not k.startswith(("TALOS", "SOPS_", "KUBECONFIG"))
    }
    env["PYTHONPATH"] = str(repo)
    argv = [sys.executable, "-m", "pytest", "-q", "-p", "no:cacheprovider", "-n", workers]
    argv += ["--durations=0", *extra]
    start = time.monotonic()
    proc = subprocess.run(argv, cwd=repo, env=env, capture_output=True, text=True, check=False)
    wall = time.monotonic() - start
    tail = proc.stdout.strip().splitlines()
    # the last line, `3 failed, 290 passed, 2 skipped in 181.2s (0:03:01)` (with -q no "=")
    summary = next(
        (
            line
            for line in reversed(tail)
            if re.search(r"\d+ (passed|failed|error)", line) and re.search(r" in [\d.]+s", line)
        ),
        "",
    )
    slow = [line for line in tail if re.match(r"^\d+\.\d+s (call|setup|teardown)", line)]
    # worker seconds per test file: where the time goes, with -n N it is ~N times the wall time
    by_file: dict[str, float] = {}
    for line in slow:
        seconds, _phase, test = line.split(None, 2)
        name = test.split("::", 1)[0]
        by_file[name] = by_file.get(name, 0.0) + float(seconds.rstrip("s"))
    return {
        "wall_seconds": round(wall, 1),
        "exit_code": proc.returncode,
        "counts": counts(summary),
        "summary": summary.strip("= "),
        "failed": [line for line in tail if line.startswith(("FAILED ", "ERROR "))],
        "slowest": slow[:15],
        "worker_seconds": round(sum(by_file.values()), 1),
        "worker_seconds_by_file": {
            k: round(v, 1) for k, v in sorted(by_file.items(), key=lambda kv: -kv[1])
        },
    }


def main() -> int:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--workers", default="auto", help="pytest-xdist workers (default auto)")
    ap.add_argument("--runs", type=int, default=1, help="how many times to run the suite")
    ap.add_argument("pytest_args", nargs="*", help="extra pytest arguments (after --)")
    args = ap.parse_args()
    repo = tracked_copy()
    results = []
    try:
        for i in range(args.runs):
            r = run_once(repo, args.workers, args.pytest_args)
            results.append(r)
            print(f"run {i + 1}: {r['wall_seconds']}s, exit {r['exit_code']}, {r['summary']}")
    finally:
        shutil.rmtree(repo.parent, ignore_errors=True)
    best = min(float(r["wall_seconds"]) for r in results)  # type: ignore[arg-type]
    report = {
        "when": time.strftime("%Y-%m-%dT%H:%M:%SZ", time.gmtime()),
        "cpus": os.cpu_count(),
        "load_avg_1m": os.getloadavg()[0],
        "workers": args.workers,
        "bar_seconds": BAR_SECONDS,
        "best_wall_seconds": best,
        "meets_bar": best < BAR_SECONDS,
        "runs": results,
    }
    out = ROOT / "bench" / "results" / f"suite-{time.strftime('%Y%m%dT%H%M%S')}.json"
    out.parent.mkdir(parents=True, exist_ok=True)
    out.write_text(json.dumps(report, indent=2) + "\n")
    print("slowest:", *results[-1]["slowest"], sep="\n  ")  # type: ignore[misc]
    verdict = "meets" if best < BAR_SECONDS else "MISSES"
    print(
        f"suite: best {best:.0f}s on {os.cpu_count()} CPU(s) (load {report['load_avg_1m']:.1f}): "
        f"{verdict} the {BAR_SECONDS}s bar; saved {out.relative_to(ROOT)}"
    )
    return 0


if __name__ == "__main__":
    sys.exit(main())

"""Start-up and no-op costs (issue #16): `invoke --list`/`--help` against `import invoke`, and
`generate`/`generate --check` when nothing changed (wall time and talosctl processes started).

Runs on a copy of the repository's tracked fleet files, with talosim as TALOSCTL behind a wrapper
that counts processes. Median of --runs runs each; the machine is noisy, so compare within a run.
Writes bench/reports/startup.json.

Usage: python bench/startup.py [--runs 7]
"""

from __future__ import annotations

import argparse
import json
import os
import statistics
import subprocess
import sys
import tempfile
import time
from pathlib import Path

ROOT = Path(__file__).resolve().parents[1]
sys.path.insert(0, str(ROOT))
from tests.conftest import copy_repo  # noqa: E402

REPORTS = ROOT / "bench" / "reports"


def timed(argv: list[str], cwd: Path, env: dict[str, str]) -> float:
    start = time.monotonic()
    r = subprocess.run(argv, cwd=cwd, env=env, capture_output=True, text=True, check=False)
    took = time.monotonic() - start
    if r.returncode not in (0,):
        raise SystemExit(f"{' '.join(argv)} failed ({r.returncode}):\n{r.stderr[-2000:]}")
    return took


def main() -> None:
    ap = argparse.ArgumentParser(description=__doc__.splitlines()[0])
    ap.add_argument("--runs", type=int, default=7, help="INT runs per measurement")
    opts = ap.parse_args()
    tmp = Path(tempfile.mkdtemp(prefix="talosprov-startup-"))
    repo = copy_repo(tmp / "fleet")
    log = tmp / "calls.log"
    wrapper = tmp / "count-talosctl"
    talosim = Path(sys.executable).parent / "talosim"
    wrapper.write_text(f'#!/bin/sh\necho "$*" >> "{log}"\nexec "{talosim}" "$@"\n')
    wrapper.chmod(0o755)
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TALOS", "KUBE"))}
    env.update(
        {
            "HOME": str(tmp),
            "PYTHONPATH": str(ROOT),
            "TALOSCTL": str(wrapper),
            "TALOSIM_STATE": str(tmp / "sim"),
        }
    )
    inv = [sys.executable, "-m", "invoke"]

    def median(argv: list[str], extra: dict[str, str] | None = None) -> float:
        e = {**env, **(extra or {})}
        timed(argv, repo, e)  # warm: the task manifest, the talosctl version cache, page cache
        return round(statistics.median(timed(argv, repo, e) for _ in range(opts.runs)), 3)

    def processes(argv: list[str]) -> int:
        log.unlink(missing_ok=True)
        timed(argv, repo, env)
        return len(log.read_text().splitlines()) if log.exists() else 0

    # round robin, so that a burst of load on the shared machine hits every command alike
    startup = {
        "import_invoke_s": ([sys.executable, "-c", "import invoke"], {}),
        "invoke_list_s": ([*inv, "--list"], {}),
        "invoke_help_generate_s": ([*inv, "--help", "generate"], {}),
        "invoke_list_eager_s": ([*inv, "--list"], {"TALOSPROV_EAGER_TASKS": "1"}),
    }
    samples: dict[str, list[float]] = {k: [] for k in startup}
    for argv, extra in startup.values():
        timed(argv, repo, {**env, **extra})  # warm: the task manifest, the page cache
    for _ in range(opts.runs):
        for k, (argv, extra) in startup.items():
            samples[k].append(timed(argv, repo, {**env, **extra}))
    res: dict[str, object] = {"runs": opts.runs}
    res.update({k: round(statistics.median(v), 3) for k, v in samples.items()})
    res["list_ratio"] = round(res["invoke_list_s"] / res["import_invoke_s"], 2)  # type: ignore[operator]
    res["help_ratio"] = round(res["invoke_help_generate_s"] / res["import_invoke_s"], 2)  # type: ignore[operator]
    # record the inputs once (the copy's records may come from another talosctl/generator)
    timed([*inv, "generate", "--throwaway-bundle"], repo, env)
    gen_v3 = [*inv, "generate", "--cluster", "v3", "--throwaway-bundle"]
    check_all = [*inv, "generate", "--check"]
    res.update(
        {
            "noop_generate_v3_s": median(gen_v3),
            "noop_generate_v3_processes": processes(gen_v3),
            "noop_check_all_s": median(check_all),
            "noop_check_all_processes": processes(check_all),
        }
    )
    full_v3 = [*inv, "generate", "--check", "--full", "--cluster", "v3"]
    res["full_check_v3_processes"] = processes(full_v3)
    res["full_check_v3_s"] = round(timed(full_v3, repo, env), 3)
    full_all = [*inv, "generate", "--check", "--full"]
    res["full_check_all_processes"] = processes(full_all)
    res["full_check_all_s"] = round(timed(full_all, repo, env), 3)
    res["cores"] = os.cpu_count()
    res["load_1min"] = os.getloadavg()[0]
    REPORTS.mkdir(parents=True, exist_ok=True)
    (REPORTS / "startup.json").write_text(json.dumps(res, indent=2) + "\n")
    print(json.dumps(res, indent=2))


if __name__ == "__main__":
    main()

"""`invoke --list`/`--help` from the task manifest (talosprov/tasks/lazy.py): the stand-ins show
and parse exactly what the real tasks do, and running one runs the real task."""

from __future__ import annotations

import copy
import os
import subprocess
import sys
from pathlib import Path
from typing import Any

from invoke import Collection

from talosprov.tasks import lazy
from tests.conftest import ROOT


def _view(c: Collection, prefix: str = "") -> dict[str, Any]:
    out: dict[str, Any] = {}
    for name, task in c.tasks.items():
        t = copy.copy(task)
        t.help = dict(task.help)  # get_arguments consumes it
        args = [
            (
                a.names,
                a.kind,
                a.default,
                a.help,
                a.positional,
                a.optional,
                a.incrementable,
                a.attr_name,
            )
            for a in t.get_arguments()
        ]
        pre = [p if isinstance(p, str) else p.name for p in t.pre]
        out[prefix + name] = (t.__doc__, tuple(t.aliases), t.is_default, args, pre)
    for name, sub in c.collections.items():
        out.update(_view(sub, f"{prefix}{name}."))
    return out


def test_stand_ins_match_the_real_tasks() -> None:
    real = lazy.real_collection()
    stand_ins = lazy._build(lazy._describe(real))
    assert all(isinstance(t, lazy.StandIn) for t in stand_ins.tasks.values())
    assert _view(stand_ins) == _view(real)
    assert "node.add" in _view(stand_ins)


def _env(cwd: Path) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith("TALOS")}
    env.update({"PYTHONPATH": str(ROOT), "COLUMNS": "120", "HOME": str(cwd)})
    return env


def _invoke(cwd: Path, *args: str, eager: bool) -> subprocess.CompletedProcess[str]:
    env = _env(cwd)
    if eager:
        env["TALOSPROV_EAGER_TASKS"] = "1"
    return subprocess.run(
        [sys.executable, "-m", "invoke", *args],
        cwd=cwd,
        env=env,
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )


def test_list_help_and_a_run_are_the_same_through_the_manifest(fleet_repo: Path) -> None:
    _invoke(fleet_repo, "--list", eager=False)  # writes the manifest when it is missing
    for args in (["--list"], ["--help", "generate"], ["--help", "node.add"]):
        eager, lazy_ = (_invoke(fleet_repo, *args, eager=e) for e in (True, False))
        assert eager.returncode == 0, eager.stderr
        assert (lazy_.returncode, lazy_.stdout) == (0, eager.stdout)
    # a stand-in runs the real task: its checks, its errors, its exit codes
    r = _invoke(fleet_repo, "schema", "--check", eager=False)
    assert r.returncode == 0, r.stderr
    r = _invoke(fleet_repo, "render", "--check", "-c", "nope", eager=False)
    assert r.returncode == 1
    assert "unknown cluster 'nope'" in r.stderr


def _specs(desc: dict[str, Any], prefix: str = "") -> dict[str, dict[str, Any]]:
    out = {prefix + name: spec for name, spec in desc["tasks"].items()}
    for name, sub in desc["collections"].items():
        out.update(_specs(sub, f"{prefix}{name}."))
    return out


def test_a_stand_in_runs_the_real_task_found_in_its_own_module() -> None:
    real = lazy.real_collection()
    specs = _specs(lazy._describe(real))
    assert "node.add" in specs
    for path, spec in specs.items():
        assert lazy.real_task(path, spec).body is real[path].body, path


def test_running_one_task_imports_only_the_task_module_it_lives_in() -> None:
    probe = (
        "import sys; from talosprov.tasks import lazy; "
        "lazy.real_task('status', {'name': 'status', 'module': 'talosprov.tasks.cluster'}); "
        "print(' '.join(sorted(m for m in sys.modules if m.startswith('talosprov.tasks.'))))"
    )
    out = subprocess.run(
        [sys.executable, "-c", probe],
        cwd=ROOT,
        env={**os.environ, "PYTHONPATH": str(ROOT)},
        capture_output=True,
        text=True,
        check=True,
    ).stdout.split()
    assert "talosprov.tasks.cluster" in out
    assert not {"talosprov.tasks.upgrades", "talosprov.tasks.day2", "talosprov.tasks.plan"} & set(
        out
    )


# Runs invoke as `python -m invoke` does and prints, last, every module the process imported.
_MODULES_PROBE = """
import atexit, runpy, sys
atexit.register(lambda: print("MODULES", *sorted(sys.modules), file=sys.__stderr__))
sys.argv = ["invoke", *sys.argv[1:]]
runpy.run_module("invoke", run_name="__main__")
"""


def _imported(cwd: Path, *args: str) -> tuple[int, str, set[str]]:
    r = subprocess.run(
        [sys.executable, "-c", _MODULES_PROBE, *args],
        cwd=cwd,
        env=_env(cwd),
        capture_output=True,
        text=True,
        timeout=120,
        check=False,
    )
    last = r.stderr.strip().splitlines()[-1].split()
    assert last[0] == "MODULES", r.stderr
    return r.returncode, r.stderr, set(last[1:])


def _packages(modules: set[str], names: set[str]) -> set[str]:
    """The modules that are one of `names` or inside one."""
    return {m for m in modules if any(m == n or m.startswith(f"{n}.") for n in names)}


def test_list_imports_nothing_of_the_package_but_the_stand_ins(fleet_repo: Path) -> None:
    _imported(fleet_repo, "--list")  # writes the manifest when it is missing
    code, _err, modules = _imported(fleet_repo, "--list")
    assert code == 0
    assert {m for m in modules if m.startswith("talosprov")} <= {
        "talosprov",
        "talosprov.signals",
        "talosprov.tasks",
        "talosprov.tasks.lazy",
    }
    assert not _packages(modules, {"pydantic", "ruamel", "rich", "jinja2", "sh", "filelock"})


def test_tasks_that_render_nothing_import_no_jinja_lock_or_live_table(fleet_repo: Path) -> None:
    # Each run loads the real task, its module and the cluster, then stops at the fleet check
    # (no emulated nodes here): a module-level import of what the task does not use shows.
    heavy = {"jinja2", "markupsafe", "filelock", "cryptography", "rich.live", "rich.table"}
    for args in (["status"], ["diff"], ["health"], ["upgrade", "--dry-run"]):
        code, err, modules = _imported(fleet_repo, *args, "--cluster", "demo")
        # the expected stop, not a crash (a misplaced lazy import fails with a traceback)
        assert code == 1, args
        assert "error: talosim has no emulated nodes of talos-demo" in err, err
        assert "Traceback" not in err, err
        assert "talosprov.model" in modules, args  # the task ran up to the cluster's nodes
        assert not _packages(modules, heavy), args

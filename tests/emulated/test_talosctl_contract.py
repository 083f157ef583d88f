"""Contract cases for talosim: argv in, stdout/stderr/exit code/files out (tests/cases/talosim)."""

from __future__ import annotations

import os
from collections.abc import Iterator
from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.sim import Sim

CASES = sorted((ROOT / "tests" / "cases" / "talosim").glob("*/*.yaml"))

# Every case runs talosim in this process (Sim.inproc: milliseconds a call, where a fresh
# interpreter took ~0.1-0.3 s). These also run through the real command line (talosim/bin/talosctl:
# the launcher, its zygote, a fresh interpreter's exit), one of each kind of outcome, so that the
# way in stays covered; tests/emulated/test_talosim_versions.py adds a version-specific output and
# TALOSIM_VERSION's refusal.
THROUGH_LAUNCHER = {
    "gen/secrets-bundle",  # exit 0, nothing on stdout or stderr, a file written with mode 0600
    "gen/secrets-exists",  # exit 1 with the exact error text on stderr
    "cli/unknown-flag",  # a parse error followed by the usage block
}


def _id(case: Path) -> str:
    return f"{case.parent.name}/{case.stem}"


PARAMS = [pytest.param(c, "inproc", id=_id(c)) for c in CASES] + [
    pytest.param(c, "launcher", id=f"{_id(c)}@launcher")
    for c in CASES
    if _id(c) in THROUGH_LAUNCHER
]


@pytest.fixture
def umask_022() -> Iterator[None]:
    """talosctl's file modes go through the umask (os.WriteFile); the cases state them under
    the usual 022, which a call run here or a child process started here both follow."""
    old = os.umask(0o022)
    yield
    os.umask(old)


def _fill(arg: str, sim: Sim) -> str:
    return arg.replace("{talosconfig}", str(sim.cwd / "out" / "talosconfig"))


def test_the_cases_run_through_the_launcher_exist() -> None:
    assert THROUGH_LAUNCHER - {_id(c) for c in CASES} == set()


@pytest.mark.usefixtures("umask_022")
@pytest.mark.parametrize(("case", "via"), PARAMS)
def test_talosctl_contract(case: Path, via: str, request: pytest.FixtureRequest) -> None:
    spec: dict[str, Any] = yaml.safe_load(case.read_text())
    sim: Sim = request.getfixturevalue(spec.get("fixture", "sim"))
    call = sim.run if via == "launcher" else sim.inproc
    for step in spec.get("setup", []):
        r = call(*[_fill(a, sim) for a in step])
        assert r.returncode == 0, f"{step} failed:\n{r.stdout}\n{r.stderr}"
    r = call(*[_fill(str(a), sim) for a in spec["args"]])
    assert r.returncode == spec.get("rc", 0), f"stdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    if "stdout" in spec:
        assert r.stdout == spec["stdout"]
    if "stderr" in spec:
        assert r.stderr == spec["stderr"]
    for text in spec.get("stdout_contains", []):
        assert text in r.stdout, f"{text!r} not in stdout:\n{r.stdout}"
    for text in spec.get("stdout_lacks", []):
        assert text not in r.stdout, f"{text!r} in stdout:\n{r.stdout}"
    for text in spec.get("stderr_contains", []):
        assert text in r.stderr, f"{text!r} not in stderr:\n{r.stderr}"
    for text in spec.get("stderr_lacks", []):
        assert text not in r.stderr
    for rel, want in (spec.get("files") or {}).items():
        p = sim.cwd / rel
        if want.get("absent"):
            assert not p.exists(), rel
            continue
        assert p.exists(), rel
        if "mode" in want:
            assert oct(p.stat().st_mode & 0o777) == oct(int(str(want["mode"]), 8)), rel
        for text in want.get("contains", []):
            assert text in p.read_text(), f"{text!r} not in {rel}"

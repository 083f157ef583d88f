"""Contract cases for talosim: argv in, stdout/stderr/exit code/files out (tests/cases/talosim)."""

from __future__ import annotations

from pathlib import Path
from typing import Any

import pytest
import yaml

from tests.conftest import ROOT
from tests.sim import Sim

CASES = sorted((ROOT / "tests" / "cases" / "talosim").glob("*/*.yaml"))


def _fill(arg: str, sim: Sim) -> str:
    return arg.replace("{talosconfig}", str(sim.cwd / "out" / "talosconfig"))


@pytest.mark.parametrize("case", CASES, ids=[f"{c.parent.name}/{c.stem}" for c in CASES])
def test_talosctl_contract(case: Path, request: pytest.FixtureRequest) -> None:
    spec: dict[str, Any] = yaml.safe_load(case.read_text())
    sim: Sim = request.getfixturevalue(spec.get("fixture", "sim"))
    for step in spec.get("setup", []):
        sim.ok(*[_fill(a, sim) for a in step])
    r = sim.run(*[_fill(str(a), sim) for a in spec["args"]])
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

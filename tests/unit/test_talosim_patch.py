"""Talos strategic-merge and RFC 6902 semantics of talosim, as data cases (tests/cases/patch)."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from talosim.machine import machineconfig as mc
from talosim.machine import patch
from tests.conftest import ROOT

CASES = sorted((ROOT / "tests" / "cases" / "patch").glob("*.yaml"))


def _apply(spec: dict, contract: tuple[int, int]) -> list:
    loaded = [patch.load_patch(p, contract) for p in spec["patches"]]
    return patch.apply([spec["base"]], loaded, contract)


@pytest.mark.parametrize("case", CASES, ids=[c.stem for c in CASES])
def test_patch_case(case: Path) -> None:
    spec = yaml.safe_load(case.read_text())
    contract = mc.contract_of(spec["contract"], "v1.7.0")
    if "error" in spec:
        with pytest.raises(mc.ConfigError) as err:
            _apply(spec, contract)
        assert str(err.value).startswith(spec["error"])
        return
    loaded = [patch.load_patch(p, contract) for p in spec["patches"]]
    assert patch.apply([spec["base"]], loaded, contract) == [spec["expect"]]

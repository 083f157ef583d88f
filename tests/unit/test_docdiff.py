"""Config diffs as data: tests/cases/docdiff/<case>.yaml holds {old, new, lines}."""

from __future__ import annotations

from pathlib import Path

import pytest
import yaml

from talosprov.docdiff import render
from tests.conftest import ROOT

CASES = sorted((ROOT / "tests" / "cases" / "docdiff").glob("*.yaml"))


@pytest.mark.parametrize("path", CASES, ids=[p.stem for p in CASES])
def test_docdiff_case(path: Path) -> None:
    case = yaml.safe_load(path.read_text())
    assert render(case["old"], case["new"]) == case["lines"]


def test_there_are_cases() -> None:
    assert len(CASES) >= 4

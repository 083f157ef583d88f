"""talosim's layout (issue #10): small modules in four layers; the layers' imports are checked by
import-linter (`invoke lint`, contracts in pyproject.toml)."""

from __future__ import annotations

from tests.conftest import ROOT

MAX_LINES = 500


def _modules() -> dict[str, int]:
    return {
        p.relative_to(ROOT).as_posix(): len(p.read_text().splitlines())
        for p in sorted((ROOT / "talosim").rglob("*.py"))
    }


def test_no_talosim_module_is_over_500_lines() -> None:
    sizes = _modules()
    assert "talosim/cli/dispatch.py" in sizes  # the walk found the layers' modules
    assert {path: n for path, n in sizes.items() if n > MAX_LINES} == {}

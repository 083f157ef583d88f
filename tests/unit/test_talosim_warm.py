"""talosim/machine/warm.py: what a zygote fills before it forks calls."""

from __future__ import annotations

import subprocess
import sys

from tests.conftest import ROOT

PROBE = """
from talosim.machine import machineconfig as mc, order, releases, warm
warm.prewarm()
n = len(releases.minors())
assert mc.schema.cache_info().currsize == n, mc.schema.cache_info()
assert releases.exact_schema.cache_info().currsize == n
assert order.table.cache_info().currsize == len({m for _, m in releases.minors()})
print("ok", n)
"""


def test_prewarm_fills_the_schema_and_order_caches_of_every_release() -> None:
    # a fresh interpreter: the caches of this test process may be filled by other tests
    r = subprocess.run(
        [sys.executable, "-c", PROBE],
        cwd=ROOT,
        capture_output=True,
        text=True,
        check=False,
    )
    assert r.returncode == 0, r.stderr
    assert r.stdout.split() == ["ok", "8"]

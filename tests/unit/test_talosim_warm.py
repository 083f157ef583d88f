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


def _fresh(probe: str) -> str:
    """stdout of probe run in a fresh interpreter: this test process's caches and imports may
    have been filled by other tests."""
    r = subprocess.run(
        [sys.executable, "-c", probe], cwd=ROOT, capture_output=True, text=True, check=False
    )
    assert r.returncode == 0, r.stderr
    return r.stdout


def test_prewarm_fills_the_schema_and_order_caches_of_every_release() -> None:
    assert _fresh(PROBE).split() == ["ok", "8"]


# Every call reads a talosconfig and dials nodes by address: after prewarm, a worker forked from
# the zygote compiles no regular expression and imports no module to do so (re._cache: the
# compiled patterns of this process).
FIRST_CALL_PROBE = """
import re, sys
from talosim.machine import machineconfig as mc, warm
warm.prewarm()
modules, patterns = set(sys.modules), set(re._cache)
config = "context: demo\\ncontexts:\\n  demo:\\n    endpoints: [127.0.10.1]\\n    ca: LS0t\\n"
mc.encode(mc.decode_docs(config))
"127.0.10.1".encode("idna")
print(sorted(set(sys.modules) - modules), sorted(p[1] for p in set(re._cache) - patterns))
"""


def test_after_prewarm_reading_a_talosconfig_and_dialing_compile_and_import_nothing() -> None:
    assert _fresh(FIRST_CALL_PROBE).strip() == "[] []"

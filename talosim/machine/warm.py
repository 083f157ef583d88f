"""Fill talosim's per-process caches once, in the zygote (talosim/zygote.py), so that every call
it forks starts with them: the schemas and order tables of every release, and jsonschema's own
lazily built internals. Measured: the first `validate` in a fresh process took ~70 ms, the next
~1.5 ms."""

from __future__ import annotations

from . import machineconfig as mc
from . import order, releases


def prewarm() -> None:
    for minor in releases.minors():
        mc.schema(minor)
        releases.exact_schema(minor)
        table = order.table(minor[1])
        for struct in table.structs:
            table.fields(struct)
    # the first validation builds jsonschema's format checkers and reference resolver
    newest = releases.minors()[-1]
    mc.validate([{"version": "v1alpha1", "machine": {"type": "worker"}}], "metal", newest)

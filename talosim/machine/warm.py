"""Fill talosim's per-process caches once, in the zygote (talosim/zygote.py), so that every call
it forks starts with them: the schemas and order tables of every release, and jsonschema's own
lazily built internals. Measured: the first `validate` in a fresh process took ~70 ms, the next
~1.5 ms."""

from __future__ import annotations

from . import machineconfig as mc
from . import order, releases

# a scalar of each type ruamel's resolver tells apart by a regular expression (bool, int, float,
# null, timestamp), and a document of each shape
_SCALARS = "a: true\nb: 1\nc: 1.5\nd: null\ne: 2001-12-14\nf: [x, {g: h}]\n"


def prewarm() -> None:
    for minor in releases.minors():
        mc.schema(minor)
        table = order.table(minor[1])
        for struct in table.structs:
            table.fields(struct)
    # the first validation builds jsonschema's format checkers and reference resolver
    newest = releases.minors()[-1]
    mc.validate([{"version": "v1alpha1", "machine": {"type": "worker"}}], "metal", newest)
    # Every call reads a talosconfig or a machine config, and many write one: ruamel's resolver
    # expressions, which yaml12 decodes with too, compile on first use (~3 ms of a call's CPU,
    # measured in a worker)
    mc.encode(mc.decode_docs(_SCALARS))
    # a call that dials a node by name or address has its host IDNA-encoded (socket.getaddrinfo),
    # whose codec imports encodings.idna, stringprep and unicodedata on first use
    "localhost".encode("idna")

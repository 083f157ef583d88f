"""The API layer: what a talosctl call meets on its way to a node. The spec and context of a
command (Ctx, Fail, Flag), the talosconfig file, the mTLS connection, the RPC errors, the
resources `get` reads and the action tracker.

It builds on the machine layer only; the commands and the CLI build on it.
"""

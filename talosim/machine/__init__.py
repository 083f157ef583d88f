"""The machine layer: emulated nodes and their transitions, the fleet's state, clock and faults,
etcd, health checks, machine configs, PKI, release facts and the emulated Kubernetes API server.

It imports no other layer of talosim (api, commands, cli): they build on it.
"""

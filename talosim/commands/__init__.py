"""The commands layer: one module per talosctl command group (and talosim's own fleet, fault and
kubeapi groups). Each exports COMMANDS, the commands it declares; the CLI collects them.

Command modules import the api and machine layers, never each other nor the CLI: what two of
them share lives in a lower layer.
"""

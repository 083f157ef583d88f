"""The registry: every command the command modules declare, by path, and the command groups."""

from __future__ import annotations

from ..api.command import Command
from ..commands import (
    apply,
    bootstrap,
    config,
    etcd,
    fault,
    fleet,
    gen,
    get,
    health,
    kubeapi,
    kubeconfig,
    machineconfig,
    reboot,
    reset,
    upgrade,
    upgrade_k8s,
    validate,
    version,
)

# talosctl's commands, then talosim's own (fleet, fault, kubeapi)
MODULES = (
    gen,
    config,
    validate,
    machineconfig,
    get,
    version,
    apply,
    health,
    kubeconfig,
    upgrade,
    reboot,
    upgrade_k8s,
    bootstrap,
    reset,
    etcd,
    fleet,
    fault,
    kubeapi,
)


def _collect() -> dict[tuple[str, ...], Command]:
    commands: dict[tuple[str, ...], Command] = {}
    for module in MODULES:
        for c in module.COMMANDS:
            if c.path in commands:
                raise RuntimeError(
                    f"talosctl {' '.join(c.path)} declared twice ({module.__name__})"
                )
            commands[c.path] = c
    return commands


COMMANDS = _collect()

# Groups print their subcommands when called bare.
GROUPS = {
    ("gen",),
    ("config",),
    ("etcd",),
    ("machineconfig",),
    ("fleet",),
    ("fault",),
    ("kubeapi",),
}

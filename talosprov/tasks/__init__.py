"""Invoke tasks: parse flags, call the package, turn talosprov errors into invoke.Exit."""

from invoke import Collection

from . import checks, cluster, config, emulator

ns = Collection()
for module in (config, cluster, emulator, checks):
    for t in module.TASKS:
        ns.add_task(t)

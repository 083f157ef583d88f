"""Invoke tasks: parse flags, call the package, turn talosprov errors into invoke.Exit."""

from invoke import Collection

from . import checks, cluster, config, emulator, plan, upgrades

ns = Collection()
for module in (config, cluster, upgrades, emulator, plan, checks):
    for t in module.TASKS:
        ns.add_task(t)

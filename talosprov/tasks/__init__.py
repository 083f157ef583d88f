"""Invoke tasks: parse flags, call the package, turn talosprov errors into invoke.Exit."""

from invoke import Collection

from . import checks, cluster, config, day2, emulator, plan, upgrades

ns = Collection()
for module in (config, cluster, upgrades, day2, emulator, plan, checks):
    for t in module.TASKS:
        ns.add_task(t)
ns.add_collection(day2.node)  # invoke node.add / node.remove

"""Invoke tasks: parse flags, call the package, turn talosprov errors into invoke.Exit."""

from invoke import Collection

from . import checks, config

ns = Collection()
for module in (config, checks):
    for t in module.TASKS:
        ns.add_task(t)

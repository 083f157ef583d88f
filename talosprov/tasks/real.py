"""The real task collection: every task module imported (tasks/lazy.py stands in for it when
invoke only lists tasks or shows help)."""

from invoke import Collection

from . import checks, cluster, config, day2, emulator, plan, upgrades
from .common import with_flag_policy

ns = Collection()
for module in (config, cluster, upgrades, day2, emulator, plan, checks):
    for t in module.TASKS:
        ns.add_task(with_flag_policy(t))  # one meaning per short flag across all tasks
ns.add_collection(day2.node)  # invoke node.add / node.remove

"""Invoke entry point: `invoke --list` shows every task of talosprov."""

from talosprov.tasks import ns
from talosprov.workflows.runtime import handle_signals

handle_signals()  # SIGTERM like Ctrl-C, and a message for either before a task has started
ns.configure({"run": {"echo": False}})

"""Invoke entry point: `invoke --list` shows every task of talosprov."""

from talosprov.signals import handle_signals
from talosprov.tasks import ns

handle_signals()  # SIGTERM like Ctrl-C, and a message for either before a task has started
ns.configure({"run": {"echo": False}})

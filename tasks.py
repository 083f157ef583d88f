"""Invoke entry point: `invoke --list` shows every task of talosprov."""

from talosprov.tasks import ns

ns.configure({"run": {"echo": False}})

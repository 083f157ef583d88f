"""Invoke tasks: parse flags, call the package, turn talosprov errors into invoke.Exit.

`ns` stands in for the real collection (tasks/real.py) until a task runs: see tasks/lazy.py.
"""

from .lazy import collection

ns = collection()

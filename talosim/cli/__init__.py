"""The CLI layer: talosctl's command line over the commands the command modules declare.

`main(argv)` runs one call and returns its exit code; `entry()` is the console script. The top
layer: it imports the commands, the api and the machine layers, and nothing imports it.
"""

from .dispatch import entry, main
from .registry import COMMANDS

__all__ = ["COMMANDS", "entry", "main"]

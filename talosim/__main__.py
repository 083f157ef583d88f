"""`python -m talosim <talosctl args>` behaves as `talosctl <args>`."""

import sys

from .cli import main

sys.exit(main(sys.argv[1:]))

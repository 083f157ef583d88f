"""`python -m talosim <talosctl args>` behaves as `talosctl <args>`."""

import sys

from .launcher import launch

sys.exit(launch(sys.argv[1:]))

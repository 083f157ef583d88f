"""`python -m talosim <talosctl args>` behaves as `talosctl <args>`."""

import sys

from .zygote import launch

sys.exit(launch(sys.argv[1:]))

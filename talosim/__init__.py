"""talosim: a file-backed emulator of talosctl, Talos nodes and their Kubernetes API.

It stands for an outside system, so it never imports talosprov. Kept light: every call imports
it before its launcher (talosim.launcher) decides where the call runs.
"""

import os

# The talosctl release talosim plays (its client version, gen config and upgrade defaults).
# An operator upgrading to a newer Talos installs a newer talosctl; TALOSIM_VERSION does that.
TALOSCTL_VERSION = os.environ.get("TALOSIM_VERSION", "v1.7.0")


def check_version() -> None:
    """Refuse a TALOSIM_VERSION that talosim does not play (before any command runs)."""
    from .machine import releases

    if not releases.is_played(TALOSCTL_VERSION):
        raise SystemExit(
            f"TALOSIM_VERSION={TALOSCTL_VERSION}: talosim plays talosctl {releases.played_range()}"
        )

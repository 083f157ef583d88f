"""talosim: a file-backed emulator of talosctl, Talos nodes and their Kubernetes API.

It stands for an outside system, so it never imports talosprov. Kept light: every call imports
it before its launcher (talosim.launcher) decides where the call runs.
"""

import os

# The talosctl release talosim plays when TALOSIM_VERSION is not set.
DEFAULT_VERSION = "v1.7.0"


def played() -> str:
    """The talosctl release this call plays (its client version, flags, gen config and upgrade
    defaults). An operator upgrading to a newer Talos installs a newer talosctl; TALOSIM_VERSION
    does that. Read per call, never kept at import: one process may run calls as different
    releases (a test running cli.main in-process; a zygote's worker takes its caller's
    environment after the fork)."""
    return os.environ.get("TALOSIM_VERSION", DEFAULT_VERSION)


def check_version() -> None:
    """Refuse a TALOSIM_VERSION that talosim does not play (before any command runs)."""
    from .machine import releases

    version = played()
    if not releases.is_played(version):
        raise SystemExit(
            f"TALOSIM_VERSION={version}: talosim plays talosctl {releases.played_range()}"
        )

"""What the package root (talosim/__init__.py) reads to check TALOSIM_VERSION; the release facts
live in the machine layer, talosim.machine.releases."""

from .machine.releases import is_played, played_range

__all__ = ["is_played", "played_range"]

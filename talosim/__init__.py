"""talosim: a file-backed emulator of talosctl, Talos nodes and their Kubernetes API.

It stands for an outside system, so it never imports talosprov.
"""

TALOSCTL_VERSION = "v1.7.0"

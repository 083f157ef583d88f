"""talosprov: provision and upgrade Talos Linux clusters from a git repository."""

__version__ = "0.1.0"

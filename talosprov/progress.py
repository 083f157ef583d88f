"""Phase markers for long workflows; the task layer decides how they look."""

from __future__ import annotations

import logging

log = logging.getLogger("talosprov")


def phase(title: str) -> None:
    """Start a named phase (shown as `--> Title` by the task layer)."""
    log.info(title, extra={"phase": True})

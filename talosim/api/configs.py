"""Machine config files as the talosctl client handles them before anything is sent: the config
contract of a set of documents, and patches read with talosctl's error text."""

from __future__ import annotations

from typing import Any

from .. import played
from ..machine import machineconfig as mc
from ..machine import patch as mpatch
from .command import Fail


def load_patches(specs: list[str], contract: tuple[int, int]) -> list[mpatch.Patch]:
    try:
        return [mpatch.load_patch(s, contract) for s in specs]
    except mc.ConfigError as e:
        raise Fail(f"error parsing config JSON patch: {e}") from None


def contract_of_docs(docs: list[Any]) -> tuple[int, int]:
    """Pick the schema by the installer tag in the config, else this client's version."""
    for d in docs:
        if isinstance(d, dict) and mc.is_v1alpha1(d):
            image = ((d.get("machine") or {}).get("install") or {}).get("image") or ""
            tag = image.rsplit(":", 1)[-1] if ":" in image else ""
            try:
                return mc.contract_of(tag, played())
            except mc.ConfigError:
                break
    return mc.contract_of("", played())

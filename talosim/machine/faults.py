"""Faults a test injects into the fleet: errors, hangs, unreachable or stuck nodes, etcd down,
rollbacks; kept in the state folder's faults.json and consumed as they fire."""

from __future__ import annotations

from typing import Any

from .state import State

KINDS = ("error", "hang", "unreachable", "stuck", "etcd-down", "rollback")


def stuck_stage(state: State, ip: str) -> str | None:
    for f in state.faults():
        if f["node"] == ip and f["kind"] == "stuck":
            return str(f["stage"])
    return None


def take_fault(
    state: State, ip: str, command: str, kinds: tuple[str, ...]
) -> dict[str, Any] | None:
    """The first active fault of the given kinds for (node, command); consumes one use."""
    faults = state.faults()
    for f in faults:
        if f["kind"] not in kinds or f["node"] not in (ip, "*"):
            continue
        if f.get("command") not in (None, "*", command):
            continue
        if f.get("times", -1) == 0:
            continue
        if f.get("times", -1) > 0:
            f["times"] -= 1
            state.save_faults(faults)
        return f
    return None

"""SIGINT/SIGTERM handling, in a module of its own so that tasks.py can install it without
loading the workflows (`invoke --list` stays as fast as invoke itself; issue #16)."""

from __future__ import annotations

import os
import signal
from types import FrameType
from typing import Any


class Interrupted(KeyboardInterrupt):
    """SIGINT or SIGTERM during a task: unwinds like Ctrl-C so every `finally` runs."""

    def __init__(self, signum: int) -> None:
        super().__init__(signal.Signals(signum).name)
        self.signum = signum
        self.exit_code = 128 + signum


# depth: tasks running (workflows.runtime.task_run counts them); received: the signal caught
_signals: dict[str, Any] = {"depth": 0, "received": None}


def handle_signals() -> None:
    """SIGTERM is handled like SIGINT (a service manager or `timeout` sends it): inside a task
    both raise Interrupted, so private folders are removed; outside one (while invoke starts up
    or after the task) they end the process at once with a message, as nothing is in progress."""
    for sig in (signal.SIGINT, signal.SIGTERM):
        signal.signal(sig, _on_signal)


def _on_signal(signum: int, frame: FrameType | None) -> None:
    name = signal.Signals(signum).name
    if _signals["received"] is not None:
        # already unwinding: a second signal must not cut the cleanup short
        os.write(2, f"{name} again: still cleaning up, please wait\n".encode())
        return
    if not _signals["depth"]:
        os.write(
            2, f"interrupted ({name}) while no task was running: nothing was changed\n".encode()
        )
        os._exit(128 + signum)
    _signals["received"] = signum
    raise Interrupted(signum)

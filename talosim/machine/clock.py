"""The emulated clock that every stage timeline of the fleet reads."""

from __future__ import annotations

import signal
import time
from pathlib import Path
from typing import Any

from .state import read_json, state_dir


# Stage timelines read this clock, never time.time() directly, so that tests can freeze it and
# advance it (`talosim fleet clock --freeze`, `--advance 30s`) instead of sleeping. It is kept in
# fleet.json as {"offset": seconds added to real time, "frozen_at": time or null}; by default
# (no fleet, or never changed) it is real time, which the demo and the benchmarks use.
def clock_settings(root: Path | None = None) -> dict[str, Any]:
    """The stored clock of the fleet in `root` (default: TALOSIM_STATE).

    Read on every call (a small file): another process may advance it at any moment."""
    data = read_json((root or state_dir()) / "fleet.json") or {}
    return {"offset": 0.0, "frozen_at": None, **(data.get("clock") or {})}


def clock_at(clock: dict[str, Any], real: float | None = None) -> float:
    if clock.get("frozen_at") is not None:
        return float(clock["frozen_at"])
    return (time.time() if real is None else real) + float(clock.get("offset") or 0.0)


def now(root: Path | None = None) -> float:
    """The emulated time (seconds since the epoch)."""
    return clock_at(clock_settings(root))


# Clock times are float seconds since the epoch (~1.8e9, where a double resolves ~2.4e-7 s), so
# `--advance 0.1s` twice need not land on the very double of a moment set 0.2 s ahead (double
# rounding: at 1791343642.441124 it falls one ulp short): within a microsecond counts as reached.
RESOLUTION = 1e-6


def reached(t: float, at: float) -> bool:
    """Whether clock time t has reached the moment at."""
    return t >= at - RESOLUTION


def wait_until(t: float, root: Path | None = None, poll: float = 0.05) -> None:
    """Sleep until the emulated clock reaches t (forever while it is frozen before t)."""
    while not reached(now(root), t):
        sleep(poll)


# Ctrl-C must end a waiting call as it ends a real talosctl. Python raises KeyboardInterrupt at
# the next bytecode, and when that is inside a weakref callback or __del__ it prints "Exception
# ignored in: ..." and carries on: the call then waited forever on a frozen clock (seen in the
# zygote's signal test under load). The entry points install this handler; every wait sleeps
# through `sleep`, which re-raises an interrupt that was swallowed.
_interrupted: list[int] = []
# set by `install_interrupts`: this process is a talosctl call (launcher or zygote worker), not
# talosim run in-process by a test, whose own SIGINT handler `catch_interrupts` must leave alone
_entry: list[bool] = []


def on_interrupt(signum: int, _frame: Any) -> None:
    _interrupted.append(signum)
    raise KeyboardInterrupt


def install_interrupts() -> None:
    """At a call's entry point: Ctrl-C ends it, unless it was started with SIGINT ignored (as
    Python and Go leave it); then only a node session catches it (`catch_interrupts`)."""
    _entry.append(True)
    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, on_interrupt)


def catch_interrupts() -> None:
    """What talosctl's node session does to SIGINT, even one the process was started with ignored.

    Every talosctl command that talks to nodes runs inside cli.WithContext, which calls
    signal.Notify(sigCh, os.Interrupt, syscall.SIGTERM) (talos v1.7.0 pkg/cli/context.go, via
    cmd/talosctl/pkg/talos/global/client.go WithClient*), and Go installs a handler for a SIGINT
    inherited as ignored once Notify asks for it (go os/signal/doc.go). So `cmd &` in a script,
    which starts cmd with SIGINT ignored, still stops on SIGINT while it waits on a node."""
    if _entry and signal.getsignal(signal.SIGINT) is signal.SIG_IGN:
        signal.signal(signal.SIGINT, on_interrupt)


def sleep(seconds: float) -> None:
    """time.sleep that an interrupt swallowed elsewhere cannot outlive."""
    if _interrupted:
        raise KeyboardInterrupt
    time.sleep(seconds)
    if _interrupted:
        raise KeyboardInterrupt

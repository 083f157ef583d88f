"""talosim/machine/clock.py: when the emulated clock has reached a moment."""

from __future__ import annotations

from talosim.machine.clock import reached

F = 1791343642.441124  # a frozen clock where two 0.1 s advances fall one ulp short of 0.2 s


def test_advancing_in_steps_reaches_a_moment_set_in_one() -> None:
    assert (F + 0.1) + 0.1 < F + 0.2, "the premise of this test: double rounding at F"
    assert reached((F + 0.1) + 0.1, F + 0.2)


def test_a_moment_not_yet_reached_stays_ahead() -> None:
    assert not reached(F + 0.1, F + 0.2)
    assert not reached(F + 0.2 - 1e-4, F + 0.2)
    assert reached(F + 0.2, F + 0.2)
    assert reached(F + 1.0, F + 0.2)

"""The poll schedule, waiting for nodes, and read-only calls run together (workflows/runtime.py)."""

from __future__ import annotations

import logging
import threading
from collections.abc import Sequence
from typing import Any

import pytest

from talosprov.errors import CommandFailed, WorkflowError
from talosprov.tools.run import Program, Result
from talosprov.workflows import runtime
from talosprov.workflows.runtime import Poll, run_together, wait_for


class FakeClock:
    """Time that moves only when a poll sleeps or a check says it took a while."""

    def __init__(self) -> None:
        self.now = 0.0
        self.sleeps: list[float] = []

    def monotonic(self) -> float:
        return self.now

    def sleep(self, seconds: float, /) -> None:
        assert seconds > 0
        self.sleeps.append(seconds)
        self.now += seconds


def _looks(poll: Poll, clock: FakeClock, cost: float) -> list[float]:
    """When each check starts, checking (for `cost` seconds) until the poll gives up."""
    starts = []
    while True:
        starts.append(clock.now)
        clock.now += cost
        if not poll.wait():
            return starts


@pytest.mark.parametrize(
    ("timeout", "kw", "cost", "sleeps", "looks"),
    [
        # doubling from 0.1 s to the 1 s cap; the last sleep is cut to end at the deadline
        (
            10,
            {},
            0,
            [0.1, 0.2, 0.4, 0.8, 1, 1, 1, 1, 1, 1, 1, 1, 0.5],
            [0, 0.1, 0.3, 0.7, 1.5, 2.5, 3.5, 4.5, 5.5, 6.5, 7.5, 8.5, 9.5, 10],
        ),
        # a deadline before the cap: the fourth look is at it
        (1, {}, 0, [0.1, 0.2, 0.4, 0.3], [0, 0.1, 0.3, 0.7, 1]),
        # wait_for's old fixed 0.5 s is its cap
        (3, {"cap": 0.5}, 0, [0.1, 0.2, 0.4, 0.5, 0.5, 0.5, 0.5, 0.3], None),
        # an old interval larger than 1 s stays the cap
        (10, {"cap": 3}, 0, [0.1, 0.2, 0.4, 0.8, 1.6, 3, 3, 0.9], None),
        # a first interval above the cap is the cap
        (2.5, {"first": 2, "cap": 1}, 0, [1, 1, 0.5], [0, 1, 2, 2.5]),
        # checks that take time: no sleep past the deadline, no look after a check that ended
        # past it
        (1, {}, 0.25, [0.1, 0.2], [0, 0.35, 0.8]),
        (0.5, {}, 0.1, [0.1, 0.2], [0, 0.2, 0.5]),
        # no time at all: one look, no sleep
        (0, {}, 0, [], [0]),
    ],
)
def test_poll_looks_soon_then_less_often_and_last_at_the_deadline(
    timeout: float,
    kw: dict[str, float],
    cost: float,
    sleeps: list[float],
    looks: list[float] | None,
) -> None:
    clock = FakeClock()
    starts = _looks(Poll(timeout, clock=clock, **kw), clock, cost)
    assert clock.sleeps == pytest.approx(sleeps)
    if looks is not None:
        assert starts == pytest.approx(looks)
    assert starts[-1] <= timeout + 1e-9  # never a look after the deadline


def test_poll_stays_expired_once_it_gave_up() -> None:
    clock = FakeClock()
    poll = Poll(0.2, clock=clock)
    assert [poll.wait(), poll.wait(), poll.wait(), poll.wait()] == [True, True, False, False]
    assert clock.now == pytest.approx(0.2)


def test_poll_takes_a_look_at_the_deadline_only_once_when_waking_a_hair_early() -> None:
    class EarlyClock(FakeClock):
        def sleep(self, seconds: float, /) -> None:
            super().sleep(seconds)
            self.now -= 1e-6

    clock = EarlyClock()
    starts = _looks(Poll(0.25, clock=clock), clock, 0)
    assert starts == pytest.approx([0, 0.1, 0.25], abs=1e-5)


class Collect:
    def __init__(self) -> None:
        self.seen: list[tuple[str, str]] = []

    def node(self, ip: str, status: str) -> None:
        self.seen.append((ip, status))


@pytest.mark.parametrize(
    ("ready_at", "timeout", "sleeps", "pending"),
    [
        # b is ready at 0.6 s: seen at 0.7 s (0.1 + 0.2 + 0.4), not at the old 1.0 s
        ({"a": 0.25, "b": 0.6}, 10, [0.1, 0.2, 0.4], None),
        ({"a": 0.0, "b": 0.0}, 10, [], None),
        # b never comes: the last look is at the deadline, then the error names it
        ({"a": 0.0, "b": 99.0}, 2, [0.1, 0.2, 0.4, 0.5, 0.5, 0.3], "b"),
    ],
)
def test_wait_for_polls_every_pending_node_on_the_schedule(
    ready_at: dict[str, float], timeout: float, sleeps: list[float], pending: str | None
) -> None:
    clock = FakeClock()
    rep = Collect()

    def check(ip: str) -> tuple[bool, str]:
        up = clock.now >= ready_at[ip]
        return up, "running" if up else "booting"

    def wait() -> None:
        wait_for(list(ready_at), check, timeout=timeout, reporter=rep, what="nodes", clock=clock)

    if pending is None:
        wait()
    else:
        with pytest.raises(
            WorkflowError, match=r"timed out after 2s waiting for nodes: b: booting"
        ):
            wait()
    assert clock.sleeps == pytest.approx(sleeps)
    assert all(ip in ready_at for ip, _ in rep.seen)


def test_calls_run_together_answer_in_order_and_failures_name_their_node(
    monkeypatch: pytest.MonkeyPatch, caplog: pytest.LogCaptureFixture
) -> None:
    nodes = ["10.0.0.1", "10.0.0.2", "10.0.0.3"]
    # every call waits for all the others to have started: run one after another, they would
    # break the barrier (its timeout only ends a broken test, it never paces a passing one)
    barrier = threading.Barrier(len(nodes), timeout=30)

    def fake_run(prog: Program, args: Sequence[str], *, node: str, echo: bool, **_: Any) -> Result:
        assert not echo  # run_together has logged the command already
        barrier.wait()
        if node == "10.0.0.2":
            raise CommandFailed(
                [prog.name, *args], 1, "", "rpc error: etcd is not running", node=node
            )
        return Result([prog.name, *args], 0, f"status of {node}", "")

    monkeypatch.setattr(runtime, "run", fake_run)
    prog = Program("talosctl", ("talosctl",), "test")
    with caplog.at_level(logging.DEBUG, logger=runtime.__name__):
        got = run_together(prog, [(["etcd", "status", "-n", ip], ip) for ip in nodes], timeout=30)
    assert [getattr(r, "stdout", None) for r in got] == [
        "status of 10.0.0.1",
        None,
        "status of 10.0.0.3",
    ]
    assert isinstance(got[1], CommandFailed)
    assert "on node 10.0.0.2" in str(got[1])
    assert "etcd is not running" in got[1].output
    assert [r.getMessage() for r in caplog.records] == [
        f"$ talosctl etcd status -n {ip}" for ip in nodes
    ]

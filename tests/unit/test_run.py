"""talosprov.tools.run: exit codes, captured output, timeouts and missing programs."""

from __future__ import annotations

import pytest

from talosprov.errors import CommandFailed, CommandTimeout, ToolMissing
from talosprov.tools.run import Program, run

SH = Program("sh", ("/bin/sh",), "test")


def test_output_and_exit_code_of_a_successful_call() -> None:
    r = run(SH, ["-c", "echo out; echo err >&2"])
    assert (r.exit_code, r.stdout, r.stderr) == (0, "out\n", "err\n")
    assert r.argv == ["sh", "-c", "echo out; echo err >&2"]


@pytest.mark.parametrize(
    ("code", "ok_codes", "fails"),
    [(0, (0,), False), (3, (0,), True), (2, (0, 2), False), (0, (2,), True)],
)
def test_exit_codes_outside_ok_codes_fail(
    code: int, ok_codes: tuple[int, ...], fails: bool
) -> None:
    args = ["-c", f"echo said; echo why >&2; exit {code}"]
    if not fails:
        assert run(SH, args, ok_codes=ok_codes).exit_code == code
        return
    with pytest.raises(CommandFailed) as e:
        run(SH, args, ok_codes=ok_codes, node="10.0.0.1")
    assert e.value.exit_code == code
    assert e.value.output == "said\nwhy"
    assert e.value.node == "10.0.0.1"


def test_a_call_past_its_timeout_is_killed_and_reported_as_a_timeout() -> None:
    # the shell's child keeps the pipe open after the shell is killed: reading must stop anyway
    with pytest.raises(CommandTimeout) as e:
        run(SH, ["-c", "echo started >&2; sleep 30 & wait"], timeout=0.3)
    assert "timed out after 0.3s" in str(e.value)
    assert "started" in e.value.output


def test_stderr_lines_reach_the_callback_as_they_come() -> None:
    seen: list[str] = []
    run(SH, ["-c", "echo one >&2; echo two >&2"], on_stderr_line=seen.append)
    assert seen == ["one", "two"]


def test_a_missing_program_is_named() -> None:
    with pytest.raises(ToolMissing, match="kubectl not found"):
        run(Program("kubectl", ("/nonexistent/kubectl",), "test"), ["version"])

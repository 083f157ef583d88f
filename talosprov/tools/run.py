"""Run external programs: the only module that imports `sh`.

Argv lists only, never a shell string; acceptable exit codes are named by the caller; failures
become CommandFailed with the tails of stdout and stderr.
"""

from __future__ import annotations

import contextlib
import hashlib
import importlib.util
import logging
import os
import shlex
import shutil
import signal
import sys
import threading
from collections.abc import Callable, Sequence
from dataclasses import dataclass
from pathlib import Path

import sh

from ..errors import CommandFailed, CommandTimeout, ToolMissing

log = logging.getLogger(__name__)

TAIL = 20


@dataclass(frozen=True)
class Result:
    argv: list[str]
    exit_code: int
    stdout: str
    stderr: str


@dataclass(frozen=True)
class Program:
    """An executable to run: its argv prefix (e.g. [python, -m, talosim]) and how it was found."""

    name: str
    prefix: tuple[str, ...]
    source: str
    env: tuple[tuple[str, str], ...] = ()
    emulator_state: Path | None = None  # talosim's state folder, when this is talosim

    def display(self, args: Sequence[str]) -> str:
        return shlex.join([self.name, *args])


INSTALL_HINTS = {
    "talosctl": "install it (https://www.talos.dev/v1.7/talos-guides/install/talosctl/) or set "
    "TALOSCTL=/path/to/talosctl",
    "kubectl": "install it (https://kubernetes.io/docs/tasks/tools/) or set "
    "KUBECTL=/path/to/kubectl",
}


def resolve(name: str, *, emulated: bool = False, emulator_state: Path | None = None) -> Program:
    """TALOSCTL/KUBECTL from the environment, else the emulator (talosctl of an emulated
    cluster), else PATH."""
    env_var = name.upper()
    explicit = os.environ.get(env_var)
    if explicit:
        path = shutil.which(explicit) or (explicit if os.access(explicit, os.X_OK) else None)
        if not path:
            raise ToolMissing(f"{env_var}={explicit} is not an executable file; fix or unset it")
        is_sim = name == "talosctl" and "talosim" in Path(path).resolve().as_posix()
        return Program(
            name,
            (path,),
            f"${env_var}",
            _emu_env(emulator_state),
            _sim_state(emulator_state) if is_sim else None,
        )
    if name == "talosctl" and emulated:
        return Program(
            name,
            _talosim_prefix(),
            "talosim (emulated cluster)",
            _emu_env(emulator_state),
            _sim_state(emulator_state),
        )
    path = shutil.which(name)
    if not path:
        raise ToolMissing(f"{name} not found on PATH: {INSTALL_HINTS.get(name, 'install it')}")
    return Program(name, (path,), "PATH")


def _talosim_prefix() -> tuple[str, ...]:
    """How to run talosim: its native launcher when scripts/setup built one for this interpreter
    and this talosim (talosim/native/launcher.c: a call the fork server serves costs ~1 ms of
    CPU, no interpreter start-up), else its launcher script under `python -S` (a served call
    needs no site-packages: ~12 ms of CPU per call instead of ~26 ms for `python -m talosim`,
    and an upgrade makes hundreds of calls), else `python -m talosim`."""
    spec = importlib.util.find_spec("talosim")
    for folder in (spec.submodule_search_locations or []) if spec else []:
        native = native_launcher(Path(folder))
        if native:
            return (native,)
        launcher = Path(folder) / "bin" / "talosctl"
        if launcher.is_file():
            return (sys.executable, "-S", str(launcher))
    return (sys.executable, "-m", "talosim")


def native_launcher(package: Path) -> str | None:
    """talosim's native launcher in `package` (talosim/native/talosim-launch), when it was built
    for this interpreter, this very package and today's sources: the first two name the fork
    server it talks to (one built for another checkout or venv would serve another talosim),
    and the sources are the protocol it speaks (after a pull that changed launcher.c or
    talosim/launcher.py, the Python launcher serves until scripts/setup builds it again)."""
    native = package / "native" / "talosim-launch"
    try:
        sources = hashlib.sha256(
            (package / "native" / "launcher.c").read_bytes()
            + (package / "launcher.py").read_bytes()
        ).hexdigest()
        baked = f"talosim-launch-baked:{sys.executable}\n{os.path.abspath(package)}\n{sources}\n"
        found = baked.encode() in native.read_bytes()
    except OSError:
        return None
    return str(native) if found and os.access(native, os.X_OK) else None


def _sim_state(default: Path | None) -> Path | None:
    """The folder talosim will use: $TALOSIM_STATE, else the repository's .talosim/."""
    explicit = os.environ.get("TALOSIM_STATE")
    return Path(explicit).resolve() if explicit else default


def _emu_env(state: Path | None) -> tuple[tuple[str, str], ...]:
    if state is None or "TALOSIM_STATE" in os.environ:
        return ()
    return (("TALOSIM_STATE", str(state)),)


def _tail(text: str) -> str:
    # cobra appends its usage block to argument errors; the error line above it is what matters
    text = text.split("\n\nUsage:\n", 1)[0]
    return "\n".join(text.rstrip("\n").splitlines()[-TAIL:])


def run(
    program: Program,
    args: Sequence[str],
    *,
    ok_codes: Sequence[int] = (0,),
    timeout: float | None = None,
    cwd: Path | None = None,
    node: str | None = None,
    on_stderr_line: Callable[[str], None] | None = None,
    echo: bool = True,
) -> Result:
    """Run program with args; raise CommandFailed unless the exit code is in ok_codes. `echo`
    False: the caller has logged the command already (calls run together log in order)."""
    argv = [*program.prefix, *args]
    shown = [program.name, *args]
    if echo:
        log.debug("$ %s", shlex.join(shown))
    env = dict(os.environ)
    env.update(dict(program.env))
    err_lines: list[str] = []

    def err_cb(line: str) -> None:
        err_lines.append(line)
        if on_stderr_line:
            on_stderr_line(line.rstrip("\n"))

    try:
        cmd = sh.Command(argv[0])
        # Started in the background and waited for here, with our own timer for the timeout:
        # sh's `_timeout` makes every call end on a 0.1 s tick of its watcher thread (sh 2.x
        # background_thread), ~50 ms added to each of the hundreds of short talosctl calls of
        # an upgrade.
        proc = cmd(
            *argv[1:],
            _ok_code=list(ok_codes),
            _env=env,
            _cwd=str(cwd) if cwd else None,
            _in=None,
            _err=err_cb,
            _encoding="utf-8",
            _decode_errors="replace",
            _return_cmd=True,
            _tty_out=False,  # a pipe, not a terminal: no pagers, colours or prompts
            _bg=True,
            _bg_exc=False,
        )
    except sh.CommandNotFound:
        raise ToolMissing(
            f"{program.name} not found: {INSTALL_HINTS.get(program.name, '')}"
        ) from None
    expired = threading.Event()
    timer = None
    if timeout is not None:

        def expire() -> None:
            expired.set()
            with contextlib.suppress(OSError):
                proc.signal(signal.SIGKILL)  # what sh's _timeout sent
            # and stop reading at once, as sh's _timeout does, rather than after sh's 2 s grace:
            # a gate's shell may leave a child holding the pipe
            stop = getattr(proc.process, "_stop_output_event", None)
            if stop is not None:
                stop.set()

        timer = threading.Timer(timeout, expire)
        timer.daemon = True
        timer.start()
    try:
        proc.wait()
    except sh.ErrorReturnCode as e:
        if expired.is_set():
            raise CommandTimeout(
                shown,
                -1,
                "",
                _tail("".join(err_lines)),
                node=node,
                hint=f"timed out after {timeout:g}s",
            ) from None
        stdout = e.stdout.decode(errors="replace")
        raise CommandFailed(
            shown, e.exit_code, _tail(stdout), _tail("".join(err_lines)), node=node
        ) from None
    finally:
        if timer is not None:
            timer.cancel()
    stdout = str(proc)
    return Result(shown, proc.exit_code, stdout, "".join(err_lines))


def run_shell_gate(command: str, *, timeout: float, cwd: Path) -> Result:
    """Run an operator-supplied gate command (the one place a shell line is run, by request)."""
    prog = Program("sh", ("/bin/sh",), "gate")
    return run(prog, ["-c", command], timeout=timeout, cwd=cwd)

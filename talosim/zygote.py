"""talosim's launcher and its fork server (the "zygote").

Why: talosprov, the demo and the tests make hundreds of talosctl calls, and each call to talosim
was a new Python interpreter spending ~0.2-0.3 s importing talosim (YAML, cryptography, schemas)
to do a few milliseconds of work. The zygote imports talosim once and forks one child per call.
The child runs the very same `cli.main` with the caller's argv, environment, working directory,
umask and standard streams (received as file descriptors over a Unix socket, SCM_RIGHTS), so its
output, exit code, files and signals are those of a fresh process; nothing of one call lives on
in the zygote, which never runs a command itself.

The launcher (`launch`) is what every entry point runs: it asks a zygote for the caller's
(interpreter, talosim source, TALOSIM_VERSION) to run the call and, when none answers, starts one
in the background and runs the call in-process as before. TALOSIM_ZYGOTE=0 turns it off.

- The socket is in Linux's abstract namespace: no file anywhere, gone with the process. A
  connection from another user id is refused (SO_PEERCRED), since a child acts as this user.
- A zygote exits after IDLE_SECONDS without a call, and as soon as a talosim source or data file
  changed since it started (the caller then runs in-process), so an edit is never served stale.
- Per call, a supervisor (the zygote's child) forks the worker, forwards the signals the caller
  receives (SIGINT, SIGTERM, SIGHUP) and SIGKILLs the worker when the caller dies, so killing the
  caller stops the command as killing a real talosctl would. It then reports the worker's wait
  status, and the caller exits with that code or dies of that signal.

This module is imported on every call before anything else, so its top level imports only what
the interpreter has loaded already; the rest is imported where it is needed.
"""

from __future__ import annotations

import os
import sys

# `typing` costs ~9 ms of every call's start-up; mypy reads this block, the interpreter skips it
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

IDLE_SECONDS = 120.0
REQUIRE_WAIT_SECONDS = 30.0
_ENV = "TALOSIM_ZYGOTE"
_FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP")
_PKG = os.path.dirname(os.path.abspath(__file__))


def _identity(env: Any = os.environ) -> str:
    """What a zygote's imported code depends on: a zygote serves only callers that match it."""
    version = env.get("TALOSIM_VERSION", "")
    return "\0".join((sys.executable, _PKG, version, str(os.getuid())))


def address(env: Any = os.environ) -> bytes:
    """The socket address of the zygote that would serve a caller with this environment."""
    return _address(_identity(env))


def _address(identity: str) -> bytes:
    import zlib

    data = identity.encode("utf-8", "surrogateescape")
    # abstract namespace (leading NUL): no socket file; the full identity is checked on connect
    return b"\0talosim-zygote-%08x-%08x" % (zlib.crc32(data), zlib.adler32(data))


# -- the caller ---------------------------------------------------------------------------------
def launch(argv: list[str]) -> int:
    """Run `talosctl <argv>`: through a zygote when one answers, else in this process.

    TALOSIM_ZYGOTE=0 always runs in-process; TALOSIM_ZYGOTE=require waits for a zygote (starting
    one) and fails rather than run in-process: for the tests of the zygote itself."""
    mode = os.environ.get(_ENV, "")
    if mode != "0" and argv[:2] != ["kubeapi", "serve"]:
        code = _via_zygote(argv, require=mode == "require")
        if code is not None:
            return code
    return run_here(argv)


def run_here(argv: list[str]) -> int:
    """The call in this process (no zygote): what talosim always did."""
    if sys.flags.no_site:
        # the launcher script runs under `python -S` so that a call served by a zygote does not
        # pay for site-packages; running here needs them (YAML, cryptography)
        import site

        site.main()
    from . import check_version

    check_version()
    from .cli import main

    _handle_interrupts()
    return main(argv)


def _handle_interrupts() -> None:
    """Ctrl-C ends a waiting call even when Python swallows one KeyboardInterrupt (see
    talosim.machine.clock.on_interrupt); only where SIGINT is not ignored, as Python itself."""
    import signal

    from .machine import clock

    if signal.getsignal(signal.SIGINT) is signal.default_int_handler:
        signal.signal(signal.SIGINT, clock.on_interrupt)


def _via_zygote(argv: list[str], *, require: bool) -> int | None:
    import socket
    import time

    identity = _identity()
    address = _address(identity)
    deadline: float | None = None
    declined = 0
    while True:
        sock = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
        try:
            sock.connect(address)
        except OSError:
            sock.close()
            if deadline is None:
                _start_zygote(address)
                deadline = time.monotonic() + REQUIRE_WAIT_SECONDS
            if not require:
                return None
            if time.monotonic() > deadline:
                sys.stderr.write("talosim: no zygote answered (TALOSIM_ZYGOTE=require)\n")
                return 125
            time.sleep(0.02)
            continue
        try:
            return _relay(sock, argv, identity)
        except _NotServed:
            declined += 1
            if not require:
                return None
            if declined > 2:
                sys.stderr.write("talosim: the zygote declined (TALOSIM_ZYGOTE=require)\n")
                return 125
            # a stale zygote declines and exits: the next loop starts a fresh one
            deadline = None
        finally:
            sock.close()


class _NotServed(Exception):
    """The zygote declined (stale source, other identity) before anything ran."""


def _relay(sock: Any, argv: list[str], identity: str) -> int:
    import marshal
    import signal
    import socket
    import struct

    request = marshal.dumps(
        {
            "identity": identity,
            "argv": argv,
            "env": dict(os.environ),
            "cwd": os.getcwd(),
            "umask": _umask(),
        }
    )
    # A signal the caller gets goes to the command, as if it were this process. One that comes
    # before the zygote has said whether it serves the call waits for that answer.
    pending: list[int] = []
    served: list[bool] = []

    def on_signal(signum: int, _frame: Any) -> None:
        if not served:
            pending.append(signum)
            return
        try:
            sock.sendall(bytes([signum]))
        except OSError:
            pass

    signums = [getattr(signal, name) for name in _FORWARDED]
    previous = {signum: signal.signal(signum, on_signal) for signum in signums}
    try:
        socket.send_fds(sock, [struct.pack("!I", len(request)) + request], [0, 1, 2])
        answer = _recv_exact(sock, 1)
    except OSError:
        # a zygote exiting (idle, or its source changed) resets the connections still waiting
        # in its backlog: nothing has run, so the call runs elsewhere
        answer = b""
    if answer != b"+":
        for signum, handler in previous.items():
            signal.signal(signum, handler)
        for signum in pending:  # the call runs in this process now: so do its signals
            os.kill(os.getpid(), signum)
        raise _NotServed
    served.append(True)
    for signum in pending:
        on_signal(signum, None)
    status = _recv_exact(sock, 4)
    if len(status) < 4:
        # the supervisor is gone without a status (killed): say so as a dead talosctl would
        sys.stderr.write("talosim: the emulator's worker died without an exit status\n")
        return 1
    (code,) = struct.unpack("!i", status)
    if code < 0:
        sys.stdout.flush()
        signal.signal(-code, signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def _recv_exact(sock: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        try:
            chunk = sock.recv(n - len(data))
        except InterruptedError:
            continue
        if not chunk:
            break
        data += chunk
    return data


def _umask() -> int:
    mask = os.umask(0o022)
    os.umask(mask)
    return mask


def _start_zygote(address: bytes) -> None:
    """Start a zygote in the background for the next calls; this call does not wait for it."""
    import subprocess

    env = {k: v for k, v in os.environ.items() if k != _ENV}
    try:
        subprocess.Popen(
            [sys.executable, "-m", "talosim.zygote", address.hex()],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            start_new_session=True,
            close_fds=True,
            cwd="/",
            env={**env, "PYTHONPATH": os.path.dirname(_PKG)},
        )
    except OSError:
        pass  # no zygote: every call runs in-process, as before


# -- the zygote ---------------------------------------------------------------------------------
def _sources() -> dict[str, float]:
    found: dict[str, float] = {}
    for top, dirs, files in os.walk(_PKG):
        dirs[:] = [d for d in dirs if d != "__pycache__"]
        for f in files:
            path = os.path.join(top, f)
            try:
                found[path] = os.stat(path).st_mtime
            except OSError:
                pass
    return found


def _warm_up() -> None:
    """Import every talosim module and fill its caches now, once, so that no child pays."""
    import importlib
    import pkgutil

    import talosim

    for mod in pkgutil.walk_packages(talosim.__path__, "talosim."):
        if mod.name.rsplit(".", 1)[-1] in ("__main__", "zygote", "goorder"):
            continue
        importlib.import_module(mod.name)
    from talosim.machine import warm

    warm.prewarm()


def serve(address: bytes) -> None:
    import signal
    import socket
    import struct

    identity = _identity()
    if _address(identity) != address:
        return
    try:
        _warm_up()
        broken = False
    except BaseException:  # callers run in-process and see the error there
        broken = True
    sources = _sources()
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        listener.bind(address)
    except OSError:
        return  # another zygote got there first
    listener.listen(64)
    listener.settimeout(IDLE_SECONDS)
    signal.signal(signal.SIGCHLD, signal.SIG_IGN)  # supervisors are reaped by the kernel
    while True:
        try:
            conn, _ = listener.accept()
        except TimeoutError:
            return
        uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        if uid != os.getuid():
            conn.close()
            continue
        # a zygote that could not import talosim keeps its address, declining, so that callers
        # do not start a new one each time
        stale = broken or _sources() != sources
        if os.fork() == 0:
            listener.close()
            signal.signal(signal.SIGCHLD, signal.SIG_DFL)
            code = 1
            try:
                code = _supervise(conn, identity, stale)
            finally:
                os._exit(code)
        conn.close()
        if stale and not broken:
            return


def _supervise(conn: Any, identity: str, stale: bool) -> int:
    import marshal
    import select
    import signal
    import socket
    import struct

    conn.settimeout(30)
    head, fds, _flags, _addr = socket.recv_fds(conn, 4, 3)
    (size,) = struct.unpack("!I", _recv_exact_into(conn, head, 4))
    body = _recv_exact(conn, size)
    request = marshal.loads(body)
    if stale or request["identity"] != identity or len(fds) != 3:
        conn.sendall(b"-")
        return 0
    conn.settimeout(None)
    pid = os.fork()
    if pid == 0:
        conn.close()
        _become_caller(request, fds)
        code = 1
        try:
            from . import check_version, cli

            check_version()
            code = cli.main(list(request["argv"]))
        except SystemExit as e:
            # as the interpreter does at exit: None is 0, a message goes to stderr with 1
            if e.code is None or isinstance(e.code, int):
                code = e.code or 0
            else:
                sys.stderr.write(f"{e.code}\n")
        except KeyboardInterrupt:
            code = 130
        except BaseException:  # printed as an uncaught exception would be
            import traceback

            traceback.print_exc()
        finally:
            for stream in (sys.stdout, sys.stderr):
                try:
                    stream.flush()
                except (OSError, ValueError):
                    pass
            os._exit(code)
    for fd in fds:
        os.close(fd)
    try:
        conn.sendall(b"+")
    except OSError:
        os.kill(pid, signal.SIGKILL)  # the caller is already gone
    pidfd = os.pidfd_open(pid)
    poller = select.poll()
    poller.register(pidfd, select.POLLIN)
    poller.register(conn.fileno(), select.POLLIN)
    caller_gone = False
    while True:
        ready = {fd for fd, _ in poller.poll()}
        if pidfd in ready:
            break
        if conn.fileno() in ready and not caller_gone:
            data = conn.recv(16)
            if not data:
                # the caller died (kill -9): so does its command
                caller_gone = True
                poller.unregister(conn.fileno())
                os.kill(pid, signal.SIGKILL)
            for signum in data:
                os.kill(pid, signum)
    _, status = os.waitpid(pid, 0)
    code = os.waitstatus_to_exitcode(status)
    if not caller_gone:
        try:
            conn.sendall(struct.pack("!i", code))
        except OSError:
            pass
    return 0


def _recv_exact_into(conn: Any, head: bytes, n: int) -> bytes:
    return head + _recv_exact(conn, n - len(head)) if len(head) < n else head[:n]


def _become_caller(request: dict[str, Any], fds: list[int]) -> None:
    """Turn the forked worker into the caller's process: streams, environment, cwd, umask."""
    import signal

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.environ.clear()
    os.environ.update(request["env"])
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    # a fresh interpreter's handlers (SIGPIPE stays ignored, as CPython sets it at start-up)
    signal.signal(signal.SIGINT, signal.default_int_handler)
    _handle_interrupts()
    signal.signal(signal.SIGTERM, signal.SIG_DFL)
    signal.signal(signal.SIGHUP, signal.SIG_DFL)
    # what a fresh interpreter builds for its standard streams (UTF-8; stderr line-buffered);
    # they live as long as this process, hence no context manager
    out_buffering = 1 if os.isatty(1) else -1
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", out_buffering, "utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", 1, "utf-8", "backslashreplace", closefd=False)  # noqa: SIM115
    sys.argv = ["talosctl", *request["argv"]]


def entry() -> None:
    """Console-script entry point (`talosim <talosctl args>`)."""
    sys.exit(launch(sys.argv[1:]))


if __name__ == "__main__":
    serve(bytes.fromhex(sys.argv[1]))

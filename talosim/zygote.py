"""talosim's fork server (the "zygote"): it imports talosim once and forks one worker per call.

A caller is talosim's launcher (talosim/launcher.py, where the why is). The worker runs the very
same `cli.main` with the caller's argv, environment, working directory, umask and standard
streams, so its output, exit code, files and signals are those of a fresh process; nothing of one
call lives on in the zygote, which never runs a command itself.

- A connection from another user id is refused (SO_PEERCRED), since a worker acts as this user.
- A zygote exits after IDLE_SECONDS without a call, and as soon as a talosim source or data file
  changed since it started (the caller then runs in-process), so an edit is never served stale.
- Per call, the zygote forks one worker and supervises it from its event loop: it forwards the
  signals the caller receives (SIGINT, SIGTERM, SIGHUP), SIGKILLs the worker when the caller
  dies, so killing the caller stops the command as killing a real talosctl would, and reports
  the worker's wait status: the caller exits with that code or dies of that signal. A worker
  dies with its zygote (PR_SET_PDEATHSIG): no command outlives the process that reports its
  end, and its caller fails as a talosctl that was killed.
"""

from __future__ import annotations

import os
import sys

from .launcher import (
    FORWARDED,
    PKG,
    STREAMS,
    address_of,
    handle_interrupts,
    identity,
)

TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

IDLE_SECONDS = 120.0


def _sources() -> dict[str, float]:
    found: dict[str, float] = {}
    for top, dirs, files in os.walk(PKG):
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


class _Call:
    """One caller's connection: its request while it arrives, then its worker."""

    def __init__(self, conn: Any) -> None:
        self.conn = conn
        self.data = b""
        self.fds: list[int] = []
        self.pid = 0  # the worker's, once forked
        self.pidfd = -1


def serve(address: bytes) -> None:
    import gc
    import socket

    ident = identity()
    if address_of(ident) != address:
        return
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        # bound before the warm-up, listening after it: the calls made meanwhile are refused
        # and run in-process, and the zygotes they start exit here instead of warming up too
        listener.bind(address)
    except OSError:
        return  # another zygote got there first
    try:
        _warm_up()
        broken = False
    except BaseException:  # callers run in-process and see the error there
        broken = True
    # Every worker writes to the objects it uses (reference counts), and a collection in a
    # worker would write to every object it scans: frozen objects are never scanned, so a
    # worker copies only the pages it uses.
    gc.collect()
    gc.freeze()
    listener.listen(64)
    listener.setblocking(False)
    _Zygote(listener, ident, broken).run()


class _Zygote:
    """The event loop: accept calls, read their requests, fork and supervise their workers."""

    def __init__(self, listener: Any, identity: str, broken: bool) -> None:
        import select

        self.listener = listener
        self.identity = identity
        # a zygote that could not import talosim keeps its address, declining, so that
        # callers do not start a new one each time
        self.broken = broken
        self.stale = False
        self.sources = _sources()
        self.poller = select.poll()
        self.poller.register(listener, select.POLLIN)
        self.by_fd: dict[int, _Call] = {}
        self.calls: list[_Call] = []
        self.pid = os.getpid()
        self.pdeathsig = None if broken else _pdeathsig()

    def run(self) -> None:
        import time

        last_call = time.monotonic()
        while True:
            timeout = None
            if not any(call.pid for call in self.calls):
                # no worker to report on: requests still arriving fall back in-process
                if self.stale:
                    return
                timeout = (IDLE_SECONDS - (time.monotonic() - last_call)) * 1000
                if timeout <= 0:
                    return
            for fd, _ in self.poller.poll(timeout):
                # an event can name an fd closed (and reused) by the events before it in this
                # batch: every handler below only does what cannot block
                if fd == self.listener.fileno():
                    if self._accept():
                        last_call = time.monotonic()
                    continue
                call = self.by_fd.get(fd)
                if call is None:
                    continue
                if fd == call.pidfd:
                    self._reap(call)
                elif call.pid:
                    self._forward(call)
                else:
                    self._receive(call)

    def _accept(self) -> bool:
        import select
        import socket
        import struct

        try:
            conn, _ = self.listener.accept()
        except BlockingIOError:
            return False
        uid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[1]
        if uid != os.getuid():
            conn.close()
            return False
        conn.setblocking(False)
        call = _Call(conn)
        self.calls.append(call)
        self.by_fd[conn.fileno()] = call
        self.poller.register(conn, select.POLLIN)
        return True

    def _receive(self, call: _Call) -> None:
        """Read what has arrived of the request; serve or decline it once it is complete."""
        import socket

        while True:
            try:
                chunk, fds, _flags, _addr = socket.recv_fds(call.conn, 1 << 16, len(STREAMS))
            except BlockingIOError:
                return
            except OSError:
                chunk, fds = b"", []
            call.fds += fds
            if not chunk:  # the caller left before its request was complete
                self._drop(call)
                return
            call.data += chunk
            if len(call.data) >= 4 and len(call.data) >= 4 + int.from_bytes(call.data[:4], "big"):
                break
        # checked right before the fork: an edit made up to this moment is not served
        self.stale = self.stale or _sources() != self.sources
        if self.stale and not self.broken and self.listener.fileno() >= 0:
            # the next callers start a fresh zygote at this address
            self.poller.unregister(self.listener)
            self.listener.close()
        if self.broken or self.stale or not self._fork(call):
            try:
                call.conn.send(b"-")
            except OSError:
                pass
            self._drop(call)

    def _fork(self, call: _Call) -> bool:
        """Fork the call's worker, if the request is one to serve."""
        import marshal
        import select
        import signal

        try:
            request = marshal.loads(call.data[4:])
            if request["identity"] != self.identity or len(call.fds) != len(STREAMS):
                return False
        except Exception:
            return False
        try:
            pid = os.fork()
        except OSError:
            return False
        if pid == 0:
            code = 1
            try:
                self._become_worker(call)
                _become_caller(request, call.fds)
                code = _run_worker(request["argv"])
            finally:
                os._exit(code)
        call.pid = pid
        call.pidfd = os.pidfd_open(pid)
        self.by_fd[call.pidfd] = call
        self.poller.register(call.pidfd, select.POLLIN)
        for own in call.fds:
            os.close(own)
        call.fds = []
        try:
            call.conn.send(b"+")
        except OSError:
            os.kill(pid, signal.SIGKILL)  # the caller is already gone
        return True

    def _become_worker(self, call: _Call) -> None:
        """In the forked worker: die with the zygote, keep nothing of it or of other calls."""
        assert self.pdeathsig is not None
        self.pdeathsig()
        if os.getppid() != self.pid:  # the zygote died before the line above
            os._exit(1)
        self.listener.close()
        for other in self.calls:
            other.conn.close()
            if other.pidfd >= 0:
                os.close(other.pidfd)
            if other is not call:
                for own in other.fds:
                    os.close(own)

    def _forward(self, call: _Call) -> None:
        """Pass the signals the caller got to its worker; SIGKILL it when the caller died."""
        import signal

        try:
            data = call.conn.recv(16)
        except BlockingIOError:
            return
        except OSError:
            data = b""
        if not data:
            # the caller died (kill -9): so does its command; its end is reaped as usual
            os.kill(call.pid, signal.SIGKILL)
            self.poller.unregister(call.conn)
            del self.by_fd[call.conn.fileno()]
            return
        forwarded = {getattr(signal, name) for name in FORWARDED}
        for signum in data:
            if signum in forwarded:
                os.kill(call.pid, signum)

    def _reap(self, call: _Call) -> None:
        """Tell the caller how its worker ended (a wait status, as waitpid gives it)."""
        pid, status = os.waitpid(call.pid, os.WNOHANG)
        if pid == 0:
            return
        try:
            call.conn.send(os.waitstatus_to_exitcode(status).to_bytes(4, "big", signed=True))
        except OSError:
            pass  # the caller is gone
        self.poller.unregister(call.pidfd)
        del self.by_fd[call.pidfd]
        os.close(call.pidfd)
        call.pidfd = -1
        self._drop(call)

    def _drop(self, call: _Call) -> None:
        if self.by_fd.get(call.conn.fileno()) is call:
            self.poller.unregister(call.conn)
            del self.by_fd[call.conn.fileno()]
        for own in call.fds:
            os.close(own)
        call.conn.close()
        self.calls.remove(call)


def _pdeathsig() -> Any:
    """What a worker calls first: the kernel then SIGKILLs it when its zygote dies, so that no
    command runs on after its caller was told it failed (prctl(2), PR_SET_PDEATHSIG)."""
    import ctypes
    import signal

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def pdeathsig() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)

    return pdeathsig


def _run_worker(argv: list[str]) -> int:
    """The command, with the exit code and output a fresh interpreter would give it."""
    code = 1
    try:
        from . import check_version, cli

        check_version()  # as run_here, which the caller runs when no zygote serves it
        code = cli.main(list(argv))
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
    return code


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
    # a fresh interpreter's handlers (SIGPIPE stays ignored, as CPython sets it at start-up),
    # and what the caller ignores stays ignored
    ignored = set(request.get("ignored", ()))
    for name, fresh in (
        ("SIGINT", signal.default_int_handler),
        ("SIGTERM", signal.SIG_DFL),
        ("SIGHUP", signal.SIG_DFL),
    ):
        signal.signal(getattr(signal, name), signal.SIG_IGN if name in ignored else fresh)
    handle_interrupts()
    # what a fresh interpreter builds for its standard streams (UTF-8; stderr line-buffered);
    # they live as long as this process, hence no context manager
    out_buffering = 1 if os.isatty(1) else -1
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", out_buffering, "utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", 1, "utf-8", "backslashreplace", closefd=False)  # noqa: SIM115
    sys.argv = ["talosctl", *request["argv"]]


if __name__ == "__main__":
    serve(bytes.fromhex(sys.argv[1]))

"""talosim's launcher: what every talosctl call runs first, to have a zygote run it.

Why: talosprov, the demo and the tests make hundreds of talosctl calls, and each call to talosim
was a new Python interpreter spending ~0.2-0.3 s importing talosim (YAML, cryptography, schemas)
to do a few milliseconds of work. A zygote (talosim/zygote.py) imports talosim once and forks one
worker per call, which runs the call as a fresh process would.

`launch` asks the zygote for the caller's (interpreter, talosim source, user) to run
the call, handing it the caller's argv, environment, working directory, umask and standard
streams (as file descriptors over a Unix socket, SCM_RIGHTS); it forwards the signals the caller
receives and exits with the worker's code or dies of its signal. When no zygote answers, it
starts one in the background and runs the call in-process as before. TALOSIM_ZYGOTE=0 turns it
off.

The socket is in Linux's abstract namespace: no file anywhere, gone with the process.

This module is imported on every call before anything else, so its top level imports only what
the interpreter has loaded already, and the caller's path uses _socket and _signal, not socket
and signal (whose Python wrappers import enum, selectors and collections: ~8 ms a call); the
rest is imported where it is needed.
"""

from __future__ import annotations

import os
import sys

# `typing` costs ~9 ms of every call's start-up; mypy reads this block, the interpreter skips it
TYPE_CHECKING = False
if TYPE_CHECKING:
    from typing import Any

REQUIRE_WAIT_SECONDS = 30.0
_ENV = "TALOSIM_ZYGOTE"
# shared with the zygote: the signals a caller forwards, the package whose source a zygote
# serves, the caller's standard streams it hands over
FORWARDED = ("SIGINT", "SIGTERM", "SIGHUP")
PKG = os.path.dirname(os.path.abspath(__file__))
STREAMS = (0, 1, 2)


def identity(env: Any = os.environ) -> str:
    """What a zygote's imported code depends on: a zygote serves only callers that match it.
    Not the release a call plays (TALOSIM_VERSION): talosim reads it per call (talosim.played),
    so one zygote serves every release."""
    return "\0".join((sys.executable, PKG, str(os.getuid())))


def address(env: Any = os.environ) -> bytes:
    """The socket address of the zygote that would serve a caller with this environment."""
    return address_of(identity(env))


def address_of(ident: str) -> bytes:
    """The socket address of the zygote for one identity (see `identity`)."""
    # FNV-1a, 64 bits, in Python: zlib's crc32 was a shared library to load on every call
    digest = 0xCBF29CE484222325
    for byte in ident.encode("utf-8", "surrogateescape"):
        digest = ((digest ^ byte) * 0x100000001B3) & 0xFFFFFFFFFFFFFFFF
    # abstract namespace (leading NUL): no socket file; the full identity is checked on connect
    return b"\0talosim-zygote-%016x" % digest


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

    handle_interrupts()
    return main(argv)


def handle_interrupts() -> None:
    """Ctrl-C ends a waiting call even when Python swallows one KeyboardInterrupt (see
    talosim.machine.clock.on_interrupt and install_interrupts)."""
    from .machine import clock

    clock.install_interrupts()


def _via_zygote(argv: list[str], *, require: bool) -> int | None:
    import _socket
    import time

    ident = identity()
    addr = address_of(ident)
    deadline: float | None = None
    declined = 0
    while True:
        sock = _socket.socket(_socket.AF_UNIX, _socket.SOCK_STREAM)
        try:
            sock.connect(addr)
        except OSError:
            sock.close()
            if deadline is None:
                _start_zygote(addr)
                deadline = time.monotonic() + REQUIRE_WAIT_SECONDS
            if not require:
                return None
            if time.monotonic() > deadline:
                sys.stderr.write("talosim: no zygote answered (TALOSIM_ZYGOTE=require)\n")
                return 125
            time.sleep(0.02)
            continue
        try:
            if not _own_user(sock):
                # another user holds the address (an abstract one has no permissions): this
                # call's environment and streams go to no one else; it runs here
                if require:
                    sys.stderr.write("talosim: the zygote's address is another user's\n")
                    return 125
                return None
            return _relay(sock, argv, ident)
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


def _own_user(sock: Any) -> bool:
    """Whether the process at the other end runs as this user (SO_PEERCRED: pid, uid, gid)."""
    import _socket

    creds = sock.getsockopt(_socket.SOL_SOCKET, _socket.SO_PEERCRED, 12)
    return int.from_bytes(creds[4:8], sys.byteorder) == os.getuid()


class _NotServed(Exception):
    """The zygote declined (stale source, other identity) before anything ran."""


def _relay(sock: Any, argv: list[str], identity: str) -> int:
    import _signal
    import _socket
    import marshal

    # A signal this process ignores (nohup, `cmd &` in a script) stays ignored in the worker,
    # as it would in a fresh process, and is not forwarded; but for SIGINT, which the worker
    # catches once it talks to a node (talosim.machine.clock.catch_interrupts, as talosctl does).
    ignored = [n for n in FORWARDED if _signal.getsignal(getattr(_signal, n)) == _signal.SIG_IGN]
    names = [n for n in FORWARDED if n not in ignored or n == "SIGINT"]
    request = marshal.dumps(
        {
            "identity": identity,
            "argv": argv,
            "env": dict(os.environ),
            "cwd": os.getcwd(),
            "umask": _umask(),
            "ignored": ignored,
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

    signums = [getattr(_signal, name) for name in names]
    previous = {signum: _signal.signal(signum, on_signal) for signum in signums}
    message = len(request).to_bytes(4, "big") + request
    fds = b"".join(fd.to_bytes(4, sys.byteorder) for fd in STREAMS)  # an array of C ints
    try:
        sent = sock.sendmsg([message], [(_socket.SOL_SOCKET, _socket.SCM_RIGHTS, fds)])
        if sent < len(message):  # a signal can end a large sendmsg part-way
            sock.sendall(message[sent:])
    except OSError:
        # a zygote exiting (idle, or its source changed) resets the connections still waiting
        # in its backlog; one that did not get the whole request forks nothing: the call runs
        # elsewhere
        answer = b""
    else:
        # Once the whole request is out, the answer is read whatever happens: the zygote may
        # already have run the call and closed its end (its "+" and the status stay readable).
        # Sending anything more here, even sendall(b""), fails with EPIPE then, and taking that
        # for "not served" ran the call a second time.
        try:
            answer = _recv_exact(sock, 1)
        except OSError:
            answer = b""
    if answer != b"+":
        for signum, handler in previous.items():
            _signal.signal(signum, handler)
        for signum in pending:  # the call runs in this process now: so do its signals
            os.kill(os.getpid(), signum)
        raise _NotServed
    served.append(True)
    for signum in pending:
        on_signal(signum, None)
    status = _recv_exact(sock, 4)
    if len(status) < 4:
        # the zygote is gone without a status (killed): say so as a dead talosctl would
        sys.stderr.write("talosim: the emulator's worker died without an exit status\n")
        return 1
    code = int.from_bytes(status, "big", signed=True)
    if code < 0:
        sys.stdout.flush()
        if -code not in (_signal.SIGKILL, _signal.SIGSTOP):  # these have no handler to reset
            _signal.signal(-code, _signal.SIG_DFL)
        os.kill(os.getpid(), -code)
        return 128 - code
    return code


def _recv_exact(sock: Any, n: int) -> bytes:
    data = b""
    while len(data) < n:
        chunk = sock.recv(n - len(data))
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
            env={**env, "PYTHONPATH": os.path.dirname(PKG)},
        )
    except OSError:
        pass  # no zygote: every call runs in-process, as before


def entry() -> None:
    """Console-script entry point (`talosim <talosctl args>`)."""
    sys.exit(launch(sys.argv[1:]))

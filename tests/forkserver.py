"""The tests' `python -m invoke` processes, forked from a server that has imported their modules.

Why (issue #13): the suite starts ~220 `python -m invoke ...` processes, and each spent ~15 ms
starting an interpreter and ~250 ms of CPU importing invoke, pydantic, talosprov.model, ruamel,
rich, jinja2, cryptography ... before its task did anything. Here one server per pytest process
imports them once; every call is still a separate process, forked from that server, that runs what
`python -m invoke` runs (runpy's _run_module_as_main("invoke"): the real invoke Program and the
test repository's real tasks.py) with the caller's arguments, environment, working directory,
umask, standard streams and signal dispositions, and ends as an interpreter does.

What a forked call keeps of the server is only what a fresh interpreter would have built the same
way: the server is started with this interpreter and with the environment variables that
interpreter start-up or the preloaded modules read at import (`identity`: PYTHON*, locale, ...), a
call whose variables differ runs as a fresh interpreter, and the few values the preloaded modules
computed from the working directory or HOME are recomputed in the child (`_recompute`).
tests/unit/test_forkserver.py compares what a forked and a fresh call see of their process:
sys.path, argv, environment, cwd, umask, signal dispositions, standard streams, rich's and
tempfile's directories.
Differences that remain: the child's hash seed is the server's (the same for every call of one
pytest process), /proc/<pid>/cmdline names the server, its parent is the server, and a module the
server imported and the task does not need is there anyway.

- The server is started lazily by the first call of a pytest process (subprocess.Popen: the
  pytest process, which runs threads, is never forked itself) and ends with it: it watches a
  pidfd of the pytest process and the control socket only that process holds (a socketpair: no
  address another process could connect to), and conftest stops it at session end.
- The server is single-threaded; each child is SIGKILLed when the server dies (PR_SET_PDEATHSIG)
  or when its caller goes away or times out, and the caller gets the child's wait status: the
  returncode subprocess.run would give, negative for a signal.
- TALOSPROV_TEST_FORK=0 runs every call as a fresh interpreter, as `fresh=True` does for the tests
  about start-up itself (which modules a task imports, signals sent to a running invoke).
"""

from __future__ import annotations

import os
import sys
import threading

TYPE_CHECKING = False
if TYPE_CHECKING:
    import socket
    import subprocess
    from collections.abc import Mapping, Sequence
    from typing import Any

SWITCH = "TALOSPROV_TEST_FORK"
# Environment variables read at interpreter start-up (PYTHON*, the locale, the dynamic loader,
# malloc) or by the preloaded modules at import (invoke.util: INVOKE_DEBUG, ruamel.yaml.compat:
# RUAMEL_DEBUG, sh: SH_TESTS_*, pydantic's plugin loader, OpenSSL's configuration): a call runs
# forked only when its values of these are the server's.
IDENTITY_PREFIXES = (
    "PYTHON",
    "_PYTHON",
    "LC_",
    "LD_",
    "MALLOC_",
    "INVOKE_",
    "PYDANTIC_",
    "OPENSSL_",
    "RUAMEL_",
    "SH_",
)
IDENTITY_NAMES = ("LANG", "LANGUAGE", "TZ", "GLIBC_TUNABLES")
# the largest request (argv, environment) sent in one SEQPACKET message; larger ones run fresh
MAX_REQUEST = 128 * 1024
_STREAMS = 3  # the child's stdin, stdout, stderr
_MAIN_KEYS = ("__name__", "__doc__", "__package__", "__loader__", "__spec__", "__annotations__")

# per pytest process: how many calls ran forked and how many fresh (and why), for the tests
stats: dict[str, int] = {}


def enabled() -> bool:
    return os.environ.get(SWITCH, "1") != "0"


def identity(env: Mapping[str, str]) -> dict[str, str]:
    """The variables of env that a server must share with a call it forks (see above)."""
    import site

    ident = {k: v for k, v in env.items() if k.startswith(IDENTITY_PREFIXES) or k in IDENTITY_NAMES}
    # outside a venv, start-up adds ~/.local/lib/pythonX.Y/site-packages to sys.path when it
    # exists: HOME then decides sys.path
    if site.ENABLE_USER_SITE and "HOME" in env:
        ident["HOME"] = env["HOME"]
    return ident


def invoke(
    args: Sequence[str],
    *,
    cwd: str | os.PathLike[str],
    env: Mapping[str, str],
    timeout: float | None = None,
    fresh: bool = False,
) -> subprocess.CompletedProcess[str]:
    """`subprocess.run([sys.executable, "-m", "invoke", *args], cwd=cwd, env=env,
    capture_output=True, text=True, timeout=timeout)`, forked from the server when it can be."""
    argv = [sys.executable, "-m", "invoke", *args]
    reason = "fresh" if fresh else "disabled" if not enabled() else None
    if reason is None:
        try:
            done = _forked(argv, os.fspath(cwd), dict(env), timeout)
        except _Declined as e:
            reason = str(e)
        else:
            stats["forked"] = stats.get("forked", 0) + 1
            return done
    stats[reason] = stats.get(reason, 0) + 1
    return _fresh(argv, os.fspath(cwd), dict(env), timeout)


def _fresh(
    argv: list[str], cwd: str, env: dict[str, str], timeout: float | None
) -> subprocess.CompletedProcess[str]:
    import subprocess

    return subprocess.run(
        argv, cwd=cwd, env=env, capture_output=True, text=True, timeout=timeout, check=False
    )


class _Declined(Exception):
    """The call is not forked (the reason); it runs as a fresh interpreter, nothing ran yet."""


class _Server:
    """The caller's end: the server process and the control socket only this process holds."""

    def __init__(self, proc: subprocess.Popen[bytes], ctl: socket.socket, ident: dict[str, str]):
        self.proc = proc
        self.ctl = ctl
        self.identity = ident
        self.owner = os.getpid()
        self.broken = ""


_server: list[_Server] = []  # at most one
_lock = threading.Lock()


def _server_for(env: dict[str, str]) -> _Server:
    with _lock:
        if _server and _server[0].owner != os.getpid():  # a fork of the pytest process
            raise _Declined("not the server's owner")
        if not _server:
            _server.append(_start(identity(env)))
        server = _server[0]
    if server.broken:
        raise _Declined(server.broken)
    if identity(env) != server.identity:
        raise _Declined("environment")
    return server


def _start(ident: dict[str, str]) -> _Server:
    import marshal
    import socket
    import subprocess

    here = os.path.dirname(os.path.dirname(os.path.abspath(__file__)))
    ctl, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_SEQPACKET)
    # binds no name in __main__ but `sys`, `f`, which the child removes with the rest
    boot = (
        f"import sys; sys.path.insert(0, {here!r}); import tests.forkserver as f; "
        f"del sys.path[0]; f.serve({theirs.fileno()}, {os.getpid()}, "
        f"{marshal.dumps(ident).hex()!r})"
    )
    try:
        proc = subprocess.Popen(
            [sys.executable, "-c", boot],
            stdin=subprocess.DEVNULL,
            stdout=subprocess.DEVNULL,
            stderr=subprocess.DEVNULL,
            pass_fds=[theirs.fileno()],
            env=ident,
            cwd="/",
        )
    finally:
        theirs.close()
    server = _Server(proc, ctl, ident)
    # the server answers once it has imported everything (the first call waits, as a fresh
    # interpreter would have): b"+", or b"-" and why it cannot serve
    ctl.settimeout(300)
    try:
        ready = ctl.recv(1 << 16)
    except OSError as e:
        ready = b"-" + str(e).encode()
    ctl.settimeout(None)
    if ready[:1] != b"+":
        server.broken = "server: " + (ready[1:].decode(errors="replace") or "exited")
    return server


def stop() -> None:
    """End this process's server (the next call starts a new one)."""
    with _lock:
        if not _server or _server[0].owner != os.getpid():
            return
        server = _server.pop()
    server.ctl.close()  # the server's cue: it kills what still runs and exits
    try:
        server.proc.wait(timeout=30)
    except Exception:
        server.proc.kill()
        server.proc.wait()


def _umask() -> int:
    with open("/proc/self/status") as f:  # read, not set and reset: other threads run
        for line in f:
            if line.startswith("Umask:"):
                return int(line.split()[1], 8)
    raise _Declined("umask")


def _request(argv: list[str], cwd: str, env: dict[str, str], server: _Server) -> bytes:
    import marshal
    import signal

    ignored = [
        int(s)
        for s in signal.valid_signals()
        if s not in (signal.SIGKILL, signal.SIGSTOP) and signal.getsignal(s) == signal.SIG_IGN
    ]
    request = marshal.dumps(
        {
            "argv": argv,
            "cwd": cwd,
            "env": env,
            "umask": _umask(),
            "ignored": ignored,
            "blocked": [int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])],
            "identity": server.identity,
        }
    )
    if len(request) > MAX_REQUEST:
        raise _Declined("request size")
    return request


def _forked(
    argv: list[str], cwd: str, env: dict[str, str], timeout: float | None
) -> subprocess.CompletedProcess[str]:
    import socket
    import subprocess
    import time

    server = _server_for(env)
    if not os.path.isdir(cwd):
        raise _Declined("cwd")  # subprocess.run raises the error a fresh start gives
    try:
        os.fstat(0)
    except OSError:
        raise _Declined("no stdin") from None  # a fresh child would start without one
    request = _request(argv, cwd, env, server)
    deadline = None if timeout is None else time.monotonic() + timeout
    mine, theirs = socket.socketpair(socket.AF_UNIX, socket.SOCK_STREAM)
    out_r, out_w = os.pipe()
    err_r, err_w = os.pipe()
    ours = [mine.fileno(), out_r, err_r]
    try:
        try:
            socket.send_fds(server.ctl, [request], [theirs.fileno(), 0, out_w, err_w])
        except OSError as e:
            server.broken = f"server gone ({e})"
            raise _Declined(server.broken) from None
        finally:
            for fd in (out_w, err_w):
                os.close(fd)
            theirs.close()
        # the server forks at once; it answers b"+" (forked) or b"-" (declined, nothing ran).
        # No timeout here: a call that gave up waiting could not know whether its child runs.
        try:
            answer = mine.recv(1)
        except OSError:
            answer = b""
        if not answer:
            server.broken = "server gone"
        if answer != b"+":
            raise _Declined(server.broken or "declined by the server")
        out, err, status = _communicate(mine, out_r, err_r, deadline, argv, timeout)
    finally:
        mine.close()
        for fd in ours[1:]:
            try:
                os.close(fd)
            except OSError:
                pass
    return subprocess.CompletedProcess(argv, status, _text(out), _text(err))


def _text(data: bytes) -> str:
    """As subprocess.run(text=True) decodes output: the locale's encoding, universal newlines."""
    import locale

    text = data.decode(locale.getpreferredencoding(False))
    return text.replace("\r\n", "\n").replace("\r", "\n")


def _communicate(
    sock: socket.socket,
    out_r: int,
    err_r: int,
    deadline: float | None,
    argv: list[str],
    timeout: float | None,
) -> tuple[bytes, bytes, int]:
    """Read both pipes to their end and the child's status from the server, as Popen's
    communicate() then wait() do; on timeout kill the child and raise TimeoutExpired."""
    import select
    import subprocess
    import time

    chunks: dict[int, list[bytes]] = {out_r: [], err_r: []}
    status = b""
    poller = select.poll()
    for fd in (out_r, err_r, sock.fileno()):
        poller.register(fd, select.POLLIN)
    open_pipes = {out_r, err_r}
    try:
        while open_pipes or len(status) < 4:
            wait_ms = None
            if deadline is not None:
                left = deadline - time.monotonic()
                if left <= 0:
                    raise subprocess.TimeoutExpired(
                        argv,
                        timeout or 0,
                        output=b"".join(chunks[out_r]) or None,
                        stderr=b"".join(chunks[err_r]) or None,
                    )
                wait_ms = max(1, int(left * 1000))
            for fd, _ in poller.poll(wait_ms):
                if fd in open_pipes:
                    data = os.read(fd, 1 << 16)
                    if data:
                        chunks[fd].append(data)
                    else:
                        open_pipes.discard(fd)
                        poller.unregister(fd)
                elif fd == sock.fileno():
                    data = sock.recv(4 - len(status))
                    if not data:
                        raise RuntimeError("the invoke fork server died during a call")
                    status += data
                    if len(status) == 4:
                        poller.unregister(fd)
    except BaseException:
        # as subprocess.run: kill the child on timeout or any error here, wait for its end
        if len(status) < 4:
            try:
                sock.sendall(b"k")
                while len(status) < 4:
                    data = sock.recv(4 - len(status))
                    if not data:
                        break
                    status += data
            except OSError:
                pass
        raise
    return (
        b"".join(chunks[out_r]),
        b"".join(chunks[err_r]),
        int.from_bytes(status, "big", signed=True),
    )


# ---------------------------------------------------------------------------------------------
# The server (runs in its own process, started by _start)


def serve(ctl_fd: int, owner: int, launched: str) -> None:
    """The server's main: import, then fork a child per request (the child runs its call in
    _run, which never returns); returns when the pytest process is done."""
    import gc
    import marshal
    import signal
    import socket

    # Ctrl-C in a terminal goes to the whole process group: to the children, which handle it
    # as fresh interpreters would, not to the server
    signal.signal(signal.SIGINT, signal.SIG_IGN)
    ctl = socket.socket(fileno=ctl_fd)
    ident = marshal.loads(bytes.fromhex(launched))
    if sys.path and sys.path[0] == "" and not sys.flags.safe_path:
        del sys.path[0]  # -c's; a child gets its cwd there, as -m gives
    base_path = list(sys.path)
    try:
        sources = _preload()
    except BaseException as e:
        import traceback

        ctl.send(b"-" + "".join(traceback.format_exception_only(e)).encode()[:4000])
        return
    # what start-up added to the environment (PEP 538 sets LC_CTYPE when it coerces the C
    # locale): a fresh child of the same identity would add it too
    added = {k: v for k, v in os.environ.items() if k not in ident}
    # Every child writes to the objects it uses (reference counts), and a collection in a child
    # would write to every object it scans: frozen objects are never scanned, so a child copies
    # only the pages it uses.
    gc.collect()
    gc.freeze()
    ctl.send(b"+")
    call = _Loop(ctl, owner, ident, sources).run()
    if call is None:
        return
    request, fds = call
    _run(request, fds, base_path, added)


def _preload() -> dict[str, tuple[int, int]]:
    """Import what `python -m invoke <task>` imports before its task does anything, and the
    talosprov modules (none reads the environment or the working directory at import): all but
    talosprov.tasks, whose __init__ builds the task collection from TALOSPROV_EAGER_TASKS and the
    manifest. Returns the talosprov sources' (mtime, size), to serve no stale code."""
    import importlib
    import pkgutil

    importlib.import_module("runpy")
    importlib.import_module("invoke.main")  # never invoke.__main__: importing it runs invoke
    # what talosprov imports only inside functions or in talosprov.tasks (~50 ms a call):
    # read nothing at import but rich's _IMPORT_CWD (_recompute) and OpenSSL's OPENSSL_*
    # variables (identity)
    for name in ("rich.console", "rich.logging", "rich.table", "jinja2", "cryptography.x509"):
        importlib.import_module(name)
    pkg = importlib.import_module("talosprov")
    todo = [(pkg.__name__, list(pkg.__path__))]
    while todo:
        prefix, path = todo.pop()
        for mod in pkgutil.iter_modules(path, prefix + "."):
            if mod.name in ("talosprov.tasks", "talosprov.__main__"):
                continue
            m = importlib.import_module(mod.name)
            if mod.ispkg:
                todo.append((mod.name, list(m.__path__)))
    import tempfile

    if tempfile.tempdir is not None:  # cached from the server's TMPDIR: the child's is its own
        raise RuntimeError("a preloaded module called tempfile.gettempdir()")
    return _sources()


def _sources() -> dict[str, tuple[int, int]]:
    found = {}
    for name, mod in list(sys.modules.items()):
        path = getattr(mod, "__file__", None)
        if path and (name == "talosprov" or name.startswith("talosprov.")):
            st = os.stat(path)
            found[path] = (st.st_mtime_ns, st.st_size)
    return found


class _Call:
    def __init__(self, sock: socket.socket, fds: list[int]) -> None:
        self.sock = sock
        self.fds = fds  # stdin, stdout, stderr for the child, until it is forked
        self.pid = 0
        self.pidfd = -1


class _Loop:
    """The server's event loop: requests on the control socket, kill requests and the callers'
    ends on the call sockets, the children's ends on their pidfds."""

    def __init__(
        self,
        ctl: socket.socket,
        owner: int,
        ident: dict[str, str],
        sources: dict[str, tuple[int, int]],
    ) -> None:
        import select

        self.ctl = ctl
        self.identity = ident
        self.sources = sources
        self.stale = False
        self.poller = select.poll()
        self.poller.register(ctl, select.POLLIN)
        # the pytest process: when it ends, so does the server (its pidfd becomes readable)
        self.owner = owner
        self.owner_fd = os.pidfd_open(owner)
        self.poller.register(self.owner_fd, select.POLLIN)
        self.calls: dict[int, _Call] = {}  # by call socket fd and by pidfd
        self.pid = os.getpid()
        self.pdeathsig = _pdeathsig()

    def run(self) -> tuple[dict[str, Any], list[int]] | None:
        """Serve until the pytest process ends or closes the control socket; returns None then,
        or in a forked child its request and standard streams."""
        if os.getppid() != self.owner:  # it died before its pidfd was opened
            self._shutdown()
            return None
        while True:
            for fd, _ in self.poller.poll():
                if fd == self.ctl.fileno():
                    child = self._request()
                    if child is not None:
                        return child
                    if self.ctl.fileno() < 0:
                        self._shutdown()
                        return None
                elif fd == self.owner_fd:
                    self._shutdown()
                    return None
                else:
                    call = self.calls.get(fd)
                    if call is None:
                        continue
                    if fd == call.pidfd:
                        self._reap(call)
                    else:
                        self._kill_request(call)

    def _request(self) -> tuple[dict[str, Any], list[int]] | None:
        import marshal
        import socket

        try:
            data, fds, flags, _ = socket.recv_fds(self.ctl, MAX_REQUEST + 4096, 1 + _STREAMS)
        except OSError:
            data, fds, flags = b"", [], 0
        if not data and not fds:  # the pytest process closed it: stop
            self.poller.unregister(self.ctl)
            self.ctl.close()
            return None
        if len(fds) != 1 + _STREAMS or flags & (socket.MSG_TRUNC | socket.MSG_CTRUNC):
            for fd in fds:
                os.close(fd)
            return None
        call = _Call(socket.socket(fileno=fds[0]), fds[1:])
        try:
            request = marshal.loads(data)
            ok = request["identity"] == self.identity and not self._stale()
        except Exception:
            ok = False
        if not ok:
            self._answer(call, b"-")
            self._close(call)
            return None
        return self._fork(call, request)

    def _stale(self) -> bool:
        """A talosprov source changed since the server imported it: serve no call any more."""
        if not self.stale:
            for path, stamp in self.sources.items():
                try:
                    st = os.stat(path)
                except OSError:
                    self.stale = True
                    break
                if (st.st_mtime_ns, st.st_size) != stamp:
                    self.stale = True
                    break
        return self.stale

    def _fork(
        self, call: _Call, request: dict[str, Any]
    ) -> tuple[dict[str, Any], list[int]] | None:
        import select

        try:
            pid = os.fork()
        except OSError:
            self._answer(call, b"-")
            self._close(call)
            return None
        if pid == 0:
            self.pdeathsig()
            if os.getppid() != self.pid:  # the server died before the line above
                os._exit(1)
            # keep nothing of the server or of the other calls
            self.ctl.close()
            os.close(self.owner_fd)
            for other in {id(c): c for c in self.calls.values()}.values():
                self._close(other)
            call.sock.close()
            return request, call.fds
        call.pid = pid
        call.pidfd = os.pidfd_open(pid)
        for fd in call.fds:
            os.close(fd)
        call.fds = []
        self.calls[call.sock.fileno()] = call
        self.calls[call.pidfd] = call
        self.poller.register(call.sock, select.POLLIN)
        self.poller.register(call.pidfd, select.POLLIN)
        if not self._answer(call, b"+"):
            self._kill(call)  # the caller is already gone
        return None

    def _answer(self, call: _Call, data: bytes) -> bool:
        try:
            call.sock.sendall(data)
            return True
        except OSError:
            return False

    def _kill(self, call: _Call) -> None:
        import signal

        if call.pidfd >= 0:
            try:
                signal.pidfd_send_signal(call.pidfd, signal.SIGKILL)
            except ProcessLookupError:
                pass  # it has ended; its end is reaped as usual

    def _kill_request(self, call: _Call) -> None:
        """The caller timed out (b"k") or went away (end of file): the child is killed, its
        end is reaped and reported as usual."""
        try:
            data = call.sock.recv(16)
        except OSError:
            data = b""
        if data and b"k" not in data:
            return
        self._kill(call)
        if not data:
            self.poller.unregister(call.sock)
            del self.calls[call.sock.fileno()]

    def _reap(self, call: _Call) -> None:
        pid, status = os.waitpid(call.pid, os.WNOHANG)
        if pid == 0:
            return
        self._answer(call, os.waitstatus_to_exitcode(status).to_bytes(4, "big", signed=True))
        self._close(call)

    def _close(self, call: _Call) -> None:
        """Forget a call: its socket, pidfd and unsent streams (in the server or a child)."""
        for fd in (call.sock.fileno(), call.pidfd):
            if self.calls.get(fd) is call:
                self.poller.unregister(fd)
                del self.calls[fd]
        if call.pidfd >= 0:
            os.close(call.pidfd)
            call.pidfd = -1
        call.sock.close()
        for fd in call.fds:
            os.close(fd)
        call.fds = []

    def _shutdown(self) -> None:
        """The pytest process is gone or done: kill the children still running and wait."""
        for call in list({id(c): c for c in self.calls.values()}.values()):
            self._kill(call)
            if call.pid:
                os.waitpid(call.pid, 0)
            self._close(call)


def _pdeathsig() -> Any:
    """What a child calls first: the kernel SIGKILLs it when the server dies, so that no call
    runs on that no one waits for (prctl(2), PR_SET_PDEATHSIG; the server has one thread)."""
    import ctypes
    import signal

    prctl = ctypes.CDLL(None, use_errno=True).prctl
    pr_set_pdeathsig = 1

    def pdeathsig() -> None:
        prctl(pr_set_pdeathsig, signal.SIGKILL, 0, 0, 0)

    return pdeathsig


# ---------------------------------------------------------------------------------------------
# The child: become the caller's process, run `python -m invoke`, end as the interpreter does


def _run(
    request: dict[str, Any], fds: list[int], base_path: list[str], added: dict[str, str]
) -> None:
    """Never returns: runs `python -m invoke` and ends the process as the interpreter ends it."""
    code = 1
    try:
        _become_caller(request, fds, base_path, added)
        import runpy

        interrupted = False
        try:
            runpy._run_module_as_main("invoke")  # type: ignore[attr-defined]
            code = 0
        except SystemExit as e:
            code = _exit_code(e)
        except BaseException as e:
            # printed as the interpreter prints it for `python -m invoke`: from runpy's frame on
            tb = e.__traceback__.tb_next if e.__traceback__ else None
            sys.excepthook(type(e), e.with_traceback(tb), tb)
            interrupted = isinstance(e, KeyboardInterrupt)
        code = _finalize(code)
        if interrupted:
            # an unhandled Ctrl-C ends the interpreter by SIGINT (Modules/main.c exit_sigint)
            import signal

            signal.signal(signal.SIGINT, signal.SIG_DFL)
            os.kill(os.getpid(), signal.SIGINT)
            code = 128 + signal.SIGINT
    finally:
        os._exit(code & 0xFF)


def _exit_code(e: SystemExit) -> int:
    """What the interpreter exits with for an uncaught SystemExit (Python/pythonrun.c,
    _Py_HandleSystemExit): None is 0, an int itself, anything else printed to stderr and 1."""
    if e.code is None:
        return 0
    if isinstance(e.code, int):
        return e.code
    try:
        if sys.stderr is not None:
            sys.stderr.write(f"{e.code}\n")
    except Exception:
        pass
    return 1


def _finalize(code: int) -> int:
    """The part of the interpreter's exit (Py_FinalizeEx) a task can observe: wait for the
    non-daemon threads, run the atexit handlers, flush stdout and stderr (exit 120 when that
    fails). Module teardown is skipped (os._exit follows): it would copy most of the server's
    memory (~45 ms a call), and the tasks leave nothing to it (files are closed by `with`,
    temporary folders by atexit, logging's handlers by its atexit handler)."""
    import atexit

    try:
        threading._shutdown()  # type: ignore[attr-defined]
    except BaseException:
        pass
    atexit._run_exitfuncs()
    for stream in (sys.stdout, sys.stderr):
        if stream is None or stream.closed:
            continue
        try:
            stream.flush()
        except Exception as e:
            code = 120
            if stream is sys.stdout and sys.stderr is not None:
                import traceback

                try:
                    sys.stderr.write(f"Exception ignored in: {stream!r}\n")
                    traceback.print_exception(e, file=sys.stderr)
                    sys.stderr.flush()
                except Exception:
                    pass
    return code


def _become_caller(
    request: dict[str, Any], fds: list[int], base_path: list[str], added: dict[str, str]
) -> None:
    import importlib
    import signal

    for target, fd in enumerate(fds):
        os.dup2(fd, target)
        os.close(fd)
    os.chdir(request["cwd"])
    os.umask(request["umask"])
    os.environ.clear()
    os.environ.update({**request["env"], **added})
    # the dispositions a fresh interpreter starts with: what its parent ignored stays ignored
    # (subprocess resets SIGPIPE and SIGXFSZ), every other signal is default; then CPython
    # ignores SIGPIPE and SIGXFSZ and handles SIGINT unless it was ignored
    ignored = set(request["ignored"]) - {signal.SIGPIPE, signal.SIGXFSZ}
    for s in signal.valid_signals():
        if s in (signal.SIGKILL, signal.SIGSTOP):
            continue
        try:
            signal.signal(s, signal.SIG_IGN if s in ignored else signal.SIG_DFL)
        except (OSError, ValueError):
            pass  # signals the C library reserves (glibc's real-time ones)
    signal.signal(signal.SIGPIPE, signal.SIG_IGN)
    signal.signal(signal.SIGXFSZ, signal.SIG_IGN)
    if signal.SIGINT not in ignored:
        signal.signal(signal.SIGINT, signal.default_int_handler)
    signal.pthread_sigmask(signal.SIG_SETMASK, request["blocked"])
    # what -m sets up: sys.path[0] is the working directory, argv[0] "-m" until runpy sets it
    # to invoke/__main__.py; the server's own modules and __main__ names go
    sys.path[:] = ([] if sys.flags.safe_path else [os.getcwd()]) + base_path
    sys.path_importer_cache.clear()
    importlib.invalidate_caches()
    sys.argv = ["-m", *request["argv"][3:]]
    sys.orig_argv = list(request["argv"])
    main = sys.modules["__main__"].__dict__
    for key in [k for k in main if k not in _MAIN_KEYS and k != "__builtins__"]:
        del main[key]
    for name in ("tests.forkserver", "tests"):
        sys.modules.pop(name, None)
    _recompute()
    _stdio()


def _recompute() -> None:
    """Module values the server computed at import from its own working directory, HOME or
    start time: computed again as the child's own import would have."""
    import time

    rich = sys.modules.get("rich")
    if rich is not None:  # rich/__init__.py: _IMPORT_CWD, for tracebacks' relative paths
        try:
            rich.__dict__["_IMPORT_CWD"] = os.path.abspath(os.getcwd())
        except FileNotFoundError:
            rich.__dict__["_IMPORT_CWD"] = ""
    sysconfig = sys.modules.get("sysconfig")
    config_vars = getattr(sysconfig, "_CONFIG_VARS", None)
    if sysconfig is not None and config_vars and "userbase" in config_vars:
        config_vars["userbase"] = sysconfig._getuserbase()
    logging = sys.modules.get("logging")
    if logging is not None:  # records' relativeCreated counts from the process's start
        start = logging._startTime
        logging.__dict__["_startTime"] = time.time_ns() if isinstance(start, int) else time.time()


def _stdio() -> None:
    """sys.stdin/stdout/stderr as CPython's start-up builds them on fds 0-2 (create_stdio in
    Python/pylifecycle.c): encoding and errors as the server's (same locale and PYTHON*
    variables), line-buffered stdout only on a terminal, stderr line-buffered, -u unbuffered;
    called last, when nothing of the server's streams is needed any more."""
    import io

    # -u or PYTHONUNBUFFERED (no sys.flags field): the server's own stdout was built under it
    buffered = not getattr(sys.__stdout__, "write_through", False)
    for fd, name, mode in ((0, "stdin", "r"), (1, "stdout", "w"), (2, "stderr", "w")):
        like = getattr(sys, f"__{name}__")
        # buffered as _io.open sizes it (the fd's st_blksize), stdin even under -u
        buffering = -1 if buffered or mode == "r" else 0
        buf: Any = open(fd, mode + "b", buffering, closefd=False)  # noqa: SIM115
        raw = buf if isinstance(buf, io.FileIO) else buf.raw
        raw.name = f"<{name}>"
        stream = io.TextIOWrapper(
            buf,
            encoding=like.encoding if like else None,
            errors=like.errors if like else None,
            newline="\n",
            line_buffering=buffered and (fd == 2 or raw.isatty()),
            write_through=not buffered,
        )
        stream.mode = mode  # type: ignore[misc]
        setattr(sys, name, stream)
        setattr(sys, f"__{name}__", stream)

"""Start and stop a cluster's emulated API server: one detached process per cluster (pid file in
the state folder), started on demand by the talosctl calls that use the cluster."""

from __future__ import annotations

import contextlib
import fcntl
import hashlib
import os
import select
import signal
import socket
import subprocess
import sys
import threading
import time
from pathlib import Path
from typing import Any, NoReturn

from ..state import State, read_json, write_json
from .server import pidfile, serve

__all__ = ["ensure", "pidfile", "stop"]

START_SECONDS = 10.0


def _address(state: State, cid: str, attempt: int) -> str:
    h = hashlib.sha256(f"{state.root}/{cid}/{attempt}".encode()).digest()
    # 127.0.0.0/16 holds the demo nodes and common services: stay out of it.
    return f"127.{1 + h[0] % 250}.{h[1]}.{1 + h[2] % 250}"


def _alive(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.3):
        return True
    return False


def ensure(state: State, cluster: dict[str, Any]) -> str:
    """Start the cluster's API server if it is not running; return its https URL."""
    info = read_json(pidfile(state, cluster["id"])) or {}
    if info and _alive(info["host"], info["port"]):
        return f"https://{info['host']}:{info['port']}"
    host = info.get("host") or _address(state, cluster["id"], 0)
    port = 6443
    for attempt in range(8):
        if attempt:
            host = _address(state, cluster["id"], attempt)
        (state.root / "kubeapi").mkdir(parents=True, exist_ok=True, mode=0o700)
        log = os.open(
            state.root / "kubeapi" / f"{cluster['id']}.log",
            os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            0o600,
        )
        try:
            pid = _fork(state, cluster["id"], host, port, log)
            if pid is None:
                pid = _spawn(state, cluster["id"], host, port, log)
        finally:
            os.close(log)  # the server process keeps its own copy
        if pid:
            write_json(pidfile(state, cluster["id"]), {"host": host, "port": port, "pid": pid})
            return f"https://{host}:{port}"
    raise RuntimeError(
        "emulated API server failed to start; see "
        + str(state.root / "kubeapi" / f"{cluster['id']}.log")
    )


def _spawn(state: State, cid: str, host: str, port: int, log: int) -> int:
    """The server in a fresh interpreter: its pid once it listens, 0 if it did not start."""
    proc = subprocess.Popen(
        [
            sys.executable,
            "-m",
            "talosim",
            "kubeapi",
            "serve",
            "--cluster-id",
            cid,
            "--host",
            host,
            "--port",
            str(port),
        ],
        stdin=subprocess.DEVNULL,
        stdout=log,
        stderr=log,
        start_new_session=True,
        env={**os.environ, "TALOSIM_STATE": str(state.root)},
        cwd=str(state.root),
    )
    deadline = time.time() + START_SECONDS
    while time.time() < deadline:
        if proc.poll() is not None:
            return 0
        if _alive(host, port):
            return proc.pid
        time.sleep(0.05)
    proc.kill()
    return 0


def _fork(state: State, cid: str, host: str, port: int, log: int) -> int | None:
    """The server forked from this process: its pid once it listens, 0 if it did not start,
    None if this process cannot fork it safely (then `_spawn` starts it).

    Why: a fresh interpreter spent ~0.3 s of CPU importing what a talosctl call (a zygote
    worker, or the launcher running the call in-process) has imported already: the server
    start-up was ~80 s of the test suite's CPU (issue #13). A process with other threads (the
    tests running talosim in-process among pytest-xdist's) is not forked: a lock another thread
    held at the fork would stay locked in the child for ever."""
    if not _single_threaded() or not hasattr(os, "fork"):
        return None
    for stream in (sys.stdout, sys.stderr):
        # what is buffered is the caller's output: written once, by the caller (None: the
        # caller started with that descriptor closed)
        if stream is not None:
            with contextlib.suppress(OSError, ValueError):
                stream.flush()
    r, w = os.pipe()
    try:
        first = os.fork()
    except OSError:
        os.close(r)
        os.close(w)
        return None
    if first == 0:
        # Double fork: the server is no child of this call, which neither waits for it nor
        # leaves it a zombie, and init adopts it (as it did the fresh interpreter once its
        # caller ended). A zygote worker's PR_SET_PDEATHSIG is not inherited (prctl(2): cleared
        # in a fork's child); had it been, the server would die with this intermediate process.
        try:
            os.close(r)
            server = os.fork()
            if server == 0:
                _become_server(state, cid, host, port, log, w)
            os.write(w, server.to_bytes(4, "big"))
        except BaseException as e:
            with contextlib.suppress(BaseException):
                os.write(log, f"talosim: cannot fork the emulated API server: {e!r}\n".encode())
        finally:
            os._exit(0)
    os.close(w)
    try:
        os.waitpid(first, 0)
        # one write of 4 bytes before the intermediate process exited: all there, or nothing
        data = os.read(r, 4)
        if len(data) != 4:
            return 0
        pid = int.from_bytes(data, "big")
        # then one byte once the server listens, or end of file if it exited first; poll, not
        # select: a long-lived caller's pipe can be numbered 1024 or more (select's limit)
        poller = select.poll()
        poller.register(r, select.POLLIN)
        if poller.poll(START_SECONDS * 1000):
            return pid if os.read(r, 1) == b"+" else 0
        with contextlib.suppress(OSError):
            os.kill(pid, signal.SIGKILL)
        return 0
    finally:
        os.close(r)


def _single_threaded() -> bool:
    """Whether this process has one thread, native ones included: threading does not count
    those (faulthandler's watchdog, which pytest's faulthandler_timeout starts, is one)."""
    with contextlib.suppress(OSError):
        return len(os.listdir("/proc/self/task")) == 1
    return threading.active_count() == 1


def _become_server(state: State, cid: str, host: str, port: int, log: int, ready: int) -> NoReturn:
    """In the forked server: become what `python -m talosim kubeapi serve` was, then serve."""
    code = 1
    try:
        os.setsid()  # as start_new_session: no signal of the caller's terminal reaches it
        # the caller's SIGTERM handler is the call's, not the server's, until serve() installs
        # its own (serve() also resets SIGINT and SIGHUP, for the spawned server as well)
        signal.signal(signal.SIGTERM, signal.SIG_DFL)
        _name_process()
        ready = _own_descriptors(log, ready)
        os.chdir(state.root)
        os.environ["TALOSIM_STATE"] = str(state.root)
        # what the caller built is the zygote's or the caller's memory, shared copy-on-write:
        # the server's collections leave it alone (it writes to every object it scans)
        import gc

        gc.freeze()

        def listening() -> None:
            with contextlib.suppress(OSError):  # the caller is gone: serve all the same
                os.write(ready, b"+")
            os.close(ready)

        serve(State(state.root), cid, host, port, listening)
        code = 0
    except SystemExit as e:  # as the interpreter reports it
        if e.code is None or isinstance(e.code, int):
            code = e.code or 0
        else:
            sys.stderr.write(f"{e.code}\n")
    except BaseException:
        import traceback

        traceback.print_exc()
    finally:
        with contextlib.suppress(BaseException):
            sys.stderr.flush()
        os._exit(code)


def _name_process() -> None:
    """Name the forked server "talosim-kubeapi" for ps -o comm and pgrep: its command line is
    still the caller's (`python -m talosim.zygote <hex>`, or talosctl's), which only rewriting
    the memory argv points at could change. /proc/self/comm is the main thread's name, the
    only thread here; threads started later inherit it."""
    with contextlib.suppress(OSError):
        Path("/proc/self/comm").write_text("talosim-kubeapi")


def _own_descriptors(log: int, ready: int) -> int:
    """stdin from /dev/null, stdout and stderr to the log, every other inherited descriptor
    let go: the caller's streams and a zygote worker's connection must not stay open, or the
    caller would wait for the end of a stream the server holds.

    Not closed but pointed at /dev/null: an object of the caller that still holds a number (a
    socket, a file) closes it when it is collected, which would close whatever the server had
    opened under that number since.

    Returns the number `ready` now has: a caller started with 0, 1 or 2 closed (`talosctl
    kubeconfig <&-`) had the log, the pipe or /dev/null opened under it, where the standard
    streams are about to go, so those three move above 2 first."""
    null = os.open(os.devnull, os.O_RDWR)
    log, ready, null = (_above_standard(fd) for fd in (log, ready, null))
    os.dup2(null, 0)
    os.dup2(log, 1)
    os.dup2(log, 2)
    for fd in _open_descriptors():
        if fd > 2 and fd not in (log, null, ready):
            os.dup2(null, fd)
    os.close(log)
    os.close(null)
    # what a fresh interpreter builds for its standard streams
    sys.stdin = open(0, encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stdout = open(1, "w", encoding="utf-8", closefd=False)  # noqa: SIM115
    sys.stderr = open(2, "w", 1, "utf-8", "backslashreplace", closefd=False)  # noqa: SIM115
    return ready


def _above_standard(fd: int) -> int:
    """fd itself if above 2, else a copy numbered 3 or more (the original is overwritten by
    the standard stream dup2'ed onto it)."""
    if fd > 2:
        return fd
    return fcntl.fcntl(fd, fcntl.F_DUPFD_CLOEXEC, 3)


def _open_descriptors() -> list[int]:
    listed: list[int] = []
    for folder in ("/proc/self/fd", "/dev/fd"):
        with contextlib.suppress(OSError):
            listed = [int(n) for n in os.listdir(folder)]
            break
    found = []
    for fd in listed:
        try:
            os.fstat(fd)  # the directory listdir read is closed by now, and so is any gap
        except OSError:
            continue
        found.append(fd)
    return found


def stop(state: State, cid: str) -> None:
    info = read_json(pidfile(state, cid)) or {}
    pid = info.get("pid")
    if pid:
        with contextlib.suppress(ProcessLookupError, PermissionError):
            os.kill(pid, signal.SIGTERM)
        for _ in range(50):
            if not _running(pid):
                break
            time.sleep(0.05)
    with contextlib.suppress(FileNotFoundError):
        pidfile(state, cid).unlink()


def _running(pid: int) -> bool:
    """Whether pid still runs. The server's parent (a talosctl call) is long gone, so once it
    exits it is a zombie until init reaps it, and a zombie still answers kill(pid, 0): on a
    machine whose init is slow to reap, that looked like a server taking 2.5 s to stop."""
    if not os.path.exists("/proc/self/stat"):  # no procfs: ask the kernel, zombies included
        try:
            os.kill(pid, 0)
        except ProcessLookupError:
            return False
        return True
    try:
        stat = Path(f"/proc/{pid}/stat").read_text()
    except OSError:
        return False
    return stat.rsplit(")", 1)[1].split()[0] not in ("Z", "X")

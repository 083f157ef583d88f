"""talosim's native launcher (talosim/native/launcher.c, built by scripts/setup as
talosim/native/talosim-launch for the venv's interpreter): a pure fast path of
`python -S talosim/bin/talosctl` (talosim/launcher.py).

Each call here runs under both launchers against a stand-in zygote at the address of a package
of their own (a link to talosim in tmp_path: no real zygote is shared or disturbed), which
records what it receives and answers as a case says; the two must send the same request
(marshal.loads-equal), pass the same streams, and end the same way. A case the native launcher
does not serve itself must reach the Python launcher, untouched.
"""

from __future__ import annotations

import marshal
import os
import shutil
import signal
import socket
import stat
import struct
import subprocess
import sys
from collections.abc import Iterator
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

import pytest

from talosim import launcher
from tests.conftest import ROOT

NATIVE = ROOT / "talosim" / "native" / "talosim-launch"
BUILD = ROOT / "talosim" / "native" / "build"
NATIVE_PY, PYTHON = "native", "python"
DIED = "talosim: the emulator's worker died without an exit status\n"


def _missing(what: str) -> None:
    """Outside CI a missing native launcher skips; in CI (CI=true) it fails: setup builds it."""
    message = f"{what}: run scripts/setup (it builds talosim/native/launcher.c with gcc)"
    if os.environ.get("CI") == "true":
        pytest.fail(message)
    pytest.skip(message)


def installed_native() -> str:
    if not os.access(NATIVE, os.X_OK):
        _missing(f"{NATIVE} is missing")
    return str(NATIVE)


def baked(binary: str) -> tuple[str, str]:
    """The interpreter and talosim package a native launcher was built for."""
    data = Path(binary).read_bytes()
    start = data.index(b"talosim-launch-baked:") + len(b"talosim-launch-baked:")
    python, pkg = data[start:].split(b"\n")[:2]
    return python.decode(), pkg.decode()


@dataclass
class Pkg:
    """talosim under a path of its own: both launchers' zygote address is then this test's."""

    root: Path
    native: str
    pkg: Path = field(init=False)

    def __post_init__(self) -> None:
        self.pkg = self.root / "pkg" / "talosim"

    @property
    def address(self) -> bytes:
        return launcher.address_of("\0".join((sys.executable, str(self.pkg), str(os.getuid()))))

    def prefix(self, which: str) -> list[str]:
        if which == NATIVE_PY:
            return [self.native]
        return [sys.executable, "-S", str(self.pkg / "bin" / "talosctl")]


@pytest.fixture(scope="module")
def own(tmp_path_factory: pytest.TempPathFactory) -> Pkg:
    installed_native()
    if not shutil.which(os.environ.get("CC", "gcc")):
        _missing("no gcc to build a native launcher for the test's package")
    root = tmp_path_factory.mktemp("native")
    (root / "pkg").mkdir()
    (root / "pkg" / "talosim").symlink_to(Path(launcher.__file__).parent)
    native = root / "talosim-launch"
    subprocess.run(
        [str(BUILD), sys.executable, str(root / "pkg" / "talosim"), str(native)], check=True
    )
    return Pkg(root, str(native))


@pytest.fixture
def zygote(own: Pkg) -> Iterator[socket.socket]:
    """A stand-in zygote listening at the package's address (accept() with a safety timeout)."""
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(own.address)
    listener.listen(8)
    listener.settimeout(60)
    yield listener
    listener.close()


@dataclass
class Request:
    """What a stand-in zygote received on one connection."""

    conn: socket.socket
    exe: str  # the connecting process's executable: which launcher it was
    request: dict[str, Any]
    streams: list[tuple[int, int]]  # (st_dev, st_ino) of the fds 0-2 it was handed


def _accept(listener: socket.socket) -> Request:
    conn, _ = listener.accept()
    conn.settimeout(60)
    pid = struct.unpack("3i", conn.getsockopt(socket.SOL_SOCKET, socket.SO_PEERCRED, 12))[0]
    exe = os.readlink(f"/proc/{pid}/exe")
    data, fds = b"", list[int]()
    while len(data) < 4 or len(data) < 4 + int.from_bytes(data[:4], "big"):
        chunk, got, _flags, _addr = socket.recv_fds(conn, 1 << 16, 3)
        assert chunk, "the caller left before its request was complete"
        data, fds = data + chunk, fds + got
    streams = [(os.fstat(fd).st_dev, os.fstat(fd).st_ino) for fd in fds]
    for fd in fds:
        os.close(fd)
    return Request(conn, exe, marshal.loads(data[4:]), streams)


def _env(**changes: str | None) -> dict[str, str]:
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TALOS", "KUBECONFIG"))}
    env.update({"LANG": "C.UTF-8", "TALOSIM_STATE": "/nonexistent/state"})
    for k, v in changes.items():
        if v is None:
            env.pop(k, None)
        else:
            env[k] = v
    return env


def _start(
    prefix: list[str],
    argv: list[str],
    cwd: Path,
    env: dict[str, str],
    ignore: tuple[int, ...] = (),
    streams: tuple[Any, Any, Any] | None = None,
) -> subprocess.Popen[bytes]:
    def preexec() -> None:
        for name in launcher.FORWARDED:
            signum = getattr(signal, name)
            signal.signal(signum, signal.SIG_IGN if signum in ignore else signal.SIG_DFL)

    stdin, stdout, stderr = streams or (subprocess.DEVNULL, subprocess.PIPE, subprocess.PIPE)
    return subprocess.Popen(
        [*prefix, *argv],
        cwd=cwd,
        env=env,
        stdin=stdin,
        stdout=stdout,
        stderr=stderr,
        umask=0o027,
        preexec_fn=preexec,
    )


def _end(proc: subprocess.Popen[bytes]) -> tuple[int, bytes, bytes]:
    out, err = proc.communicate(timeout=60)
    return proc.returncode, out, err


# (case id, argv, environment changes, signals the caller ignores, its working directory)
REQUESTS = [
    ("version", ["version", "--client"], {}, (), "work"),
    ("no-arguments", [], {}, (), "work"),
    ("unicode-and-empty", ["gen", "", "a b", "--name=ÿ-✓-𝄞"], {"TALOSIM_X": "é"}, (), "wörk"),
    ("empty-env-value", ["version"], {"EMPTY": "", "": "empty-name"}, (), "work"),
    ("ignored-signals", ["version"], {}, (signal.SIGHUP, signal.SIGTERM), "work"),
    ("sigint-ignored", ["version"], {}, (signal.SIGINT,), "work"),
    ("big-env", ["version"], {f"BIG_{i}": "x" * 50_000 for i in range(8)}, (), "work"),
    ("locale-set-by-lc-all", ["version"], {"LC_ALL": "C.UTF-8", "LANG": "C"}, (), "work"),
    # Python sets LC_CTYPE=C.UTF-8 in its environment in a C locale (PEP 538): so must the
    # native launcher, or CI machines without LANG would never take the fast path
    ("c-locale", ["version"], {"LANG": "C", "LC_ALL": None, "LC_CTYPE": None}, (), "work"),
    ("no-locale-at-all", ["version"], {"LANG": None, "LC_ALL": None, "LC_CTYPE": None}, (), "work"),
    ("posix-locale", ["version"], {"LANG": None, "LC_ALL": None, "LC_CTYPE": "POSIX"}, (), "work"),
    ("unknown-locale", ["version"], {"LANG": "xx_YY.UTF-8", "LC_ALL": ""}, (), "work"),
]


@pytest.mark.parametrize(
    ("argv", "changes", "ignore", "cwd"), [c[1:] for c in REQUESTS], ids=[c[0] for c in REQUESTS]
)
def test_the_native_launcher_sends_the_request_and_streams_the_python_launcher_sends(
    own: Pkg,
    zygote: socket.socket,
    tmp_path: Path,
    argv: list[str],
    changes: dict[str, str | None],
    ignore: tuple[int, ...],
    cwd: str,
) -> None:
    (tmp_path / cwd).mkdir()
    seen = {}
    with (
        open(tmp_path / "in", "w+b") as stdin,
        open(tmp_path / "out", "w+b") as stdout,
        open(tmp_path / "err", "w+b") as stderr,
    ):
        files = [
            (os.fstat(f.fileno()).st_dev, os.fstat(f.fileno()).st_ino)
            for f in (stdin, stdout, stderr)
        ]
        for which in (PYTHON, NATIVE_PY):
            proc = _start(
                own.prefix(which),
                argv,
                tmp_path / cwd,
                _env(**changes),
                ignore,
                (stdin, stdout, stderr),
            )
            got = _accept(zygote)
            got.conn.sendall(b"+" + (7).to_bytes(4, "big", signed=True))
            got.conn.close()
            assert proc.wait(timeout=60) == 7
            seen[which] = got
    assert seen[NATIVE_PY].exe == own.native  # served by the native launcher itself
    assert seen[PYTHON].exe != own.native
    assert seen[NATIVE_PY].request == seen[PYTHON].request
    assert seen[NATIVE_PY].streams == seen[PYTHON].streams == files
    request = seen[NATIVE_PY].request
    assert request["cwd"] == str(tmp_path / cwd)
    assert request["umask"] == 0o027
    assert request["argv"] == argv
    assert request["identity"] == "\0".join((sys.executable, str(own.pkg), str(os.getuid())))


# (case id, what the zygote sends once it has the request, then closes; expected exit code)
ENDINGS = [
    ("exit-0", b"+\0\0\0\0", 0),
    ("exit-3", b"+\0\0\0\3", 3),
    ("exit-255", b"+\0\0\0\xff", 255),
    ("killed-by-sigterm", b"+" + (-signal.SIGTERM).to_bytes(4, "big", signed=True), -15),
    ("killed-by-sigkill", b"+" + (-signal.SIGKILL).to_bytes(4, "big", signed=True), -9),
    ("killed-by-sigint", b"+" + (-signal.SIGINT).to_bytes(4, "big", signed=True), -2),
    ("died-without-status", b"+", 1),
    ("died-mid-status", b"+\0\0", 1),
]


@pytest.mark.parametrize(("answer", "code"), [c[1:] for c in ENDINGS], ids=[c[0] for c in ENDINGS])
@pytest.mark.parametrize("which", [PYTHON, NATIVE_PY])
def test_a_served_call_ends_with_the_workers_code_or_signal(
    own: Pkg, zygote: socket.socket, tmp_path: Path, which: str, answer: bytes, code: int
) -> None:
    proc = _start(own.prefix(which), ["version", "--client"], tmp_path, _env())
    got = _accept(zygote)
    got.conn.sendall(answer)
    got.conn.close()
    returncode, out, err = _end(proc)
    assert (returncode, out, err.decode()) == (code, b"", DIED if len(answer) < 5 else "")


@pytest.mark.parametrize("which", [PYTHON, NATIVE_PY])
@pytest.mark.parametrize("before_answer", [False, True], ids=["after-answer", "before-answer"])
def test_a_signal_to_the_launcher_is_forwarded_to_the_served_command(
    own: Pkg, zygote: socket.socket, tmp_path: Path, which: str, before_answer: bool
) -> None:
    proc = _start(own.prefix(which), ["version"], tmp_path, _env())
    got = _accept(zygote)  # the whole request is out: the launcher's handlers are in place
    if not before_answer:
        got.conn.sendall(b"+")
    proc.send_signal(signal.SIGTERM)
    if before_answer:  # it waits for the answer, then goes to the command
        got.conn.sendall(b"+")
    assert got.conn.recv(1) == bytes([signal.SIGTERM])
    got.conn.sendall((-signal.SIGTERM).to_bytes(4, "big", signed=True))  # the worker died of it
    got.conn.close()
    assert _end(proc) == (-signal.SIGTERM, b"", b"")


@pytest.mark.parametrize("which", [PYTHON, NATIVE_PY])
def test_a_signal_before_a_decline_is_the_launchers_own(
    own: Pkg, zygote: socket.socket, tmp_path: Path, which: str
) -> None:
    proc = _start(own.prefix(which), ["version"], tmp_path, _env())
    got = _accept(zygote)
    proc.send_signal(signal.SIGTERM)
    got.conn.sendall(b"-")  # not served: the pending SIGTERM ends the launcher, as at its default
    got.conn.close()
    assert _end(proc) == (-signal.SIGTERM, b"", b"")


def test_a_declined_call_runs_in_the_python_launcher(
    own: Pkg, zygote: socket.socket, tmp_path: Path
) -> None:
    results = {}
    for which in (PYTHON, NATIVE_PY):
        proc = _start(own.prefix(which), ["version", "--client"], tmp_path, _env())
        exes = []
        # the native launcher's connection, then its Python launcher's; each is declined
        for _ in range(2 if which == NATIVE_PY else 1):
            got = _accept(zygote)
            exes.append(got.exe)
            got.conn.sendall(b"-")
            got.conn.close()
        results[which] = _end(proc)
        if which == NATIVE_PY:
            assert exes[0] == own.native
            assert exes[1] != own.native
    assert results[NATIVE_PY] == results[PYTHON]
    assert results[PYTHON][0] == 0
    assert b"Tag:         v1.7.0" in results[PYTHON][1]


# (case id, argv, environment changes): cases the native launcher leaves to the Python launcher
# with everything as it was; the zygote then sees the Python launcher's request, or none
FALLBACKS = [
    ("zygote-off", ["version", "--client"], {"TALOSIM_ZYGOTE": "0"}, False),
    ("zygote-empty", ["version", "--client"], {"TALOSIM_ZYGOTE": ""}, True),
    ("kubeapi-serve", ["kubeapi", "serve", "--help"], {}, False),
    ("non-utf8-env", ["version", "--client"], {"TALOSIM_X": "a\udcff"}, True),
    ("non-utf8-argv", ["version", "--client", "\udcff"], {}, True),
    ("surrogate-in-env", ["version", "--client"], {"TALOSIM_X": "\udced\udca0\udc80"}, True),
    # coercing a C locale is Python's own business once PYTHONCOERCECLOCALE is set (PEP 538)
    ("coerce-off", ["version"], {"LANG": "C", "LC_ALL": None, "PYTHONCOERCECLOCALE": "0"}, True),
    ("coerce-warn", ["version"], {"LANG": "C", "PYTHONCOERCECLOCALE": "warn"}, True),
    ("lc-all-c", ["version"], {"LC_ALL": "C", "LANG": "C"}, True),
]


@pytest.mark.parametrize(
    ("argv", "changes", "connects"), [c[1:] for c in FALLBACKS], ids=[c[0] for c in FALLBACKS]
)
def test_what_the_native_launcher_does_not_serve_reaches_the_python_launcher_untouched(
    own: Pkg,
    zygote: socket.socket,
    tmp_path: Path,
    argv: list[str],
    changes: dict[str, str | None],
    connects: bool,
) -> None:
    results, requests = {}, {}
    for which in (PYTHON, NATIVE_PY):
        proc = _start(own.prefix(which), argv, tmp_path, _env(**changes))
        if connects:
            got = _accept(zygote)
            assert got.exe != own.native  # the Python launcher's connection
            requests[which] = got.request
            got.conn.sendall(b"+\0\0\0\0")
            got.conn.close()
        results[which] = _end(proc)
    assert results[NATIVE_PY] == results[PYTHON]
    assert results[PYTHON][0] == 0, results[PYTHON]
    assert requests[NATIVE_PY] == requests[PYTHON] if connects else requests == {}


def test_with_no_zygote_listening_the_python_launcher_runs_the_call(
    own: Pkg, tmp_path: Path
) -> None:
    # bound, not listening: connect() is refused; the zygote the Python launcher starts finds
    # the address taken and exits, so no real zygote is left behind
    holder = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    holder.bind(own.address)
    try:
        results = {
            which: _end(_start(own.prefix(which), ["version", "--client"], tmp_path, _env()))
            for which in (PYTHON, NATIVE_PY)
        }
    finally:
        holder.close()
    assert results[NATIVE_PY] == results[PYTHON]
    assert results[PYTHON][0] == 0
    assert b"Tag:         v1.7.0" in results[PYTHON][1]


def test_the_installed_native_launcher_is_built_for_this_venv_and_its_talosim() -> None:
    python, pkg = baked(installed_native())
    assert python == sys.executable
    assert pkg == launcher.PKG
    assert stat.S_IMODE(NATIVE.stat().st_mode) & 0o111


def test_talosprov_runs_talosim_through_the_native_launcher_when_it_is_built(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    from talosprov.tools.run import _talosim_prefix, native_launcher, resolve

    assert _talosim_prefix() == (installed_native(),)
    assert native_launcher(NATIVE.parent.parent) == installed_native()
    # a package of its own: the binary is used only for the interpreter, package and sources
    # it was built for
    pkg = tmp_path / "pkg" / "talosim"
    for rel in ("launcher.py", "bin/talosctl", "native/launcher.c", "native/build"):
        (pkg / rel).parent.mkdir(parents=True, exist_ok=True)
        shutil.copy2(Path(launcher.__file__).parent / rel, pkg / rel)
    built = pkg / "native" / "talosim-launch"
    subprocess.run(
        [str(pkg / "native" / "build"), sys.executable, str(pkg), str(built)], check=True
    )
    assert native_launcher(pkg) == str(built)
    for rel in ("launcher.py", "native/launcher.c"):  # a pull changed the protocol's sources
        before = (pkg / rel).read_bytes()
        (pkg / rel).write_bytes(before + b"\n")
        assert native_launcher(pkg) is None, rel
        (pkg / rel).write_bytes(before)
    assert native_launcher(pkg) == str(built)
    other = tmp_path / "other" / "talosim"  # a copy of that package, binary included
    shutil.copytree(pkg, other, symlinks=True)
    assert native_launcher(other) is None
    monkeypatch.setattr(sys, "executable", sys.executable + "3")
    assert native_launcher(pkg) is None
    monkeypatch.undo()
    # TALOSCTL naming it is still seen as talosim: its state folder is the one to manage
    monkeypatch.setenv("TALOSCTL", installed_native())
    monkeypatch.delenv("TALOSIM_STATE", raising=False)
    assert resolve("talosctl", emulator_state=tmp_path).emulator_state == tmp_path


# Holds an abstract address as another user (an abstract socket has no permissions) and, once
# told the test is done, says how many bytes its connections carried.
_HOLDER = r"""
import socket, sys
s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
s.bind(bytes.fromhex(sys.argv[1]))
s.listen(8)
print("ready", flush=True)
sys.stdin.read()
s.setblocking(False)
got = 0
while True:
    try:
        c, _ = s.accept()
    except BlockingIOError:
        break
    c.setblocking(False)
    try:
        got += len(c.recv(1 << 16))
    except BlockingIOError:
        pass
print(got, flush=True)
"""
SYSTEM_PYTHON = "/usr/bin/python3"  # one another user may run (the venv's may be under /root)


@pytest.mark.parametrize("which", [PYTHON, NATIVE_PY])
def test_a_zygote_address_held_by_another_user_gets_nothing_and_the_call_runs_here(
    own: Pkg, tmp_path: Path, which: str
) -> None:
    if os.getuid() != 0 or not os.access(SYSTEM_PYTHON, os.X_OK):
        message = f"holding the address as another user needs root and {SYSTEM_PYTHON}"
        if os.environ.get("CI") == "true":
            pytest.fail(message)
        pytest.skip(message)
    holder = subprocess.Popen(
        [SYSTEM_PYTHON, "-S", "-c", _HOLDER, own.address.hex()],
        stdin=subprocess.PIPE,
        stdout=subprocess.PIPE,
        text=True,
        user=65534,
        group=65534,
        extra_groups=[],
        cwd="/",
    )
    try:
        assert holder.stdout is not None
        assert holder.stdin is not None
        assert holder.stdout.readline() == "ready\n"
        returncode, out, err = _end(
            _start(own.prefix(which), ["version", "--client"], tmp_path, _env())
        )
        holder.stdin.close()
        received = holder.stdout.readline()
    finally:
        holder.kill()
        holder.wait(timeout=60)
    assert (returncode, err) == (0, b"")
    assert b"Tag:         v1.7.0" in out  # run by the Python launcher in its own process
    assert received == "0\n"  # no request, environment or stream went to the other user


def test_the_python_launcher_speaks_only_to_a_zygote_of_its_own_user(
    monkeypatch: pytest.MonkeyPatch, tmp_path: Path
) -> None:
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(str(tmp_path / "s"))
    listener.listen(1)
    client = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    try:
        client.connect(str(tmp_path / "s"))
        assert launcher._own_user(client)
        monkeypatch.setattr(os, "getuid", lambda: 12345)
        assert not launcher._own_user(client)
    finally:
        client.close()
        listener.close()

"""talosim's fork server (talosim/zygote.py) and its launcher (talosim/launcher.py): a call it
serves must be indistinguishable from the same call run in a fresh process — output, exit code,
files, umask, signals — and it must never serve code older than the source."""

from __future__ import annotations

import json
import os
import shutil
import signal
import socket
import stat
import subprocess
import sys
import threading
import time
from concurrent.futures import ThreadPoolExecutor
from pathlib import Path
from typing import Any

import pytest

from talosim import launcher
from tests.emulated.test_talosim_native import installed_native
from tests.sim import TALOSCTL, Sim

# (case id, argv, files the call writes relative to its cwd, extra environment, zygote mode)
REQUIRE = "require"  # the call must be served by a zygote
CASES = [
    ("client-version", ["version", "--client"], [], {}, REQUIRE),
    ("unknown-command", ["bogus"], [], {}, REQUIRE),
    ("unknown-flag", ["version", "--bogus"], [], {}, REQUIRE),
    ("help", ["apply-config", "--help"], [], {}, REQUIRE),
    ("gen-secrets-in-cwd", ["gen", "secrets", "-o", "s.yaml"], ["s.yaml"], {}, REQUIRE),
    ("talosconfig-from-env", ["version", "-n", "127.0.10.1"], [], {"TALOSCONFIG": "no"}, REQUIRE),
    # one zygote serves every release (read per call): its worker refuses one talosim does not
    # play with the fresh process's error
    ("bad-talosim-version", ["version", "--client"], [], {"TALOSIM_VERSION": "v1.6.7"}, REQUIRE),
]


# How a served call is made: "require" (the Python launcher, TALOSIM_ZYGOTE=require), or
# "native" (talosim/native, scripts/setup's build; TALOSIM_ZYGOTE unset, which it requires, and
# a zygote already up: `_warm`)
NATIVE = "native"
LAUNCHERS = [REQUIRE, NATIVE]


def _run(sim: Sim, cwd: Path, argv: list[str], mode: str, env: dict[str, str]) -> Any:
    cwd.mkdir(parents=True, exist_ok=True)
    if mode == NATIVE:
        _warm(sim)
    return subprocess.run(
        [*_prefix(mode), *argv],
        cwd=cwd,
        env=_env({**sim.env, **env}, mode),
        capture_output=True,
        text=True,
        umask=0o027,
        timeout=60,
        check=False,
    )


def _prefix(mode: str, script: str = TALOSCTL) -> list[str]:
    return [installed_native()] if mode == NATIVE else [sys.executable, "-S", script]


def _env(env: dict[str, str], mode: str) -> dict[str, str]:
    if mode == NATIVE:
        # Were the call left to the Python launcher (the native one's fallback), that
        # interpreter's start-up would print its import times on stderr, which every comparison
        # with a fresh process's stderr would catch; a served call starts no interpreter.
        env = {k: v for k, v in env.items() if k != "TALOSIM_ZYGOTE"}
        return {**env, "PYTHONPROFILEIMPORTTIME": "1"}
    return {**env, "TALOSIM_ZYGOTE": mode}


def _warm(sim: Sim) -> None:
    """Have the zygote up (the one the test session's interpreter and talosim make: the native
    launcher's own), so that the native launcher's next call is served."""
    r = _run(sim, sim.base / "warm", ["version", "--client"], REQUIRE, {})
    assert r.returncode == 0, r.stderr


def _zygote_pid(address: bytes) -> int:
    """The process listening on the zygote's abstract socket (from /proc/net/unix)."""
    name = "@" + address[1:].decode()
    inodes = {
        line.split()[6]
        for line in Path("/proc/net/unix").read_text().splitlines()[1:]
        if line.split()[-1] == name and int(line.split()[3], 16) & 0x10000  # __SO_ACCEPTCON
    }
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                links = {os.readlink(fd) for fd in (entry / "fd").iterdir()}
            except OSError:
                continue
            if any(f"socket:[{inode}]" in links for inode in inodes):
                return int(entry.name)
    raise AssertionError(f"no zygote listens on {name}")


def _children(pid: int) -> list[int]:
    found = []
    for entry in Path("/proc").iterdir():
        if entry.name.isdigit():
            try:
                fields = (entry / "stat").read_text().rsplit(")", 1)[1].split()
            except OSError:
                continue
            if int(fields[1]) == pid:
                found.append(int(entry.name))
    return found


@pytest.mark.parametrize(
    ("argv", "files", "env", "mode"), [c[1:] for c in CASES], ids=[c[0] for c in CASES]
)
@pytest.mark.parametrize("served_by", LAUNCHERS)
def test_a_served_call_is_the_same_as_the_call_in_a_fresh_process(
    sim: Sim, argv: list[str], files: list[str], env: dict[str, str], mode: str, served_by: str
) -> None:
    here = _run(sim, sim.base / "here", argv, "0", env)
    served = _run(sim, sim.base / "served", argv, served_by if mode == REQUIRE else mode, env)
    assert (served.returncode, served.stdout, served.stderr) == (
        here.returncode,
        here.stdout,
        here.stderr,
    )
    for rel in files:
        a, b = sim.base / "here" / rel, sim.base / "served" / rel
        # same place (the caller's cwd), same mode (the caller's umask, 0o027 here)
        assert stat.S_IMODE(b.stat().st_mode) == stat.S_IMODE(a.stat().st_mode)
        assert b.read_text().splitlines()[0] == a.read_text().splitlines()[0]


def _started_with(ignored: tuple[signal.Signals, ...]) -> Any:
    """A preexec_fn: the forwarded signals ignored, as `nohup` or `cmd &` in a script leave them,
    or else at their default, whatever pytest inherited (`cmd &` ignores SIGINT: a suite started
    so failed the SIGINT test, its call never interrupted)."""

    def preexec() -> None:
        for name in launcher.FORWARDED:
            signum = getattr(signal, name)
            signal.signal(signum, signal.SIG_IGN if signum in ignored else signal.SIG_DFL)

    return preexec


def _hung_version(
    cluster: Sim,
    mode: str,
    launcher: str = TALOSCTL,
    env: dict[str, str] | None = None,
    ignore: tuple[signal.Signals, ...] = (),
) -> subprocess.Popen[str]:
    """A `version` call held by a hang fault on a frozen clock, until it is interrupted."""
    cluster.ok_inproc("fleet", "clock", "--freeze")
    cluster.ok_inproc(
        "fault", "add", "--node", "127.0.10.2", "--kind", "hang", "--seconds", "60",
        "--command", "version", "--times", "1",
    )  # fmt: skip
    if mode == NATIVE:
        _warm(cluster)
    proc = subprocess.Popen(
        [*_prefix(mode, launcher), *cluster.tc("version", "-n", "127.0.10.2")],
        cwd=cluster.cwd,
        env=_env({**cluster.env, **(env or {})}, mode),
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
        preexec_fn=_started_with(ignore),
    )
    # the call is in its hang once the fault is used up
    while json.loads(cluster.ok_inproc("fault", "list").stdout)[0]["times"] != 0:
        assert proc.poll() is None, proc.communicate()
    if mode == NATIVE:  # served by the native launcher itself, not the Python one it can exec
        assert os.readlink(f"/proc/{proc.pid}/exe") == installed_native()
    return proc


@pytest.mark.parametrize("signame", ["SIGINT", "SIGTERM"])
def test_a_signal_to_the_caller_reaches_the_command_as_it_would_a_fresh_process(
    cluster: Sim, signame: str
) -> None:
    codes = []
    for mode in ("0", *LAUNCHERS):
        proc = _hung_version(cluster, mode)
        proc.send_signal(getattr(signal, signame))
        proc.communicate(timeout=30)
        codes.append(proc.returncode)
        cluster.ok_inproc("fault", "clear")
    # SIGINT: KeyboardInterrupt, exit 130; SIGTERM: killed by the signal (-15)
    assert codes == [130 if signame == "SIGINT" else -signal.SIGTERM] * 3


def test_a_signal_the_caller_ignores_stays_ignored_as_in_a_fresh_process(cluster: Sim) -> None:
    codes = []
    for mode in ("0", *LAUNCHERS):
        proc = _hung_version(cluster, mode, ignore=(signal.SIGHUP,))
        proc.send_signal(signal.SIGHUP)
        cluster.ok_inproc("fleet", "clock", "--advance", "61s")  # the hang ends by itself
        out, _err = proc.communicate(timeout=30)
        codes.append((proc.returncode, "Tag:" in out))
        cluster.ok_inproc("fault", "clear")
    assert codes == [(0, True)] * 3


def test_a_node_command_started_with_sigint_ignored_still_stops_on_it_as_talosctl_does(
    cluster: Sim,
) -> None:
    # `cmd &` in a script starts cmd with SIGINT ignored; talosctl's node session asks for it
    # (signal.Notify), which Go honours even then
    codes = []
    for mode in ("0", *LAUNCHERS):
        proc = _hung_version(cluster, mode, ignore=(signal.SIGINT,))
        proc.send_signal(signal.SIGINT)
        proc.communicate(timeout=30)
        codes.append(proc.returncode)
        cluster.ok_inproc("fault", "clear")
    assert codes == [130] * 3


@pytest.mark.parametrize("served_by", LAUNCHERS)
def test_killing_the_caller_kills_the_command(cluster: Sim, served_by: str) -> None:
    proc = _hung_version(cluster, served_by)
    # the zygote is shared with other tests' calls: watch the processes serving calls now,
    # the hung one among them (the others end by themselves)
    # (the zygote's own children: an emulated API server a call forks is its grandchild, then
    # detached, and a program a call starts is a child of the worker)
    serving = _children(_zygote_pid(launcher.address(cluster.env)))
    assert serving, "the hung call runs under the zygote"
    proc.kill()
    proc.wait(timeout=30)
    # no clock advance: only the kill can end the hung worker
    deadline = time.monotonic() + 30
    while _alive(serving) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(serving) == []


def test_a_command_dies_with_its_zygote_and_its_caller_fails(cluster: Sim, tmp_path: Path) -> None:
    # a zygote of its own (a copy of talosim): killing the shared one would fail other calls
    copy = _Copy(tmp_path / "copy", "require")
    proc = _hung_version(cluster, "require", str(copy.launcher), {"PYTHONPATH": str(copy.pkg)})
    zygote_pid = _zygote_pid(copy.address())
    workers = _children(zygote_pid)
    assert workers, "the hung call runs in a worker of the copy's zygote"
    os.kill(zygote_pid, signal.SIGKILL)
    _out, err = proc.communicate(timeout=30)
    assert proc.returncode == 1
    assert err.endswith("talosim: the emulator's worker died without an exit status\n")
    # no clock advance: only the zygote's death can end the hung worker
    deadline = time.monotonic() + 30
    while _alive(workers) and time.monotonic() < deadline:
        time.sleep(0.05)
    assert _alive(workers) == []


@pytest.mark.parametrize("served_by", LAUNCHERS)
def test_concurrent_calls_are_each_served_as_in_a_fresh_process(sim: Sim, served_by: str) -> None:
    # the zygote reads the requests as they arrive, interleaved; all but one are larger than a
    # socket's buffer, so each arrives in parts
    big = {f"TALOSIM_TEST_BIG_{i}": "x" * 100_000 for i in range(4)}
    argv = ["version", "--client"]
    here = _run(sim, sim.base / "here", argv, "0", {})
    with ThreadPoolExecutor(6) as pool:
        served = list(
            pool.map(
                lambda i: _run(sim, sim.base / f"served-{i}", argv, served_by, big if i else {}),
                range(12),
            )
        )
    assert {(r.returncode, r.stdout, r.stderr) for r in served} == {
        (here.returncode, here.stdout, here.stderr)
    }


def _alive(pids: list[int]) -> list[int]:
    """Those of pids that still run (a zombie has ended)."""
    alive = []
    for pid in pids:
        try:
            state = Path(f"/proc/{pid}/stat").read_text().rsplit(")", 1)[1].split()[0]
        except OSError:
            continue
        if state not in ("Z", "X"):
            alive.append(pid)
    return alive


class _Copy:
    """A copy of the talosim package: its zygotes are its own (their identity names the copy)."""

    def __init__(self, tmp_path: Path, mode: str) -> None:
        self.pkg = tmp_path / "pkg"
        shutil.copytree(
            Path(launcher.__file__).parent,
            self.pkg / "talosim",
            ignore=shutil.ignore_patterns("__pycache__"),
        )
        self.launcher = self.pkg / "talosim" / "bin" / "talosctl"
        self.cwd = tmp_path
        self.env = {
            **{k: v for k, v in os.environ.items() if not k.startswith("TALOS")},
            "HOME": str(tmp_path),
            "TALOSIM_STATE": str(tmp_path / "state"),
            "TALOSIM_ZYGOTE": mode,
            "PYTHONPATH": str(self.pkg),
        }

    def version(self) -> subprocess.CompletedProcess[str]:
        return subprocess.run(
            [sys.executable, "-S", str(self.launcher), "version", "--client"],
            env=self.env,
            cwd=self.cwd,
            capture_output=True,
            text=True,
            timeout=60,
            check=False,
        )

    def address(self) -> bytes:
        """The copy's zygote address, as the copy itself computes it."""
        probe = "import talosim.launcher as z; print(z.address().hex())"
        hexed = subprocess.run(
            [sys.executable, "-S", "-c", probe],
            env=self.env,
            cwd=self.cwd,  # not the repository's: its talosim would come first on the path
            capture_output=True,
            text=True,
            check=True,
        ).stdout.strip()
        return bytes.fromhex(hexed)


def test_a_changed_source_is_never_served_stale(tmp_path: Path) -> None:
    copy = _Copy(tmp_path, "require")
    try:
        assert "SHA:         70fb41ff" in copy.version().stdout
        data = copy.pkg / "talosim" / "data" / "releases.yaml"
        data.write_text(data.read_text().replace('sha: "70fb41ff"', 'sha: "0dd5ca1e"'))
        assert "SHA:         0dd5ca1e" in copy.version().stdout
    finally:
        os.kill(_zygote_pid(copy.address()), signal.SIGTERM)


def test_a_zygote_that_drops_the_call_before_it_runs_leaves_it_to_run_in_process(
    tmp_path: Path,
) -> None:
    # What the backlog of a zygote that is exiting (idle, stale source) gets: the connection is
    # closed with the request unread, which the caller sees as ECONNRESET.
    copy = _Copy(tmp_path, "1")
    listener = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
    listener.bind(copy.address())
    listener.listen(1)
    dropped: list[bool] = []

    def drop() -> None:
        conn, _ = listener.accept()
        conn.recv(1, socket.MSG_PEEK)  # the request is there, unread: closing resets it
        conn.close()
        dropped.append(True)

    thread = threading.Thread(target=drop)
    thread.start()
    try:
        r = copy.version()
    finally:
        thread.join(timeout=60)
        listener.close()
    assert dropped == [True]
    assert r.returncode == 0, r.stderr
    assert "Tag:         v1.7.0" in r.stdout
    assert r.stderr == ""


@pytest.mark.skipif(os.getuid() != 0, reason="needs root to connect as another user")
def test_another_user_cannot_use_the_zygote(sim: Sim) -> None:
    assert _run(sim, sim.cwd, ["version", "--client"], "require", {}).returncode == 0
    address = launcher.address(sim.env)
    reader, writer = os.pipe()
    pid = os.fork()
    if pid == 0:  # the child: another user's process knocking at the zygote
        code = 1
        try:
            os.close(reader)
            os.setuid(65534)
            s = socket.socket(socket.AF_UNIX, socket.SOCK_STREAM)
            s.connect(address)
            os.write(writer, repr(s.recv(1)).encode())
            code = 0
        except BaseException as e:
            os.write(writer, repr(e).encode())
        finally:
            os._exit(code)
    os.close(writer)
    _, status = os.waitpid(pid, 0)
    answer = os.read(reader, 64)
    os.close(reader)
    assert os.waitstatus_to_exitcode(status) == 0, answer
    # closed without an answer: a served call would have got b"+"
    assert answer == b"b''"

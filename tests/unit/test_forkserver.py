"""tests/forkserver.py: a forked `python -m invoke` acts as a fresh one, leaving nothing behind."""

from __future__ import annotations

import json
import os
import signal
import subprocess
from pathlib import Path

import pytest

from tests import forkserver
from tests.conftest import ROOT

# The tasks these tests run: each reports what its process sees, on stdout as JSON.
TASKS = r'''
import json, os, signal, sys, time
from invoke import task


def _umask():
    for line in open("/proc/self/status"):
        if line.startswith("Umask:"):
            return line.split()[1]


@task
def state(c):
    """What a task can see of its process that a fork could have kept from its server."""
    import gc, sysconfig, tempfile, threading
    import rich

    fds = sorted(int(fd) for fd in os.listdir("/proc/self/fd"))
    streams = {}
    for name in ("stdin", "stdout", "stderr"):
        s = getattr(sys, name)
        streams[name] = [
            type(s).__name__, s.encoding, s.errors, s.line_buffering, s.write_through, s.name,
            s.mode, type(s.buffer).__name__, s.fileno(), s is getattr(sys, f"__{name}__"),
        ]
    print(json.dumps({
        "argv": sys.argv, "orig_argv": sys.orig_argv, "executable": sys.executable,
        "path": sys.path, "cwd": os.getcwd(), "env": dict(os.environ), "umask": _umask(),
        "signals": {
            s.name: repr(signal.getsignal(s)) for s in signal.valid_signals()
            if isinstance(s, signal.Signals)
        },
        "blocked": sorted(int(s) for s in signal.pthread_sigmask(signal.SIG_BLOCK, [])),
        "flags": list(sys.flags), "streams": streams, "fds": fds,
        "main": sorted(vars(sys.modules["__main__"])),
        "rich_cwd": rich._IMPORT_CWD, "tmp": tempfile.gettempdir(),
        "userbase": sysconfig.get_config_var("userbase"), "pgrp": os.getpgrp(),
        "threads": threading.active_count(), "gc": gc.isenabled(),
        "forkserver": "tests.forkserver" in sys.modules,
    }))


@task
def probe(c, module="wave"):
    """Whether module was imported before the task, env FOO, cwd, umask; then change them all."""
    had = module in sys.modules
    __import__(module)
    print(json.dumps({
        "had": had, "foo": os.environ.get("FOO"), "leak": os.environ.get("LEAK"),
        "cwd": os.getcwd(), "umask": _umask(), "ppid": os.getppid(),
        "path": sys.path, "hup": repr(signal.getsignal(signal.SIGHUP)),
    }))
    os.environ["LEAK"] = "1"
    os.chdir("/")
    os.umask(0o777)
    signal.signal(signal.SIGHUP, signal.SIG_IGN)


@task
def code(c, value=0):
    sys.exit(int(value))


@task
def die(c, sig="TERM"):
    os.kill(os.getpid(), signal.Signals["SIG" + sig])
    time.sleep(60)


@task
def boom(c):
    raise RuntimeError("boom")


@task
def streams(c):
    print("out 1 \u00fc")
    print("err 1", file=sys.stderr)
    sys.stdout.write("a\r\nb\rc\n")
    sys.stderr.write("e" * 200_000 + "\n")  # more than a pipe holds, before stdout's
    sys.stdout.write("o" * 200_000 + "\n")
    print("err 2", file=sys.stderr)


@task
def hang(c, pidfile=""):
    with open(pidfile + ".w", "w") as f:
        f.write(open("/proc/self/stat").read())  # pid and start time: pids are reused
    os.rename(pidfile + ".w", pidfile)
    time.sleep(600)
'''


@pytest.fixture(scope="module")
def home(tmp_path_factory: pytest.TempPathFactory) -> Path:
    return tmp_path_factory.mktemp("home")


@pytest.fixture
def repo(tmp_path: Path) -> Path:
    d = tmp_path / "repo"
    d.mkdir()
    (d / "tasks.py").write_text(TASKS)
    return d


def _env(home: Path, **extra: str) -> dict[str, str]:
    """As tests/emulated/e2e.py builds a call's environment: PYTHONPATH is the source tree."""
    env = {k: v for k, v in os.environ.items() if not k.startswith(("TALOS", "KUBECONFIG"))}
    return {**env, "HOME": str(home), "PYTHONPATH": str(ROOT), **extra}


@pytest.fixture(scope="module", autouse=True)
def _server_of_this_identity(home: Path) -> None:
    """The calls here fork from a server of their own identity (an earlier test may have
    started this process's server with another one, whose calls would all run fresh)."""
    servers = forkserver._server
    if servers and servers[0].identity != forkserver.identity(_env(home)):
        forkserver.stop()


@pytest.fixture(autouse=True)
def _forking_on(monkeypatch: pytest.MonkeyPatch) -> None:
    """These tests are about the forked path: they run it under TALOSPROV_TEST_FORK=0 too."""
    monkeypatch.setenv(forkserver.SWITCH, "1")


def _run(repo: Path, home: Path, *args: str, fresh: bool = False) -> dict:
    r = forkserver.invoke(args, cwd=repo, env=_env(home), timeout=120, fresh=fresh)
    assert r.returncode == 0, r.stderr
    return json.loads(r.stdout)


def _pid_and_start(stat: str) -> tuple[int, int]:
    """pid and start time (clock ticks after boot) from a /proc/<pid>/stat line (proc(5))."""
    pid, rest = stat.split(" ", 1)
    return int(pid), int(rest.rsplit(")", 1)[1].split()[19])


def _counted(key: str) -> int:
    return forkserver.stats.get(key, 0)


def test_a_forked_call_sees_its_process_as_a_fresh_interpreter_does(
    repo: Path, home: Path, tmp_path: Path
) -> None:
    (tmp_path / "tmp").mkdir()
    env = _env(home, TMPDIR=str(tmp_path / "tmp"), FOO="bar")
    _run(repo, home, "probe")  # the server runs: it started before the changes below
    old_mask = os.umask(0o027)
    old_hup = signal.signal(signal.SIGHUP, signal.SIG_IGN)  # an ignored signal stays ignored
    signal.pthread_sigmask(signal.SIG_BLOCK, [signal.SIGUSR2])  # a blocked one stays blocked
    try:
        forked_before = _counted("forked")
        forked = forkserver.invoke(["state"], cwd=repo, env=env, timeout=120)
        assert _counted("forked") == forked_before + 1
        fresh = forkserver.invoke(["state"], cwd=repo, env=env, timeout=120, fresh=True)
    finally:
        os.umask(old_mask)
        signal.signal(signal.SIGHUP, old_hup)
        signal.pthread_sigmask(signal.SIG_UNBLOCK, [signal.SIGUSR2])
    assert (forked.returncode, forked.stderr) == (fresh.returncode, fresh.stderr) == (0, "")
    seen, expected = json.loads(forked.stdout), json.loads(fresh.stdout)
    assert seen == expected
    assert expected["umask"] == "0027"
    assert expected["signals"]["SIGHUP"] == "<Handlers.SIG_IGN: 1>"
    assert expected["fds"] == [0, 1, 2, 3]
    assert not expected["forkserver"]
    assert expected["blocked"] == [signal.SIGUSR2]


def test_returncode_is_the_exit_code_or_the_negative_signal_as_for_a_fresh_interpreter(
    repo: Path, home: Path
) -> None:
    for args in (["code"], ["code", "--value", "3"], ["code", "--value", "300"]):
        r = forkserver.invoke(args, cwd=repo, env=_env(home), timeout=120)
        assert r.returncode == int(args[-1]) % 256 if len(args) > 1 else r.returncode == 0
    for sig in ("TERM", "KILL", "INT"):
        args = ["die", "--sig", sig]
        forked = forkserver.invoke(args, cwd=repo, env=_env(home), timeout=120)
        fresh = forkserver.invoke(args, cwd=repo, env=_env(home), timeout=120, fresh=True)
        assert forked.returncode == fresh.returncode, (sig, forked.stderr, fresh.stderr)
        assert (forked.stdout, forked.stderr) == (fresh.stdout, fresh.stderr)
    assert forked.returncode == 1  # invoke's Program.run turns KeyboardInterrupt into exit 1
    # an exception out of a task: the interpreter prints it (from runpy's frame on) and exits 1
    forked = forkserver.invoke(["boom"], cwd=repo, env=_env(home), timeout=120)
    fresh = forkserver.invoke(["boom"], cwd=repo, env=_env(home), timeout=120, fresh=True)
    assert (forked.returncode, forked.stderr) == (fresh.returncode, fresh.stderr)
    assert forked.stderr.startswith("Traceback")
    assert "RuntimeError: boom" in forked.stderr
    r = forkserver.invoke(["die", "--sig", "TERM"], cwd=repo, env=_env(home), timeout=120)
    assert r.returncode == -signal.SIGTERM


def test_stdout_and_stderr_come_back_apart_decoded_as_subprocess_run_decodes_them(
    repo: Path, home: Path
) -> None:
    forked = forkserver.invoke(["streams"], cwd=repo, env=_env(home), timeout=120)
    fresh = forkserver.invoke(["streams"], cwd=repo, env=_env(home), timeout=120, fresh=True)
    assert forked.returncode == 0, forked.stderr
    assert forked.stdout == fresh.stdout
    assert forked.stderr == fresh.stderr
    assert forked.stdout.startswith("out 1 \u00fc\na\nb\nc\n")
    assert "e" not in forked.stdout
    assert forked.stderr == "err 1\n" + "e" * 200_000 + "\nerr 2\n"


def test_a_call_changes_nothing_the_next_one_sees(repo: Path, home: Path, tmp_path: Path) -> None:
    other = tmp_path / "other"
    other.mkdir()
    (other / "tasks.py").write_text(TASKS)
    old_mask = os.umask(0o077)
    try:
        first = forkserver.invoke(
            ["probe"], cwd=repo, env=_env(home, FOO="1"), timeout=120
        )  # imports wave, sets LEAK, changes cwd, umask and SIGHUP
    finally:
        os.umask(old_mask)
    second = forkserver.invoke(["probe"], cwd=other, env=_env(home), timeout=120)
    a, b = json.loads(first.stdout), json.loads(second.stdout)
    assert a["ppid"] == b["ppid"] != os.getpid()  # both forked from the server
    assert (a["had"], a["foo"], a["leak"], a["cwd"], a["umask"]) == (
        False, "1", None, str(repo), "0077",
    )  # fmt: skip
    assert (b["had"], b["foo"], b["leak"], b["cwd"], b["umask"]) == (
        False, None, None, str(other), f"{old_mask:04o}",
    )  # fmt: skip
    assert b["hup"] == "<Handlers.SIG_DFL: 0>"
    assert a["path"][0] == str(repo)
    assert b["path"][0] == str(other)


def test_a_timeout_kills_the_child_and_raises_timeout_expired(
    repo: Path, home: Path, tmp_path: Path
) -> None:
    pidfile = tmp_path / "pid"
    # a timeout short enough to be cheap; longer ones until the child had started in time (a
    # loaded machine), so that the test always sees the child it must have killed
    for timeout in (2, 10, 60):
        with pytest.raises(subprocess.TimeoutExpired) as e:
            forkserver.invoke(
                ["hang", "--pidfile", str(pidfile)], cwd=repo, env=_env(home), timeout=timeout
            )
        assert e.value.timeout == timeout
        if pidfile.exists():
            break
    killed = _pid_and_start(pidfile.read_text())
    try:  # killed, and reaped before invoke raised: gone, or its pid is another process's now
        now = _pid_and_start(Path(f"/proc/{killed[0]}/stat").read_text())
    except FileNotFoundError:
        now = None
    assert now != killed
    r = forkserver.invoke(["code", "--value", "4"], cwd=repo, env=_env(home), timeout=120)
    assert r.returncode == 4  # the server serves on


def test_a_call_with_another_pythonpath_runs_as_a_fresh_interpreter(
    repo: Path, home: Path, tmp_path: Path
) -> None:
    extra = tmp_path / "lib"
    extra.mkdir()
    (extra / "only_here.py").write_text("")
    env = _env(home, PYTHONPATH=os.pathsep.join([str(ROOT), str(extra)]))
    fallbacks = _counted("environment")
    r = forkserver.invoke(["probe", "--module", "only_here"], cwd=repo, env=env, timeout=120)
    assert r.returncode == 0, r.stderr
    seen = json.loads(r.stdout)
    assert seen["ppid"] == os.getpid()
    assert str(extra) in seen["path"]
    assert _counted("environment") == fallbacks + 1
    assert _run(repo, home, "probe")["ppid"] != os.getpid()  # the server's own: forked


def test_talosprov_test_fork_0_runs_every_call_as_a_fresh_interpreter(
    repo: Path, home: Path, monkeypatch: pytest.MonkeyPatch
) -> None:
    monkeypatch.setenv(forkserver.SWITCH, "0")
    disabled = _counted("disabled")
    assert _run(repo, home, "probe")["ppid"] == os.getpid()
    assert _counted("disabled") == disabled + 1


def test_a_stopped_server_is_started_again_by_the_next_call(repo: Path, home: Path) -> None:
    assert _run(repo, home, "probe")["ppid"] != os.getpid()
    first = forkserver._server[0].proc
    forkserver.stop()
    assert first.returncode == 0
    assert not forkserver._server
    assert _run(repo, home, "probe")["ppid"] not in (os.getpid(), first.pid)
    assert forkserver._server[0].proc.pid != first.pid

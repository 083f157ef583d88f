"""Crash safety: a task killed with SIGKILL or SIGTERM leaves no plaintext secret behind once one
more task has run, stale temporary files are swept or reported, and status says what a crash left.
"""

from __future__ import annotations

import json
import os
import signal
import subprocess
import sys
import time
from pathlib import Path

import yaml

from talosprov.model import Repo
from talosprov.redact import bundle_values
from talosprov.secrets import decrypt
from tests.emulated.e2e import TALOSIM, FleetRepo


def _ok(r: subprocess.CompletedProcess[str]) -> str:
    assert r.returncode == 0, f"exit {r.returncode}\nstdout:\n{r.stdout}\nstderr:\n{r.stderr}"
    return r.stdout + r.stderr


def _secrets(repo: FleetRepo) -> dict[str, str]:
    """value -> path of every private value of the demo bundle (keys, tokens, secrets)."""
    fleet = Repo(repo.root)
    bundle = yaml.safe_load(decrypt(fleet, fleet.find("demo")))
    values = {v: p for v, p in bundle_values(bundle).items() if not p.endswith(".crt")}
    assert len(values) >= 8
    return values


def _plaintext(values: dict[str, str], *roots: Path) -> list[str]:
    """Files under roots that hold a private value of the bundle (the encrypted bundle, git's
    compressed objects, the age key and the emulated nodes excepted)."""
    found = []
    for root in roots:
        for p in root.rglob("*"):
            # .talosim/ stands for the nodes themselves, which do hold their configs
            skip = {".git", ".talosim"}
            if not p.is_file() or skip & set(p.parts) or p.name == "keys.txt":
                continue
            if p.suffix == ".age":
                continue
            data = p.read_bytes()
            hits = [where for v, where in values.items() if v.encode() in data]
            if hits:
                found.append(f"{p} ({', '.join(sorted(hits)[:3])})")
    return found


def _start(repo: FleetRepo, tmpdir: Path, *args: str, env: dict[str, str] | None = None):
    tmpdir.mkdir(exist_ok=True)
    return subprocess.Popen(
        [sys.executable, "-m", "invoke", *args],
        cwd=repo.root,
        env={**repo.env, "TMPDIR": str(tmpdir), **(env or {})},
        stdout=subprocess.PIPE,
        stderr=subprocess.PIPE,
        text=True,
    )


def _wait_for(cond, what: str, timeout: float = 120) -> None:
    deadline = time.monotonic() + timeout
    while not cond():
        assert time.monotonic() < deadline, f"timed out waiting for {what}"
        time.sleep(0.1)


def _private(repo: FleetRepo) -> list[Path]:
    d = repo.root / ".state" / "private"
    return sorted(d.iterdir()) if d.is_dir() else []


def _hang_apply(repo: FleetRepo, seconds: int) -> None:
    repo.fault(
        "--node", "127.0.10.4", "--kind", "hang", "--seconds", str(seconds),
        "--command", "apply-config", "--times", "1",
    )  # fmt: skip


def _hanging(repo: FleetRepo) -> bool:
    """The apply to 127.0.10.4 is in its hang (the fault is used up) with plaintext on disk."""
    faults = json.loads(repo.talosim("fault", "list").stdout)
    return faults[0]["times"] == 0 and bool(_private(repo))


def test_sigkill_during_install_leaves_nothing_after_the_next_task(
    demo_repo: FleetRepo, tmp_path: Path
) -> None:
    _hang_apply(demo_repo, 60)
    tmp = tmp_path / "tmp"
    proc = _start(demo_repo, tmp, "install", "--cluster", "demo")
    _wait_for(lambda: _hanging(demo_repo), "install to apply configs")
    proc.kill()
    proc.communicate(timeout=30)
    # the talosctl child outlives its killed parent, as a real one would; the hang it is in
    # ends when the emulated clock passes it, not after a minute of wall time
    demo_repo.clock("--advance", "60s")
    values = _secrets(demo_repo)
    left = _plaintext(values, demo_repo.root)
    assert left, "the test must see the plaintext a SIGKILL leaves (else it proves nothing)"
    assert all("/.state/private/" in f for f in left), left
    assert all(p.stat().st_mode & 0o777 == 0o700 for p in _private(demo_repo))
    assert (demo_repo.root / ".state").stat().st_mode & 0o777 == 0o700
    lock = demo_repo.root / ".state" / "talos-demo" / "lock"
    assert lock.stat().st_mode & 0o777 == 0o600

    st = demo_repo.invoke("status", "--cluster", "demo", extra_env={"TMPDIR": str(tmp)})
    assert "Traceback" not in st.stderr
    assert "stale lock info: install by pid" in st.stderr
    assert "removed 1 leftover(s) of an earlier run that was killed" in st.stderr
    assert _private(demo_repo) == []
    assert _plaintext(values, demo_repo.root, tmp, demo_repo.home) == []
    assert list(tmp.iterdir()) == []
    _ok(demo_repo.invoke("install", "--cluster", "demo"))  # and the re-run resumes


def test_sigterm_during_install_cleans_up_before_exiting(
    demo_repo: FleetRepo, tmp_path: Path
) -> None:
    _hang_apply(demo_repo, 4)
    tmp = tmp_path / "tmp"
    proc = _start(demo_repo, tmp, "install", "--cluster", "demo")
    _wait_for(lambda: _hanging(demo_repo), "install to apply configs")
    proc.send_signal(signal.SIGTERM)
    _, err = proc.communicate(timeout=120)
    assert proc.returncode == 143, err
    assert "terminated: no plaintext secret" in err
    assert "Traceback" not in err
    assert _private(demo_repo) == []
    assert _plaintext(_secrets(demo_repo), demo_repo.root, tmp, demo_repo.home) == []
    assert list(tmp.iterdir()) == []


def test_sigkill_during_generate_leaves_nothing_after_the_next_task(
    repo: FleetRepo, tmp_path: Path
) -> None:
    _ok(repo.invoke("secrets", "--cluster", "demo"))
    mark = tmp_path / "gen-config-started"
    slow = tmp_path / "talosctl"
    slow.write_text(
        "#!/bin/sh\n"
        f'if [ "$1 $2" = "gen config" ]; then echo $$ > {mark}; exec sleep 120; fi\n'
        f'exec {sys.executable} -m talosim "$@"\n'
    )
    slow.chmod(0o755)
    tmp = tmp_path / "tmp"
    # --full: the committed generated/ is current, so without it nothing would be built
    proc = _start(repo, tmp, "generate", "--full", "--cluster", "demo", env={"TALOSCTL": str(slow)})
    _wait_for(lambda: mark.exists() and mark.read_text().strip() != "", "gen config to start")
    proc.kill()
    proc.communicate(timeout=30)
    values = _secrets(repo)
    assert any("secrets.yaml" in f for f in _plaintext(values, repo.root))
    _ok(repo.invoke("render", "--cluster", "demo", extra_env={"TMPDIR": str(tmp)}))
    assert _plaintext(values, repo.root, tmp, repo.home) == []
    assert list(tmp.iterdir()) == []
    os.kill(int(mark.read_text()), signal.SIGKILL)  # the wrapper's own sleep, by its pid


def test_stale_temporary_files_are_swept_and_fresh_ones_reported(
    repo: FleetRepo, tmp_path: Path
) -> None:
    gen = repo.root / "generated" / "talos-demo"
    stale = gen / "nodes" / ".demo-cp-1.yaml.k2j3h4.tmp"
    fresh = repo.root / "patches" / "talos-demo" / ".all.yaml.a8b7c6.tmp"
    stray = gen / "notes.txt"
    for p in (stale, fresh, stray):
        p.write_text("half\n")
    an_hour_ago = time.time() - 3600
    os.utime(stale, (an_hour_ago, an_hour_ago))
    r = repo.invoke("generate", "--check", "--cluster", "demo", extra_env={"TALOSCTL": TALOSIM})
    assert r.returncode == 1, r.stderr
    assert not stale.exists(), "a stale temporary file must be swept at the start of a task"
    assert "unexpected file patches/talos-demo/.all.yaml.a8b7c6.tmp" in r.stdout
    assert fresh.exists(), "a fresh one may belong to a running task: reported, not removed"


def test_a_signal_before_any_task_runs_says_so(repo: FleetRepo) -> None:
    code = (
        "import os, signal, sys, time\n"
        f"sys.path.insert(0, {str(repo.root)!r})\n"
        "import tasks\n"
        "os.kill(os.getpid(), signal.SIGINT)\n"
        "time.sleep(30)\n"
    )
    r = subprocess.run(
        [sys.executable, "-c", code],
        cwd=repo.root,
        env=repo.env,
        capture_output=True,
        text=True,
        timeout=60,
        check=False,
    )
    assert r.returncode == 130
    assert "interrupted (SIGINT) while no task was running: nothing was changed" in r.stderr


def test_status_exits_non_zero_when_the_cluster_is_unreachable(demo_repo: FleetRepo) -> None:
    r = demo_repo.invoke("status", "--cluster", "demo")
    assert r.returncode == 2, r.stderr  # nodes in maintenance: up, but not a healthy cluster
    assert "5 of 5 node(s) not healthy" in r.stderr
    demo_repo.talosim("fleet", "destroy")
    demo_repo.fleet("127.0.10.1-5", "127.0.10.1-3")
    for i in range(1, 6):
        demo_repo.fault("--node", f"127.0.10.{i}", "--kind", "unreachable")
    r = demo_repo.invoke("status", "--cluster", "demo")
    assert r.returncode == 3, r.stderr
    assert "no node of the cluster answers" in r.stderr
    assert "Traceback" not in r.stderr


def test_the_sweep_spares_a_live_runs_private_folder_and_removes_a_dead_ones(
    tmp_path: Path,
) -> None:
    from talosprov.workflows.runtime import sweep

    fleet = Repo(tmp_path)
    ready = tmp_path / "ready"
    holder = subprocess.Popen(
        [
            sys.executable,
            "-c",
            "import sys, time, pathlib\n"
            "from talosprov.model import Repo\n"
            "from talosprov.secrets import private_dir, write_private\n"
            f"with private_dir(Repo(pathlib.Path({str(tmp_path)!r}))) as d:\n"
            "    write_private(d / 'secrets.yaml', b'plaintext')\n"
            f"    pathlib.Path({str(ready) + '.w'!r}).write_text(str(d))\n"
            f"    pathlib.Path({str(ready) + '.w'!r}).rename({str(ready)!r})\n"
            "    time.sleep(120)\n",
        ],
        env={**os.environ, "PYTHONPATH": str(Path(__file__).resolve().parents[2])},
    )
    try:
        _wait_for(ready.exists, "the other run to make its private folder", timeout=60)
        folder = Path(ready.read_text())
        assert sweep(fleet) == []
        assert (folder / "secrets.yaml").exists(), "a live run's folder must be left alone"
    finally:
        holder.kill()
        holder.wait()
    assert sweep(fleet) == [fleet.rel(folder)]
    assert not folder.exists()

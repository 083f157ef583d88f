"""Start and stop a cluster's emulated API server: one detached process per cluster (pid file in
the state folder), started on demand by the talosctl calls that use the cluster."""

from __future__ import annotations

import contextlib
import hashlib
import os
import signal
import socket
import subprocess
import sys
import time
from pathlib import Path
from typing import Any

from ..state import State, read_json, write_json


def _address(state: State, cid: str, attempt: int) -> str:
    h = hashlib.sha256(f"{state.root}/{cid}/{attempt}".encode()).digest()
    # 127.0.0.0/16 holds the demo nodes and common services: stay out of it.
    return f"127.{1 + h[0] % 250}.{h[1]}.{1 + h[2] % 250}"


def _alive(host: str, port: int) -> bool:
    with contextlib.suppress(OSError), socket.create_connection((host, port), timeout=0.3):
        return True
    return False


def pidfile(state: State, cid: str) -> Path:
    return state.root / "kubeapi" / f"{cid}.json"


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
        fd = os.open(
            state.root / "kubeapi" / f"{cluster['id']}.log",
            os.O_WRONLY | os.O_CREAT | os.O_APPEND,
            0o600,
        )
        log = os.fdopen(fd, "ab")
        proc = subprocess.Popen(
            [
                sys.executable,
                "-m",
                "talosim",
                "kubeapi",
                "serve",
                "--cluster-id",
                cluster["id"],
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
        log.close()  # the server process keeps its own copy
        deadline = time.time() + 10
        while time.time() < deadline:
            if proc.poll() is not None:
                break
            if _alive(host, port):
                write_json(
                    pidfile(state, cluster["id"]), {"host": host, "port": port, "pid": proc.pid}
                )
                return f"https://{host}:{port}"
            time.sleep(0.05)
        if proc.poll() is None:
            proc.kill()
    raise RuntimeError(
        "emulated API server failed to start; see "
        + str(state.root / "kubeapi" / f"{cluster['id']}.log")
    )


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

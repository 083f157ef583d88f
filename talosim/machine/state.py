"""The emulator's state folder: one JSON file per node and per cluster, written atomically.

Every mutation happens under one file lock, because talosprov runs talosctl in parallel.
Layout (TALOSIM_STATE, default .talosim/; the folder 0700, every file 0600: they hold keys):
  fleet.json                 fleet settings (stage durations), the emulated clock, schema version
  nodes/<ip>.json            one emulated machine
  clusters/<cluster id>.json etcd/Kubernetes state of a cluster, its API server
  faults.json                injected faults
  calls.jsonl                every talosctl invocation: argv, exit code, times (for tests)
"""

from __future__ import annotations

import contextlib
import json
import os
import tempfile
from collections.abc import Iterator
from pathlib import Path
from typing import Any

from filelock import FileLock

SCHEMA_VERSION = 1

DEFAULT_SETTINGS = {
    "install_seconds": 0.0,
    "reboot_seconds": 0.0,
    "boot_seconds": 0.0,
    "upgrade_seconds": 0.0,
    "kubeapi_idle_seconds": 600.0,
}


def state_dir() -> Path:
    return Path(os.environ.get("TALOSIM_STATE", ".talosim")).resolve()


def write_json(path: Path, data: Any, mode: int = 0o600) -> None:
    path.parent.mkdir(parents=True, exist_ok=True, mode=0o700)
    fd, tmp = tempfile.mkstemp(dir=path.parent, prefix=f".{path.name}.", suffix=".tmp")
    try:
        os.fchmod(fd, mode)
        with os.fdopen(fd, "w") as f:
            json.dump(data, f, indent=1)  # keep order: configs are re-encoded in field order
        os.replace(tmp, path)
    except BaseException:
        with contextlib.suppress(FileNotFoundError):
            os.unlink(tmp)
        raise


def read_json(path: Path) -> Any:
    try:
        return json.loads(path.read_text())
    except FileNotFoundError:
        return None


class State:
    def __init__(self, root: Path | None = None) -> None:
        self.root = root or state_dir()

    # -- locking ---------------------------------------------------------------------------
    @contextlib.contextmanager
    def locked(self) -> Iterator[State]:
        self.root.mkdir(parents=True, exist_ok=True, mode=0o700)
        with FileLock(str(self.root / "state.lock"), timeout=60, mode=0o600):
            yield self

    # -- fleet -----------------------------------------------------------------------------
    @property
    def exists(self) -> bool:
        return (self.root / "fleet.json").exists()

    def fleet(self) -> dict[str, Any]:
        data = read_json(self.root / "fleet.json") or {}
        if data and data.get("schema") != SCHEMA_VERSION:
            raise RuntimeError(
                f"talosim state in {self.root} has schema {data.get('schema')}, "
                f"this talosim needs {SCHEMA_VERSION}: run `python -m talosim fleet destroy`"
            )
        settings = dict(DEFAULT_SETTINGS)
        settings.update(data.get("settings", {}))
        data["settings"] = settings
        return data

    def save_fleet(self, data: dict[str, Any]) -> None:
        data["schema"] = SCHEMA_VERSION
        write_json(self.root / "fleet.json", data)

    # -- nodes -----------------------------------------------------------------------------
    def node_path(self, ip: str) -> Path:
        return self.root / "nodes" / f"{ip}.json"

    def node(self, ip: str) -> dict[str, Any] | None:
        rec = read_json(self.node_path(ip))
        return rec if isinstance(rec, dict) else None

    def save_node(self, rec: dict[str, Any]) -> None:
        write_json(self.node_path(rec["ip"]), rec)

    def nodes(self) -> list[dict[str, Any]]:
        d = self.root / "nodes"
        if not d.is_dir():
            return []
        recs = [read_json(p) for p in sorted(d.glob("*.json"))]
        return [r for r in recs if isinstance(r, dict)]

    # -- clusters --------------------------------------------------------------------------
    def cluster_path(self, cid: str) -> Path:
        return self.root / "clusters" / f"{cid}.json"

    def cluster(self, cid: str) -> dict[str, Any] | None:
        rec = read_json(self.cluster_path(cid))
        return rec if isinstance(rec, dict) else None

    def save_cluster(self, rec: dict[str, Any]) -> None:
        write_json(self.cluster_path(rec["id"]), rec)

    def clusters(self) -> list[dict[str, Any]]:
        d = self.root / "clusters"
        if not d.is_dir():
            return []
        return [r for p in sorted(d.glob("*.json")) if isinstance(r := read_json(p), dict)]

    # -- faults ----------------------------------------------------------------------------
    def faults(self) -> list[dict[str, Any]]:
        return read_json(self.root / "faults.json") or []

    def save_faults(self, faults: list[dict[str, Any]]) -> None:
        write_json(self.root / "faults.json", faults)

    # -- call log --------------------------------------------------------------------------
    def log_call(self, entry: dict[str, Any]) -> None:
        if not self.root.exists():
            return
        line = json.dumps(entry, sort_keys=True) + "\n"
        # O_APPEND writes of one short line are atomic on Linux; no lock needed.
        fd = os.open(self.root / "calls.jsonl", os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        try:
            os.write(fd, line.encode())
        finally:
            os.close(fd)

    def calls(self) -> list[dict[str, Any]]:
        p = self.root / "calls.jsonl"
        if not p.exists():
            return []
        return [json.loads(line) for line in p.read_text().splitlines() if line.strip()]

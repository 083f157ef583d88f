"""Shared fixtures: the repository root, throwaway copies of its tracked files, needed tools."""

from __future__ import annotations

import json
import os
import shutil
import subprocess
import sys
from collections.abc import Iterator
from pathlib import Path

import pytest

from tests import forkserver

ROOT = Path(__file__).resolve().parent.parent


# The fleet repository's inputs. Only TRACKED files are copied: whatever the demo or an operator
# left in the working tree (secrets/*.age, .state/, .talosim/) must not change a test's outcome.
FLEET_INPUTS = ("clusters", "templates", "patches", "generated", "schemas", "secrets")
FLEET_FILES = ("tasks.py", ".age-recipients")


def tracked_files(root: Path = ROOT) -> list[str] | None:
    """Paths git tracks under root (working-tree content), or None outside a git checkout."""
    try:
        res = subprocess.run(
            ["git", "ls-files", "-z", "--cached"],
            cwd=root,
            capture_output=True,
            check=True,
        )
    except (OSError, subprocess.CalledProcessError):
        return None
    return [p for p in res.stdout.decode().split("\0") if p]


def copy_repo(dest: Path) -> Path:
    """A copy of the fleet repository's tracked inputs (clusters, templates, patches, ...)."""
    files = tracked_files()
    if files is None:  # an unpacked release tarball: every file there is a release file
        files = [
            str(p.relative_to(ROOT))
            for name in FLEET_INPUTS
            if name != "secrets"
            for p in (ROOT / name).rglob("*")
            if p.is_file()
        ] + [n for n in FLEET_FILES if (ROOT / n).exists()]
    for rel in files:
        top = rel.split("/", 1)[0]
        if (top in FLEET_INPUTS and "/" in rel) or rel in FLEET_FILES:
            src = ROOT / rel
            if src.is_file():  # tracked but deleted in the working tree: absent in the copy too
                (dest / rel).parent.mkdir(parents=True, exist_ok=True)
                shutil.copy2(src, dest / rel)
    return dest


def find_tool(name: str) -> str | None:
    """Where a tool is: $KUBECTL-style variable, this interpreter's venv, then PATH."""
    named = os.environ.get(name.upper().replace("-", "_"))
    if named:
        return shutil.which(named) or (named if Path(named).is_file() else None)
    venv = Path(sys.executable).parent / name
    return str(venv) if venv.is_file() else shutil.which(name)


def require_tool(name: str) -> str:
    """The tool's path; a missing tool skips the test locally but FAILS it in CI (CI=true)."""
    path = find_tool(name)
    if path:
        return path
    if os.environ.get("CI", "").lower() in ("true", "1"):
        pytest.fail(f"{name} is not installed but CI=true: CI must run every test (scripts/setup)")
    pytest.skip(f"{name} is not installed")


@pytest.fixture
def need_kubectl() -> str:
    return require_tool("kubectl")


@pytest.fixture
def fleet_repo(tmp_path: Path) -> Path:
    return copy_repo(tmp_path / "fleet")


@pytest.fixture(scope="session", autouse=True)
def _kubectl_without_dispatcher() -> None:
    """Google Cloud SDK's `kubectl` is a dispatcher that execs a versioned kubectl
    (kubectl.1.30, ...) on every call: two Go programs start per call, ~65 ms of CPU each, and
    the suite makes ~500 calls. When the kubectl on PATH is one (and KUBECTL names none), the
    tests' programs get KUBECTL naming the binary it dispatches to: the same kubectl runs."""
    path = None if os.environ.get("KUBECTL") else shutil.which("kubectl")
    real = Path(path).resolve() if path else None
    if real is None or "google-cloud-sdk" not in real.parts:
        return
    try:
        out = subprocess.run(
            [str(real), "version", "--client", "--output", "json"],
            capture_output=True,
            text=True,
            timeout=60,
            check=True,
        ).stdout
        version = json.loads(out)["clientVersion"]
    except (OSError, subprocess.SubprocessError, ValueError, KeyError):
        return
    minor = "".join(ch for ch in str(version.get("minor", "")) if ch.isdigit())
    target = real.with_name(f"kubectl.{version.get('major')}.{minor}")
    if target.is_file() and os.access(target, os.X_OK):
        os.environ["KUBECTL"] = str(target)


@pytest.fixture(scope="session", autouse=True)
def _one_rsa_key_file(tmp_path_factory: pytest.TempPathFactory) -> None:
    """Every secrets bundle talosim makes in this session gets one RSA-4096 key (made on first
    use): generating one costs ~0.8 s of CPU and no test reads its value (talosim/machine/pki.py
    _rsa_4096). Programs get it through the environments tests build (rsa_key_env)."""
    os.environ["TALOSIM_RSA_KEY_FILE"] = str(tmp_path_factory.mktemp("rsa") / "key.pem")


@pytest.fixture(scope="session", autouse=True)
def _invoke_fork_server() -> Iterator[None]:
    """The server the tests' `python -m invoke` processes are forked from (tests/forkserver.py)
    starts on first use and ends with the session."""
    yield
    forkserver.stop()


def rsa_key_env() -> dict[str, str]:
    """TALOSIM_RSA_KEY_FILE for a test's programs, whose environment drops the TALOS* variables."""
    path = os.environ.get("TALOSIM_RSA_KEY_FILE")
    return {"TALOSIM_RSA_KEY_FILE": path} if path else {}


def pytest_collection_modifyitems(items: list[pytest.Item]) -> None:
    """The tests marked slow first (in collection order otherwise), so that none of them is
    among the last ones run: with `--dist worksteal` the first worker starts on them and the
    other steals from the tail of its queue, the short tests; measured balanced on 2 cores
    (272 s for 534 test-seconds, bench/reports/summary.md)."""
    items.sort(key=lambda item: item.get_closest_marker("slow") is None)


def pytest_xdist_auto_num_workers(config: pytest.Config) -> int | None:
    """`-n auto`: one worker more than the usable cores. Most end-to-end time is spent waiting
    on short child processes (a talosctl call's worker, kubectl, the emulated API server), and
    a serial run of tests/emulated kept the cores idle for ~60 of its 270 s: a third worker on
    2 cores fills those gaps (bench/suite.py, same machine state: 2 workers 187 s, 3 workers
    172 s). `-n N`, `-n logical` and PYTEST_XDIST_AUTO_NUM_WORKERS keep xdist's meaning (None:
    xdist decides)."""
    if os.environ.get("PYTEST_XDIST_AUTO_NUM_WORKERS") or config.option.numprocesses != "auto":
        return None
    return _usable_cores() + 1


def _usable_cores() -> int:
    """The CPUs this process may run on, within the cgroup's CPU quota (a container limited
    to 2 CPUs on a 64-core host has 2)."""
    cores = len(os.sched_getaffinity(0))
    try:
        quota, period = Path("/sys/fs/cgroup/cpu.max").read_text().split()
    except (OSError, ValueError):
        return cores
    if quota == "max":
        return cores
    return max(1, min(cores, -(-int(quota) // int(period))))

"""What every mutating workflow shares: the cluster lock, the journal, progress, node probes."""

from __future__ import annotations

import contextlib
import json
import logging
import os
import time
import uuid
from collections.abc import Callable, Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any, Protocol, TypeVar

import yaml

from .. import secrets
from ..errors import CommandFailed, LockedError, WorkflowError
from ..model import Cluster, Repo
from ..tools.run import Program, Result, run
from ..tools.talosctl import (
    CERT_REQUIRED,
    CONN_REFUSED,
    MAINTENANCE_NOT_IMPLEMENTED,
    UNKNOWN_AUTHORITY,
    MachineStatus,
    Talosctl,
    parse_machineconfig_many,
    parse_machinestatus,
    parse_machinestatus_many,
    parse_server_version,
)

log = logging.getLogger(__name__)
T = TypeVar("T")
R = TypeVar("R")


class Reporter(Protocol):
    """Where a workflow reports per-node progress; the task layer draws it."""

    def node(self, ip: str, status: str) -> None: ...


class LogReporter:
    def __init__(self) -> None:
        self.last: dict[str, str] = {}

    def node(self, ip: str, status: str) -> None:
        if self.last.get(ip) != status:
            self.last[ip] = status
            log.info("%s: %s", ip, status)


# -- crash safety: signals, leftovers -----------------------------------------------------------
# moved to talosprov/signals.py (tasks.py installs them without loading the workflows)
from ..signals import Interrupted, _on_signal, _signals, handle_signals  # noqa: E402, F401


@contextlib.contextmanager
def task_run(repo: Repo) -> Iterator[None]:
    """The frame of every task: leftovers of killed runs are swept first; signals interrupt."""
    outer = _signals["depth"] == 0  # a task may call another one (the demo does)
    if outer:
        secrets.use_repo(repo)
        _signals["received"] = None
    _signals["depth"] += 1
    try:
        if outer:
            sweep(repo)
        yield
    finally:
        _signals["depth"] -= 1
        if outer:
            secrets.use_repo(None)


# A temporary file younger than this may belong to a run that is writing it right now.
STALE_TMP_SECONDS = 60.0
_TMP_FOLDERS = ("generated", "patches", "secrets", "schemas", ".state")


def stale_tmp_files(repo: Repo, *, older_than: float = STALE_TMP_SECONDS) -> list[Path]:
    """`.<name>.<random>.tmp` files of atomic writes that a killed run never renamed."""
    now = time.time()
    found = [p for p in repo.root.glob(".*.tmp") if p.is_file()]
    for top in _TMP_FOLDERS:
        d = repo.root / top
        if d.is_dir():
            found += [p for p in d.rglob(".*.tmp") if p.is_file() and not p.is_symlink()]
    out = []
    for p in sorted(found):
        with contextlib.suppress(FileNotFoundError):
            if now - p.stat().st_mtime >= older_than:
                out.append(p)
    return out


def sweep(repo: Repo) -> list[str]:
    """Remove what killed runs left behind: private folders with plaintext secrets, stale
    temporary files. Returns what was removed (repo-relative)."""
    removed: list[str] = []
    try:
        state = repo.root / ".state"
        if state.is_dir():  # keys, client configs and private folders: the owner's eyes only
            state.chmod(0o700)
        removed += secrets.sweep_private(repo)
        for p in stale_tmp_files(repo):
            with contextlib.suppress(FileNotFoundError):
                p.unlink()
                removed.append(repo.rel(p))
    except OSError as e:  # never let cleaning up stop the task itself
        log.warning("could not sweep leftovers of earlier runs: %s", e)
    if removed:
        log.info(
            "removed %d leftover(s) of an earlier run that was killed: %s",
            len(removed),
            ", ".join(removed),
        )
    return removed


# -- the cluster lock ---------------------------------------------------------------------------
def lock_state(repo: Repo, cluster: Cluster) -> str | None:
    """None when no run is or was holding the lock; otherwise what `status` should say."""
    d = repo.root / ".state" / cluster.name
    info = d / "lock.info"
    if not info.exists():
        return None
    holder = info.read_text(errors="replace").strip()[:200] or "a run"
    from filelock import FileLock, Timeout  # ~15 ms to import: only where a lock is taken

    lock = FileLock(str(d / "lock"), mode=0o600)
    try:
        lock.acquire(timeout=0)
    except Timeout:
        return f"running now: {holder}"
    lock.release()
    return (
        f"stale lock info: {holder} did not finish (killed?). Harmless: the lock itself was "
        "released when that process ended; re-run that task to resume where it stopped"
    )


@contextlib.contextmanager
def cluster_lock(repo: Repo, cluster: Cluster, workflow: str) -> Iterator[None]:
    """One mutating run per cluster at a time."""
    from filelock import FileLock, Timeout

    d = repo.state_dir(cluster)
    lock = FileLock(str(d / "lock"), mode=0o600)
    info = d / "lock.info"
    try:
        lock.acquire(timeout=0)
    except Timeout:
        holder = info.read_text().strip() if info.exists() else "another process"
        raise LockedError(
            f"another talosprov run is working on {cluster.name} ({holder}); wait for it to "
            f"finish (the lock is {repo.rel(d / 'lock')}, released when that process exits)"
        ) from None
    try:
        (d / "lock").chmod(0o600)  # also when an older talosprov created it 0644
        fd = os.open(info, os.O_WRONLY | os.O_CREAT | os.O_TRUNC, 0o600)
        with os.fdopen(fd, "w") as f:
            f.write(f"{workflow} by pid {os.getpid()} since {time.strftime('%H:%M:%S')}\n")
        yield
    finally:
        with contextlib.suppress(FileNotFoundError):
            info.unlink()
        lock.release()


@dataclass
class Journal:
    """Append-only record of each step: .state/<cluster>/journal.jsonl."""

    repo: Repo
    cluster: Cluster
    workflow: str
    run_id: str = field(default_factory=lambda: uuid.uuid4().hex[:8])

    @property
    def path(self) -> Any:
        return self.repo.state_dir(self.cluster) / "journal.jsonl"

    def write(self, step: str, status: str, node: str | None = None, **detail: Any) -> None:
        entry = {
            "ts": time.strftime("%Y-%m-%dT%H:%M:%S%z"),
            "run": self.run_id,
            "workflow": self.workflow,
            "step": step,
            "node": node,
            "status": status,
            **detail,
        }
        fd = os.open(self.path, os.O_WRONLY | os.O_CREAT | os.O_APPEND, 0o600)
        with os.fdopen(fd, "a") as f:
            f.write(json.dumps(entry) + "\n")

    @contextlib.contextmanager
    def step(self, step: str, node: str | None = None, **detail: Any) -> Iterator[None]:
        start = time.monotonic()
        self.write(step, "start", node, **detail)
        try:
            yield
        except BaseException as e:
            self.write(
                step,
                "failed" if not isinstance(e, KeyboardInterrupt) else "interrupted",
                node,
                seconds=round(time.monotonic() - start, 2),
                error=str(e)[:2000],
            )
            raise
        self.write(step, "ok", node, seconds=round(time.monotonic() - start, 2))

    def entries(self) -> list[dict[str, Any]]:
        if not self.path.exists():
            return []
        return [json.loads(line) for line in self.path.read_text().splitlines() if line.strip()]


def parallel(fn: Callable[[T], R], items: list[T], workers: int) -> list[R]:
    """Map in parallel; the first failure is raised after the others finished."""
    if not items:
        return []
    with ThreadPoolExecutor(max_workers=max(1, min(workers, len(items)))) as pool:
        futures = [pool.submit(fn, i) for i in items]
        results, errors = [], []
        for f in futures:
            try:
                results.append(f.result())
            except Exception as e:  # collected and re-raised below, first one wins
                errors.append(e)
        if errors:
            raise errors[0]
        return results


def run_together(
    prog: Program, calls: list[tuple[list[str], str]], *, timeout: float
) -> list[Result | CommandFailed]:
    """Independent read-only calls `(argv, node)` at once: each one's Result, or the
    CommandFailed naming its node, in the order given. The commands are logged in that order
    before they start, so `-v` output does not depend on which thread runs first."""
    for args, _node in calls:
        log.debug("$ %s", prog.display(args))

    def one(call: tuple[list[str], str]) -> Result | CommandFailed:
        args, node = call
        try:
            return run(prog, args, node=node, timeout=timeout, echo=False)
        except CommandFailed as e:
            return e

    return parallel(one, calls, len(calls))


# -- polling -------------------------------------------------------------------------------------
class Clock(Protocol):
    """What a poll reads and sleeps on; the `time` module is one, tests pass a fake."""

    def monotonic(self) -> float: ...

    def sleep(self, seconds: float, /) -> None: ...


POLL_FIRST = 0.1
POLL_CAP = 1.0


class Poll:
    """When to look again while waiting for a node or the cluster: after `first` seconds, then
    twice as long each time up to `cap`, and a last look exactly at the deadline. A node that
    is ready in 200 ms is seen then, not a whole interval later; from the first second on the
    checks come no more often than a fixed `cap` interval did, so a real API sees the same load.

        poll = Poll(timeout)
        while not done():
            if not poll.wait():
                raise ...  # the deadline passed: done() was last asked at it
    """

    def __init__(
        self,
        timeout: float,
        *,
        first: float = POLL_FIRST,
        cap: float = POLL_CAP,
        clock: Clock = time,
    ) -> None:
        self.timeout = timeout
        self.clock = clock
        self.deadline = clock.monotonic() + timeout
        self.cap = cap
        self._next = min(first, cap)
        self._at_deadline = False

    def wait(self) -> bool:
        """Sleep until the next look and return True; False (at once) when the last look was at
        or after the deadline. Never sleeps past the deadline."""
        left = self.deadline - self.clock.monotonic()
        if self._at_deadline or left <= 0:
            return False
        if left <= self._next:
            # a sleep that ends at the deadline is the last one, even when the clock reads a
            # hair early on waking up
            self._at_deadline = True
            self.clock.sleep(left)
            return True
        self.clock.sleep(self._next)
        self._next = min(self._next * 2, self.cap)
        return True


# -- node probes ---------------------------------------------------------------------------------
@dataclass(frozen=True)
class Probe:
    ip: str
    mode: str  # maintenance | configured | foreign | unreachable | error
    status: MachineStatus | None = None
    detail: str = ""

    def describe(self) -> str:
        if self.status:
            ready = "ready" if self.status.ready else "not ready"
            return f"{self.mode}, {self.status.stage}, {ready}"
        return f"{self.mode}: {self.detail}" if self.detail else self.mode


def probe(prog: Program, tc: Talosctl, ip: str, timeout: float = 20) -> Probe:
    """Ask a node what it is: maintenance (insecure API answers) or configured for us."""
    try:
        r = run(prog, tc.machinestatus(ip, insecure=True), timeout=timeout, node=ip)
        return Probe(ip, "maintenance", parse_machinestatus(r.stdout))
    except CommandFailed as e:
        out = e.output
        if CONN_REFUSED in out or "timed out" in str(e):
            return Probe(ip, "unreachable", detail=_last(out))
        if CERT_REQUIRED not in out and MAINTENANCE_NOT_IMPLEMENTED not in out:
            return Probe(ip, "error", detail=_last(out))
    try:
        r = run(prog, tc.machinestatus(ip, insecure=False), timeout=timeout, node=ip)
        return Probe(ip, "configured", parse_machinestatus(r.stdout))
    except CommandFailed as e:
        if UNKNOWN_AUTHORITY in e.output:
            return Probe(
                ip,
                "foreign",
                detail="configured for another cluster (its CA does not "
                "trust this cluster's talosconfig)",
            )
        if CONN_REFUSED in e.output:
            return Probe(ip, "unreachable", detail=_last(e.output))
        return Probe(ip, "error", detail=_last(e.output))


def ask_statuses(
    prog: Program, tc: Talosctl, ips: list[str], eps: list[str]
) -> dict[str, MachineStatus]:
    """The machine status of every node in `ips` that answers through the control planes
    `eps`, in one talosctl call (apid proxies a call with several --nodes); {} when none does
    (a fresh cluster: the nodes are then probed one by one)."""
    if len(ips) < 2 or not eps or not tc.talosconfig.is_file():
        return {}
    try:
        # exit 1 when some node fails: the others' answers are still on stdout
        r = run(prog, tc.machinestatus_many(ips, eps), timeout=60, ok_codes=(0, 1))
    except CommandFailed as e:  # no control plane answers
        log.debug("several-node query failed: %s", e)
        return {}
    return {ip: st for ip, st in parse_machinestatus_many(r.stdout).items() if ip in ips}


def configured_probes(
    prog: Program, tc: Talosctl, ips: list[str], eps: list[str]
) -> dict[str, Probe]:
    """What `probe` would say of the nodes that answer through the control planes (they run
    this cluster's config), found with one call; the others are for the caller to probe."""
    return {ip: Probe(ip, "configured", st) for ip, st in ask_statuses(prog, tc, ips, eps).items()}


Many = tuple[dict[str, MachineStatus], dict[str, str], dict[str, dict[str, Any]]]


def ask_many(prog: Program, tc: Talosctl, ips: list[str], eps: list[str], *, configs: bool) -> Many:
    """(machine status, Talos tag, live config when `configs`) of every node in `ips` that
    answers through the control planes `eps`: two or three talosctl calls whatever the number
    of nodes (apid proxies a call with several --nodes). The nodes missing from the answer
    (maintenance mode, rebooting, another cluster) are for the caller to probe one by one."""
    known = ask_statuses(prog, tc, ips, eps)
    if not known:
        return {}, {}, {}
    try:
        asks = [tc.version_many(list(known), eps)]
        if configs:
            asks.append(tc.machineconfig_many(list(known), eps))
        outs = parallel(lambda a: run(prog, a, timeout=120, ok_codes=(0, 1)).stdout, asks, 2)
    except CommandFailed as e:  # no control plane answers: every node is probed on its own
        log.debug("several-node query failed: %s", e)
        return {}, {}, {}
    try:
        live = parse_machineconfig_many(outs[1]) if configs else {}
    except (ValueError, KeyError, TypeError, yaml.YAMLError) as e:
        log.debug("several-node machineconfig not parsed: %s", e)
        live = {}  # each node's config is then asked for on its own
    return known, parse_server_version(outs[0]), live


def _last(text: str) -> str:
    lines = [line for line in text.strip().splitlines() if line.strip()]
    return lines[-1].strip() if lines else ""


def wait_for(
    ips: list[str],
    check: Callable[[str], tuple[bool, str]],
    *,
    timeout: float,
    reporter: Reporter,
    what: str,
    cap: float = 0.5,
    workers: int = 10,
    clock: Clock = time,
) -> None:
    """Poll check(ip) -> (done, status) for every node in parallel until all are done (every
    `cap` seconds at most once the first second has passed, as the fixed interval was)."""
    poll = Poll(timeout, cap=cap, clock=clock)
    pending = list(ips)
    last: dict[str, str] = {}
    while pending:
        results = parallel(lambda ip: (ip, *check(ip)), pending, workers)
        for ip, _done, status in results:
            last[ip] = status
            reporter.node(ip, status)
        pending = [ip for ip, done, _ in results if not done]
        if not pending:
            return
        if not poll.wait():
            detail = "; ".join(f"{ip}: {last.get(ip, 'no answer')}" for ip in pending)
            raise WorkflowError(f"timed out after {timeout:.0f}s waiting for {what}: {detail}")

"""etcd backups and disaster recovery: snapshots (shared with upgrades), backup, restore.

backup: observe (etcd status of every control plane) → plan (pure: which member, which file,
which old backups go) → apply (`talosctl etcd snapshot`, prune) → observe (the file is there).
restore: observe (probe the control planes) → plan (pure: wipe every control plane's EPHEMERAL,
recover on exactly one) → apply → observe (health, every node Ready). The procedure is the Talos
disaster-recovery guide's (website/content/v1.9/advanced/disaster-recovery.md).
"""

from __future__ import annotations

import hashlib
import logging
import shlex
import time
from dataclasses import dataclass, field
from pathlib import Path

from .. import localconfig, progress
from ..errors import CommandFailed, TalosProvError, WorkflowError
from ..model import Cluster, Repo
from ..tools.kubectl import Kubectl, parse_nodes
from ..tools.run import Program, run
from ..tools.talosctl import Talosctl, parse_etcd_members, parse_machinestatus
from .runtime import (
    Journal,
    LogReporter,
    Poll,
    Reporter,
    cluster_lock,
    parallel,
    probe,
    wait_for,
)

log = logging.getLogger(__name__)

SUFFIX = ".snapshot"
# The partition that holds etcd's data directory (/var/lib/etcd) on a Talos node.
EPHEMERAL = "EPHEMERAL"


class ConfirmationRequired(TalosProvError):
    """A destructive workflow was asked for without its confirmation flag."""


# -- snapshots ------------------------------------------------------------------------------------
def backups_dir(repo: Repo, cluster: Cluster) -> Path:
    d = repo.state_dir(cluster) / "backups"
    d.mkdir(exist_ok=True, mode=0o700)
    d.chmod(0o700)
    return d


def snapshot_name(stamp: time.struct_time, taken: list[str]) -> str:
    """`<UTC timestamp>.snapshot`, with a counter when that second already has one: one past
    the highest of that second, so that a name is newer than every one taken before it even
    after pruning removed the first ones. Pure."""
    base = time.strftime("%Y%m%dT%H%M%SZ", stamp)
    same = [count for second, count, _ in map(backup_age, taken) if second == base]
    return f"{base}-{max(same) + 1}{SUFFIX}" if same else base + SUFFIX


def backup_age(name: str) -> tuple[str, int, str]:
    """Sort key, oldest first: the second, then the counter within it (`T.snapshot` is the
    first of its second, then `T-2.snapshot`, ..., `T-10.snapshot`; sorting the names put
    `T-2` before `T`, '-' < '.', and pruning deleted the backup just taken). Pure."""
    stem = name.removesuffix(SUFFIX)
    base, dash, n = stem.rpartition("-")
    return (base, int(n), name) if dash and n.isdigit() else (stem, 1, name)


def existing_backups(repo: Repo, cluster: Cluster) -> list[str]:
    d = repo.state_dir(cluster) / "backups"
    return sorted((p.name for p in d.glob(f"*{SUFFIX}")), key=backup_age) if d.is_dir() else []


def take_snapshot(repo: Repo, cluster: Cluster, prog: Program, tc: Talosctl, ip: str) -> Path:
    """`talosctl etcd snapshot` from one member into .state/<cluster>/backups/ (file 0600)."""
    d = backups_dir(repo, cluster)
    path = d / snapshot_name(time.gmtime(), existing_backups(repo, cluster))
    run(prog, tc.etcd_snapshot(ip, path), node=ip, timeout=600)
    path.chmod(0o600)
    log.info("%s: etcd snapshot saved to %s", ip, repo.rel(path))
    return path


def to_prune(names: list[str], keep: int) -> list[str]:
    """The backups beyond the newest `keep`, oldest first. Pure."""
    ordered = sorted(names, key=backup_age)
    return ordered[: max(0, len(ordered) - keep)]


# -- observing etcd -------------------------------------------------------------------------------
@dataclass(frozen=True)
class EtcdView:
    """What the control planes say about etcd."""

    healthy: dict[str, bool]  # control plane IP -> `etcd status` answered
    errors: dict[str, str]
    members: tuple[dict[str, str], ...]  # from the first healthy member

    @property
    def member_ips(self) -> list[str]:
        return [m["peer_urls"].split("//")[1].rsplit(":", 1)[0] for m in self.members]


def observe_etcd(prog: Program, tc: Talosctl, cps: list[str]) -> EtcdView:
    def one(ip: str) -> tuple[str, bool, str]:
        try:
            run(prog, tc.etcd_status(ip), node=ip, timeout=30)
            return ip, True, ""
        except CommandFailed as e:
            lines = [line for line in e.output.strip().splitlines() if line.strip()]
            return ip, False, lines[-1].strip() if lines else f"exit {e.exit_code}"

    got = parallel(one, cps, 10)
    healthy = {ip: ok for ip, ok, _ in got}
    errors = {ip: err for ip, ok, err in got if not ok}
    members: list[dict[str, str]] = []
    for ip in cps:
        if healthy[ip]:
            members = parse_etcd_members(run(prog, tc.etcd_members(ip), node=ip, timeout=30).stdout)
            break
    return EtcdView(healthy, errors, tuple(members))


# -- backup ---------------------------------------------------------------------------------------
@dataclass(frozen=True)
class BackupPlan:
    node: str
    name: str
    prune: tuple[str, ...]

    def describe(self, cluster: Cluster) -> list[str]:
        lines = [
            f"1. etcd snapshot from {self.node} into "
            f".state/{cluster.name}/backups/{self.name} (folder 0700, file 0600)"
        ]
        lines += [f"2. remove the old backup {n} (keep the newest)" for n in self.prune]
        return lines


def plan_backup(
    cluster: Cluster, view: EtcdView, existing: list[str], keep: int, stamp: time.struct_time
) -> BackupPlan:
    """Snapshot from the first healthy control plane, in file order. Pure."""
    node = next((n.ip for n in cluster.controlplanes if view.healthy.get(n.ip)), None)
    if node is None:
        detail = "; ".join(f"{ip}: {e}" for ip, e in view.errors.items())
        raise WorkflowError(
            f"no control plane of {cluster.name} has a healthy etcd to snapshot ({detail}); "
            "a cluster that lost etcd is restored with `invoke restore --from <snapshot>`"
        )
    name = snapshot_name(stamp, existing)
    return BackupPlan(node, name, tuple(to_prune([*existing, name], keep)))


@dataclass
class BackupOutcome:
    plan: BackupPlan
    commands: list[str]
    path: Path | None = None
    size: int = 0


def backup(
    repo: Repo, cluster: Cluster, prog: Program, *, keep: int = 10, dry_run: bool = False
) -> BackupOutcome:
    if keep < 1:
        raise WorkflowError("--keep must be at least 1 (the backup just taken)")
    tc = Talosctl(localconfig.talosconfig_path(repo, cluster))
    progress.phase(f"Observe etcd on {len(cluster.controlplanes)} control plane(s)")
    view = observe_etcd(prog, tc, [n.ip for n in cluster.controlplanes])
    p = plan_backup(cluster, view, existing_backups(repo, cluster), keep, time.gmtime())
    for line in p.describe(cluster):
        log.info("%s", line)
    target = Path(".state") / cluster.name / "backups" / p.name
    outcome = BackupOutcome(p, [shlex.join(["talosctl", *tc.etcd_snapshot(p.node, target)])])
    if dry_run:
        return outcome
    with cluster_lock(repo, cluster, "backup"):
        journal = Journal(repo, cluster, "backup")
        progress.phase(f"Snapshot etcd from {p.node}")
        with journal.step("snapshot", p.node):
            path = take_snapshot(repo, cluster, prog, tc, p.node)
        # observe again before pruning: an old backup goes only once the new one is there
        if not path.exists() or path.stat().st_size == 0:
            raise WorkflowError(f"talosctl reported success but {repo.rel(path)} is empty")
        for name in to_prune(existing_backups(repo, cluster), keep):
            (path.parent / name).unlink()
            log.info("removed the old backup %s", name)
        outcome.path, outcome.size = path, path.stat().st_size
        journal.write("backup", "ok", p.node, file=path.name, bytes=outcome.size)
    return outcome


# -- restore --------------------------------------------------------------------------------------
@dataclass(frozen=True)
class RestoreStep:
    kind: str  # wipe | wait | recover | health | ready
    nodes: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class RestorePlan:
    snapshot: Path
    digest: str
    steps: tuple[RestoreStep, ...] = ()
    noop: str | None = None

    def describe(self) -> list[str]:
        if self.noop:
            return [f"nothing to do: {self.noop}"]
        return [f"{i}. {s.kind} {', '.join(s.nodes)}: {s.why}" for i, s in enumerate(self.steps, 1)]


@dataclass(frozen=True)
class RestoreProgress:
    """What the journal says about the last restore from this snapshot."""

    finished: bool = False  # it completed
    done: frozenset[str] = frozenset()  # steps that completed in it (when it did not finish)


def plan_restore(
    cluster: Cluster,
    snapshot: Path,
    digest: str,
    modes: dict[str, str],
    etcd_healthy: bool,
    progress_: RestoreProgress,
) -> RestorePlan:
    """Wipe every control plane's EPHEMERAL (etcd data), recover on the first one. Pure.

    `modes` is each control plane's probe mode. A re-run after a completed restore from this
    snapshot is a no-op while etcd is healthy; a run that stopped after the recovery resumes
    at the health check (wiping again would throw the recovered data away)."""
    if progress_.finished and etcd_healthy:
        return RestorePlan(
            snapshot, digest, noop=f"{cluster.name} was already restored from this snapshot"
        )
    cps = [n.ip for n in cluster.controlplanes]
    bad = {ip: m for ip, m in modes.items() if ip in cps and m != "configured"}
    if bad:
        raise WorkflowError(
            "every control plane must run this cluster's config to be restored; not: "
            + ", ".join(f"{ip} ({m})" for ip, m in bad.items())
            + " (install or power them on first)"
        )
    first = cps[0]
    steps: tuple[RestoreStep, ...] = (
        RestoreStep(
            "wipe",
            tuple(cps),
            f"talosctl reset --graceful=false --reboot --system-labels-to-wipe={EPHEMERAL} "
            "(etcd data of every control plane; machine configs stay)",
        ),
        RestoreStep("wait", tuple(cps), "back in stage running (etcd waits for bootstrap)"),
        RestoreStep("recover", (first,), f"talosctl bootstrap --recover-from={snapshot}"),
        RestoreStep("health", (first,), "talosctl health (every node)"),
        RestoreStep("ready", tuple(n.ip for n in cluster.nodes), "every node Ready (kubectl)"),
    )
    if not progress_.finished and "recover" in progress_.done:
        steps = steps[3:]
    return RestorePlan(snapshot, digest, steps)


@dataclass
class RestoreOutcome:
    plan: RestorePlan
    commands: list[str] = field(default_factory=list)


def _digest(path: Path) -> str:
    return hashlib.sha256(path.read_bytes()).hexdigest()


def restore_progress(journal: Journal, digest: str) -> RestoreProgress:
    entries = [e for e in journal.entries() if e.get("workflow") == "restore"]
    starts = [
        i
        for i, e in enumerate(entries)
        if e.get("step") == "restore" and e.get("status") == "start" and e.get("sha256") == digest
    ]
    if not starts:
        return RestoreProgress()
    after = entries[starts[-1] + 1 :]
    finished = any(e.get("step") == "restore" and e.get("status") == "ok" for e in after)
    return RestoreProgress(finished, frozenset(e["step"] for e in after if e.get("status") == "ok"))


def restore(
    repo: Repo,
    cluster: Cluster,
    prog: Program,
    kubectl: Program | None,
    snapshot: Path,
    *,
    confirmed: bool,
    dry_run: bool = False,
    timeout: float = 900,
    reporter: Reporter | None = None,
) -> RestoreOutcome:
    rep = reporter or LogReporter()
    snapshot = snapshot.resolve()
    if not snapshot.is_file():
        raise WorkflowError(
            f"--from {snapshot}: no such file (backups are in .state/<cluster>/backups/)"
        )
    tc = Talosctl(localconfig.talosconfig_path(repo, cluster))
    journal = Journal(repo, cluster, "restore")
    digest = _digest(snapshot)
    cps = [n.ip for n in cluster.controlplanes]
    progress.phase(f"Observe {len(cps)} control plane(s) of {cluster.name}")
    probes = {pr.ip: pr for pr in parallel(lambda ip: probe(prog, tc, ip), cps, 10)}
    for pr in probes.values():
        rep.node(pr.ip, pr.describe())
    p = plan_restore(
        cluster,
        snapshot,
        digest,
        {ip: pr.mode for ip, pr in probes.items()},
        all(observe_etcd(prog, tc, cps).healthy.values()),
        restore_progress(journal, digest),
    )
    progress.phase("Plan")
    for line in p.describe():
        log.info("%s", line)
    out = RestoreOutcome(p, _restore_commands(tc, cluster, p))
    if dry_run or p.noop:
        return out
    if not confirmed:
        raise ConfirmationRequired(
            "restore wipes etcd on every control plane of "
            f"{cluster.name}; read the plan above and re-run with --yes-wipe-etcd"
        )
    with cluster_lock(repo, cluster, "restore"):
        journal.write("restore", "start", None, snapshot=str(snapshot), sha256=digest)
        for s in p.steps:
            progress.phase(f"{s.kind.capitalize()}: {s.why}")
            with journal.step(s.kind, None, nodes=list(s.nodes)):
                _restore_step(repo, cluster, prog, kubectl, tc, s, snapshot, timeout, rep)
        journal.write("restore", "ok", None, snapshot=str(snapshot), sha256=digest)
    return out


def _restore_commands(tc: Talosctl, cluster: Cluster, p: RestorePlan) -> list[str]:
    cmds: list[list[str]] = []
    for s in p.steps:
        if s.kind == "wipe":
            cmds += [
                tc.reset(ip, graceful=False, reboot=True, system_labels=(EPHEMERAL,))
                for ip in s.nodes
            ]
        elif s.kind == "recover":
            cmds.append(tc.bootstrap_recover(s.nodes[0], p.snapshot))
        elif s.kind == "health":
            cmds.append(
                tc.health(
                    s.nodes[0],
                    [n.ip for n in cluster.controlplanes],
                    [n.ip for n in cluster.workers],
                    600,
                )
            )
    return [shlex.join(["talosctl", *c]) for c in cmds]


def _restore_step(
    repo: Repo,
    cluster: Cluster,
    prog: Program,
    kubectl: Program | None,
    tc: Talosctl,
    s: RestoreStep,
    snapshot: Path,
    timeout: float,
    rep: Reporter,
) -> None:
    if s.kind == "wipe":
        # one after the other: each reset must have been accepted before the next node goes
        for ip in s.nodes:
            run(
                prog,
                tc.reset(ip, graceful=False, reboot=True, system_labels=(EPHEMERAL,)),
                node=ip,
                timeout=timeout + 60,
            )
            rep.node(ip, "EPHEMERAL wiped, rebooting")
    elif s.kind == "wait":
        wait_running(prog, tc, list(s.nodes), timeout, rep)
    elif s.kind == "recover":
        run(prog, tc.bootstrap_recover(s.nodes[0], snapshot), node=s.nodes[0], timeout=300)
        rep.node(s.nodes[0], "etcd recovered from the snapshot")
    elif s.kind == "health":
        cps = [n.ip for n in cluster.controlplanes]
        workers = [n.ip for n in cluster.workers]
        try:
            run(
                prog,
                tc.health(s.nodes[0], cps, workers, timeout),
                node=s.nodes[0],
                timeout=timeout + 60,
            )
        except CommandFailed as e:
            raise WorkflowError(
                f"the cluster did not become healthy after the recovery:\n{e.output[-2000:]}"
            ) from None
    elif s.kind == "ready":
        wait_k8s_ready(repo, cluster, kubectl, list(s.nodes), timeout)


def wait_running(
    prog: Program, tc: Talosctl, ips: list[str], timeout: float, rep: Reporter
) -> None:
    """Every node answers with its config in stage running (ready or not)."""

    def check(ip: str) -> tuple[bool, str]:
        try:
            ms = parse_machinestatus(
                run(prog, tc.machinestatus(ip, insecure=False), node=ip, timeout=20).stdout
            )
        except CommandFailed as e:
            return False, (e.output.strip().splitlines() or ["no answer"])[-1][:120]
        return ms.stage == "running", ms.stage

    wait_for(ips, check, timeout=timeout, reporter=rep, what="nodes to run again")


def wait_k8s_ready(
    repo: Repo, cluster: Cluster, kubectl: Program | None, ips: list[str], timeout: float
) -> None:
    """Every node registered and Ready in Kubernetes (the nodes' own kubeconfig)."""
    if kubectl is None:
        raise WorkflowError("kubectl is needed to check that the nodes are Ready")
    k = Kubectl(localconfig.kubeconfig_path(repo, cluster))
    poll = Poll(timeout)
    while True:
        try:
            nodes = {n.ip: n for n in parse_nodes(run(kubectl, k.get_nodes(), timeout=60).stdout)}
            bad = [ip for ip in ips if not (nodes.get(ip) and nodes[ip].ready)]
        except CommandFailed as e:
            bad = [f"Kubernetes API: {(e.output.strip().splitlines() or ['?'])[-1]}"]
        if not bad:
            return
        if not poll.wait():
            raise WorkflowError(f"not Ready in Kubernetes after {timeout:.0f}s: {', '.join(bad)}")

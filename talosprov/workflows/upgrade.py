"""Rolling Talos upgrades and Kubernetes upgrades, gated before and after every node.

observe (versions, stages) → plan (pure: order, hops through each minor, batches, skips) →
apply (gates → snapshot → talosctl upgrade → gates; stop at the first failure) → observe again.
Control planes go one at a time, before any worker; a re-run skips what is at target.
"""

from __future__ import annotations

import logging
import shlex
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

from .. import localconfig, progress, toolbox
from ..errors import CommandFailed, GateFailed, TalosProvError, UnknownClusterError, WorkflowError
from ..model import Cluster, Node, Repo
from ..tools.kubectl import Kubectl, parse_nodes, parse_pods_ready
from ..tools.run import Program, run, run_shell_gate
from ..tools.talosctl import (
    BUSY_FILE,
    Talosctl,
    parse_etcd_members,
    parse_server_version,
)
from ..versions import Version, check_kubernetes_supported, upgrade_path
from . import etcd as etcd_wf
from .runtime import (
    Journal,
    LogReporter,
    Poll,
    Reporter,
    ask_many,
    cluster_lock,
    parallel,
    probe,
    run_together,
)

log = logging.getLogger(__name__)


# -- finding the cluster of a node ----------------------------------------------------------------
def cluster_for_node(repo: Repo, ip: str, cluster: str | None) -> Cluster:
    """The named cluster, else the current talosconfig context's cluster when it holds the IP,
    else the only cluster that holds it (the same IP can be in several fleets' clusters)."""
    if cluster:
        c = repo.find(cluster)
        c.node(ip)
        return c
    candidates = repo.clusters_with_node(ip)
    if not candidates:
        raise UnknownClusterError(f"no cluster in clusters/ has a node {ip}")
    current = localconfig.current_talos_context()
    for c in candidates:
        if c.name == current:
            return c
    if len(candidates) == 1:
        return candidates[0]
    names = ", ".join(c.name for c in candidates)
    raise UnknownClusterError(
        f"{ip} belongs to several clusters ({names}) and the current talosconfig context "
        f"({current or 'none'}) is none of them: add --cluster, e.g. --cluster {candidates[0].name}"
    )


# -- plan -----------------------------------------------------------------------------------------
@dataclass(frozen=True)
class Observed:
    ip: str
    stage: str
    version: str | None  # Talos tag, e.g. v1.7.0


@dataclass(frozen=True)
class NodeStep:
    ip: str
    hostname: str
    role: str
    current: str
    hops: tuple[str, ...]


@dataclass(frozen=True)
class UpgradePlan:
    target: str
    batches: tuple[tuple[NodeStep, ...], ...]
    skipped: tuple[tuple[str, str], ...] = ()
    noop: str | None = None

    def describe(self) -> list[str]:
        if self.noop:
            return [f"nothing to do: {self.noop}"]
        lines = [f"target Talos {self.target}"]
        for i, batch in enumerate(self.batches, 1):
            for s in batch:
                lines.append(
                    f"{i}. {s.ip} ({s.hostname}, {s.role}): {s.current} → {' → '.join(s.hops)}"
                )
        lines += [f"   skip {ip}: {why}" for ip, why in self.skipped]
        return lines


def plan(
    cluster: Cluster,
    observed: dict[str, Observed],
    target: Version,
    *,
    max_unavailable: int = 1,
    only: list[str] | None = None,
) -> UpgradePlan:
    """Control planes one per batch, in file order, then workers in batches. Pure."""
    nodes = [n for n in cluster.nodes if only is None or n.ip in only]
    steps: dict[str, NodeStep] = {}
    skipped: list[tuple[str, str]] = []
    for n in nodes:
        o = observed[n.ip]
        if o.version is None:
            raise WorkflowError(
                f"{n.ip} ({n.hostname}) did not report its Talos version "
                f"(stage {o.stage}); is it up and running {cluster.name}?"
            )
        cur = Version.parse(o.version)
        if cur == target:
            skipped.append((n.ip, f"already at {target}"))
            continue
        hops = upgrade_path(cur, target)
        steps[n.ip] = NodeStep(n.ip, n.hostname, n.role, cur.v(), tuple(h.v() for h in hops))
    if not steps:
        return UpgradePlan(
            target.v(), (), tuple(skipped), noop=f"every node is already at Talos {target}"
        )
    batches: list[tuple[NodeStep, ...]] = [
        (steps[n.ip],) for n in cluster.controlplanes if n.ip in steps
    ]
    workers = [steps[n.ip] for n in cluster.workers if n.ip in steps]
    size = max(1, max_unavailable)
    batches += [tuple(workers[i : i + size]) for i in range(0, len(workers), size)]
    return UpgradePlan(target.v(), tuple(batches), tuple(skipped))


# -- apply ----------------------------------------------------------------------------------------
@dataclass
class Options:
    dry_run: bool = False
    max_unavailable: int = 1
    gates: list[str] = field(default_factory=list)
    gate_timeout: float = 300
    preserve: bool = False
    stage: bool = False
    timeout: float = 1800
    health_timeout: float = 300
    reporter: Reporter = field(default_factory=LogReporter)


class Upgrader:
    def __init__(
        self, repo: Repo, cluster: Cluster, prog: Program, kubectl: Program | None, opts: Options
    ) -> None:
        self.repo, self.cluster, self.prog, self.kubectl, self.opts = (
            repo,
            cluster,
            prog,
            kubectl,
            opts,
        )
        self.tc = Talosctl(localconfig.talosconfig_path(repo, cluster))
        self.journal = Journal(repo, cluster, "upgrade")
        self.nodes = {n.ip: n for n in cluster.nodes}
        # the talosctl release driving the upgrade (set by the preflight): from v1.13 it decides
        # whether --stage reaches the node at all
        self.talosctl_version: str | None = None
        # the after-batch health check passed and nothing ran since: the next batch's
        # before-check would ask the same question again at once
        self._healthy_just_now = False

    def _run(self, args: list[str], node: str | None = None, timeout: float = 120) -> str:
        return run(self.prog, args, node=node, timeout=timeout).stdout

    def observe(self, ips: list[str]) -> dict[str, Observed]:
        # the configured nodes answer one call through the control planes (apid proxies it);
        # only the others are probed one by one
        cps = [n.ip for n in self.cluster.controlplanes]
        known, tags, _ = ask_many(self.prog, self.tc, ips, cps, configs=False)

        def one(ip: str) -> Observed:
            if ip in known and tags.get(ip):
                return Observed(ip, known[ip].stage, tags[ip])
            p = probe(self.prog, self.tc, ip)
            if p.mode != "configured":
                return Observed(ip, p.status.stage if p.status else p.mode, None)
            out = self._run(self.tc.version(ip), node=ip, timeout=30)
            return Observed(
                ip, p.status.stage if p.status else "?", parse_server_version(out).get(ip)
            )

        got = parallel(one, ips, 10)
        for o in got:
            self.opts.reporter.node(o.ip, f"{o.stage}, Talos {o.version or '?'}")
        return {o.ip: o for o in got}

    # gates ------------------------------------------------------------------------------------
    def health(self, why: str) -> None:
        cps = [n.ip for n in self.cluster.controlplanes]
        workers = [n.ip for n in self.cluster.workers]
        node = cps[0]
        try:
            self._run(
                self.tc.health(node, cps, workers, self.opts.health_timeout),
                node=node,
                timeout=self.opts.health_timeout + 60,
            )
        except CommandFailed as e:
            raise GateFailed(f"cluster health ({why}) failed:\n{e.output[-2000:]}") from None

    def etcd_gate(self, node: Node) -> None:
        """Every member healthy and a quorum left when this node goes down."""
        cps = [n.ip for n in self.cluster.controlplanes]
        # read-only and independent: the member list and every member's status asked at once
        got = run_together(
            self.prog,
            [
                (self.tc.etcd_members(node.ip), node.ip),
                *[(self.tc.etcd_status(ip), ip) for ip in cps],
            ],
            timeout=30,
        )
        if isinstance(got[0], CommandFailed):
            raise got[0]
        members = parse_etcd_members(got[0].stdout)
        peers = {m["peer_urls"].split("//")[1].rsplit(":", 1)[0] for m in members}
        unhealthy = [
            f"{ip}: {r.output.strip().splitlines()[-1] if r.output.strip() else r}"
            for ip, r in zip(cps, got[1:], strict=True)
            if isinstance(r, CommandFailed)
        ]
        if unhealthy:
            raise GateFailed(
                "etcd is not healthy on every member; not upgrading "
                f"{node.ip}:\n  " + "\n  ".join(unhealthy)
            )
        n = len(peers)
        quorum = n // 2 + 1
        if n > 1 and n - 1 < quorum:
            raise GateFailed(
                f"etcd has {n} members: taking {node.ip} down would lose quorum "
                f"({quorum} needed); add a control plane or use --preserve on a "
                "single-node cluster"
            )

    def snapshot(self, node: Node) -> Path:
        # the same snapshots as `invoke backup`, in .state/<cluster>/backups/
        return etcd_wf.take_snapshot(self.repo, self.cluster, self.prog, self.tc, node.ip)

    def user_gates(self, after: str) -> None:
        gates = [*self.cluster.upgrade.gates, *self.opts.gates]
        for g in gates:
            try:
                with self.journal.step("gate", None, command=g, after=after):
                    run_shell_gate(g, timeout=self.opts.gate_timeout, cwd=self.repo.root)
            except CommandFailed as e:
                raise GateFailed(
                    f"gate `{g}` failed after {after} (exit {e.exit_code}):\n{e.output[-2000:]}"
                ) from None

    def k8s_ready(self, ips: list[str]) -> None:
        kc = localconfig.kubeconfig_path(self.repo, self.cluster)
        if self.kubectl is None or not kc.exists():
            log.warning(
                "no kubeconfig in .state/: Kubernetes readiness not checked "
                "(run `invoke kubeconfig`)"
            )
            return
        poll = Poll(self.opts.health_timeout)
        while True:
            nodes = {
                n.ip: n
                for n in parse_nodes(run(self.kubectl, Kubectl(kc).get_nodes(), timeout=60).stdout)
            }
            bad = [
                ip
                for ip in ips
                if not (nodes.get(ip) and nodes[ip].ready and not nodes[ip].unschedulable)
            ]
            if not bad:
                return
            if not poll.wait():
                raise GateFailed(f"not Ready (or still cordoned) in Kubernetes: {', '.join(bad)}")

    # one node ---------------------------------------------------------------------------------
    def _upgrade(self, node: Node, image: str, running: str, *, stage: bool) -> None:
        """One `talosctl upgrade`, waited for. A staged upgrade reboots the node by itself: its
        StageUpgrade sequence ends with a reboot phase, and the next boot installs the staged
        image and reboots into it (v1.7.0..v1.12.x internal/app/machined/pkg/runtime/v1alpha1/
        v1alpha1_sequencer.go), so talosctl's tracker follows it back; a `reboot` sent meanwhile
        would be refused by machined's sequencer lock, or reboot the node a second time."""
        legacy = stage and not staged_upgrade_reaches_node(self.talosctl_version, running)
        if legacy:
            # talosctl >= 1.13 upgrades a >= 1.13 node through LifecycleService.Upgrade and
            # ignores --stage there; only the deprecated legacy path (--legacy, until Talos
            # 1.18) still runs the StageUpgrade sequence (v1.13.0 cmd/talosctl/cmd/talos/
            # upgrade.go).
            log.warning(
                "%s: talosctl %s upgrades Talos %s nodes through the LifecycleService, which "
                "ignores --stage; using the deprecated legacy path (--legacy --stage)",
                node.ip,
                self.talosctl_version,
                running,
            )
        self._run(
            self.tc.upgrade(
                node.ip,
                image,
                stage=stage,
                legacy=legacy,
                preserve=self.opts.preserve,
                timeout=self.opts.timeout,
            ),
            node=node.ip,
            timeout=self.opts.timeout + 60,
        )

    def upgrade_node(self, step: NodeStep) -> None:
        node = self.nodes[step.ip]
        running = step.current
        for hop in step.hops:
            image = self.cluster.installer_image(hop)
            with self.journal.step("upgrade", node.ip, image=image, role=node.role):
                self.opts.reporter.node(node.ip, f"upgrading to {hop}")
                try:
                    self._upgrade(node, image, running, stage=self.opts.stage)
                except CommandFailed as e:
                    if BUSY_FILE not in e.output or self.opts.stage:
                        raise
                    # The runbook's answer to a file held open on disk: a staged upgrade, which
                    # installs early in the next boot, before anything holds the file.
                    log.warning(
                        "%s: upgrade failed on a busy file (%s); retrying once as a staged "
                        "upgrade (it reboots the node by itself)",
                        node.ip,
                        BUSY_FILE,
                    )
                    self.journal.write("upgrade", "staged-retry", node.ip, image=image)
                    self._upgrade(node, image, running, stage=True)
            running = hop
            with self.journal.step("verify-version", node.ip, expected=hop):
                out = self._run(self.tc.version(node.ip), node=node.ip, timeout=60)
                now = parse_server_version(out).get(node.ip)
                if now != hop:
                    raise WorkflowError(
                        f"{node.ip} ({node.hostname}) came back at Talos {now} after upgrading "
                        f"to {hop}: the new version did not stick (A/B rollback). Look at "
                        f"`talosctl dmesg -n {node.ip}` before retrying"
                    )
            self.opts.reporter.node(node.ip, f"at {hop}")

    def run_plan(self, p: UpgradePlan) -> None:
        for i, batch in enumerate(p.batches, 1):
            names = ", ".join(s.ip for s in batch)
            progress.phase(f"Batch {i}/{len(p.batches)}: {names}")
            with self.journal.step("before-gates", None, nodes=[s.ip for s in batch]):
                self.health_before(names)
                for s in batch:
                    if s.role == "controlplane":
                        self.etcd_gate(self.nodes[s.ip])
                        self.snapshot(self.nodes[s.ip])
            self.upgrade_batch(batch, names)

    def health_before(self, names: str) -> None:
        """The cluster health check before a batch; skipped when the previous batch's check
        after it has just passed with nothing run in between (no user gates)."""
        if self._healthy_just_now:
            log.debug("cluster health before %s: checked after the previous batch", names)
            return
        self.health(f"before {names}")

    def upgrade_batch(self, batch: tuple[NodeStep, ...], names: str) -> None:
        """Upgrade the batch, then its gates: Ready in Kubernetes, cluster health, user gates."""
        self._healthy_just_now = False
        parallel(self.upgrade_node, list(batch), len(batch))
        with self.journal.step("after-gates", None, nodes=[s.ip for s in batch]):
            self.k8s_ready([s.ip for s in batch])
            self.health(f"after {names}")
            self.user_gates(names)
        self._healthy_just_now = not [*self.cluster.upgrade.gates, *self.opts.gates]

    def commands(self, p: UpgradePlan) -> list[str]:
        out = []
        for batch in p.batches:
            for s in batch:
                if s.role == "controlplane":
                    out.append(
                        shlex.join(
                            [
                                "talosctl",
                                *self.tc.etcd_snapshot(
                                    s.ip,
                                    Path(".state")
                                    / self.cluster.name
                                    / "backups"
                                    / f"<UTC timestamp>{etcd_wf.SUFFIX}",
                                ),
                            ]
                        )
                    )
                for hop in s.hops:
                    out.append(
                        shlex.join(
                            [
                                "talosctl",
                                *self.tc.upgrade(
                                    s.ip,
                                    self.cluster.installer_image(hop),
                                    stage=self.opts.stage,
                                    preserve=self.opts.preserve,
                                    timeout=self.opts.timeout,
                                ),
                            ]
                        )
                    )
        return out


def staged_upgrade_reaches_node(talosctl: str | None, running: str) -> bool:
    """Whether `talosctl upgrade --stage` runs the node's StageUpgrade sequence: always with
    talosctl up to v1.12; from v1.13 only when the node is older than 1.13, where talosctl falls
    back to the legacy MachineService.Upgrade (talosUpgradeAPIVersionRange ">1.13.0-alpha.2",
    v1.13.0 cmd/talosctl/cmd/talos/upgrade.go). An unknown talosctl is taken as older."""
    if talosctl is None:
        return True
    client, node = Version.parse(talosctl), Version.parse(running)
    return (client.major, client.minor) < (1, 13) or (node.major, node.minor) < (1, 13)


@dataclass
class UpgradeOutcome:
    plan: UpgradePlan
    commands: list[str]


def upgrade(
    repo: Repo,
    cluster: Cluster,
    prog: Program,
    kubectl: Program | None,
    opts: Options,
    *,
    target: str | None = None,
    only: list[str] | None = None,
) -> UpgradeOutcome:
    want = Version.parse(target) if target else cluster.talos
    up = Upgrader(repo, cluster, prog, kubectl, opts)
    ips = only or [n.ip for n in cluster.nodes]
    progress.phase(f"Observe {len(ips)} node(s) of {cluster.name}")
    p = plan(cluster, up.observe(ips), want, max_unavailable=opts.max_unavailable, only=only)
    progress.phase("Plan")
    for line in p.describe():
        log.info("%s", line)
    outcome = UpgradeOutcome(p, up.commands(p))
    if opts.dry_run or p.noop:
        return outcome
    with cluster_lock(repo, cluster, "upgrade"):
        # talosctl drives the upgrade's tracker: it must know the target version's API
        up.talosctl_version = toolbox.check_talosctl_version(prog, cluster)
        up.journal.write("upgrade", "start", None, target=p.target)
        up.run_plan(p)
        progress.phase("Observe again")
        require_at_target(up.observe(ips), p.target, "the upgrade")
        up.journal.write("upgrade", "ok", None, target=p.target)
    return outcome


# -- Kubernetes -----------------------------------------------------------------------------------
@dataclass
class K8sOutcome:
    current: str
    target: str
    noop: str | None
    commands: list[str]


def upgrade_k8s(
    repo: Repo,
    cluster: Cluster,
    prog: Program,
    kubectl: Program,
    *,
    to: str | None,
    dry_run: bool,
    timeout: float = 3600,
) -> K8sOutcome:
    target = Version.parse(to) if to else cluster.kubernetes
    tc = Talosctl(localconfig.talosconfig_path(repo, cluster))
    kc = Kubectl(localconfig.kubeconfig_path(repo, cluster))
    cp = cluster.controlplanes[0].ip
    progress.phase(f"Observe {cluster.name}")
    nodes = parse_nodes(run(kubectl, kc.get_nodes(), timeout=60).stdout)
    if not nodes:
        raise WorkflowError(f"kubectl lists no nodes for {cluster.name}; run `invoke kubeconfig`")
    current = min(Version.parse(n.kubelet) for n in nodes)
    talos = parse_server_version(
        run(
            prog,
            [
                "version",
                "--talosconfig",
                str(tc.talosconfig),
                "--nodes",
                ",".join(n.ip for n in cluster.nodes),
                "--endpoints",
                cp,
            ],
            timeout=60,
        ).stdout
    )
    for ip, tag in sorted(talos.items()):
        why = check_kubernetes_supported(Version.parse(tag), target)
        if why:
            raise TalosProvError(f"refusing: {why} (node {ip}); upgrade Talos first")
    if (target.major, target.minor) > (
        current.major,
        current.minor + 1,
    ) or target.major != current.major:
        raise TalosProvError(
            f"refusing: Kubernetes {current.plain()} → {target.plain()} skips a minor; upgrade "
            f"to {current.major}.{current.minor + 1}.x first (kubeadm-style skew policy)"
        )
    if target < current:
        raise TalosProvError(
            f"refusing: Kubernetes cannot be downgraded ({current.plain()} → {target.plain()})"
        )
    cmds = [
        shlex.join(["talosctl", *tc.upgrade_k8s(cp, target.plain(), dry_run=True)]),
        shlex.join(["talosctl", *tc.upgrade_k8s(cp, target.plain(), dry_run=False)]),
    ]
    if all(Version.parse(n.kubelet) == target for n in nodes) and _control_plane_pods_ready(
        kubectl, kc
    ):
        return K8sOutcome(
            current.plain(),
            target.plain(),
            f"every node already runs Kubernetes {target.plain()}",
            cmds,
        )
    journal = Journal(repo, cluster, "upgrade-k8s")
    progress.phase(f"talosctl upgrade-k8s --to {target.plain()} --dry-run")
    try:
        out = run(
            prog, tc.upgrade_k8s(cp, target.plain(), dry_run=True), node=cp, timeout=timeout
        ).stdout
    except CommandFailed as e:
        raise WorkflowError(
            f"the upgrade-k8s dry run found problems; nothing was changed:\n{e.output[-3000:]}"
        ) from None
    for line in out.splitlines():
        log.debug("dry-run: %s", line)
    if dry_run:
        return K8sOutcome(current.plain(), target.plain(), None, cmds)
    with cluster_lock(repo, cluster, "upgrade-k8s"):
        progress.phase(f"talosctl upgrade-k8s --to {target.plain()}")
        with journal.step("upgrade-k8s", cp, to=target.plain()):
            run(prog, tc.upgrade_k8s(cp, target.plain(), dry_run=False), node=cp, timeout=timeout)
        progress.phase("Verify kubelets and control-plane pods")
        poll = Poll(300)
        while True:
            # two independent reads at once: the control-plane pods and the kubelets' versions
            with ThreadPoolExecutor(max_workers=1) as pool:
                pods = pool.submit(_control_plane_pods_ready, kubectl, kc)
                nodes = parse_nodes(run(kubectl, kc.get_nodes(), timeout=60).stdout)
                ready = pods.result()
            behind = [f"{n.name} ({n.kubelet})" for n in nodes if n.kubelet != target.plain()]
            if not behind and ready:
                break
            if not poll.wait():
                raise WorkflowError(
                    "after upgrade-k8s: "
                    + (
                        f"kubelets not at {target.plain()}: {', '.join(behind)}"
                        if behind
                        else "control-plane pods are not all Ready"
                    )
                )
        journal.write("upgrade-k8s", "verified", None, to=target.plain())
    return K8sOutcome(current.plain(), target.plain(), None, cmds)


def _control_plane_pods_ready(kubectl: Program, kc: Kubectl) -> bool:
    pods = parse_pods_ready(run(kubectl, kc.get_pods("kube-system"), timeout=60).stdout)
    cp = {
        k: v
        for k, v in pods.items()
        if k.startswith(("kube-apiserver-", "kube-controller-manager-", "kube-scheduler-"))
    }
    return bool(cp) and all(cp.values())


def require_at_target(observed: dict[str, Observed], target: str, after: str) -> None:
    """The observe-again check: every node reports the target (catches an A/B rollback)."""
    behind = [ip for ip, o in observed.items() if o.version != target]
    if behind:
        raise WorkflowError(
            f"after {after} these nodes are not at {target}: "
            + ", ".join(f"{ip} ({observed[ip].version})" for ip in behind)
        )

"""Carry out an upgrade path (workflows/path.py): Talos hops node by node, Kubernetes hops between.

observe (Talos per node, Kubernetes per kubelet, the talosconfig, the committed configs) → plan
(pure, path.plan_path) → apply hop by hop → observe again. Each Talos hop reuses the rolling
upgrade of workflows/upgrade.py (control planes one at a time with talosprov's own etcd health and
quorum gate and a snapshot before each, workers in batches, health and user gates after), with a
kubectl gate that also waits for Cilium on the upgraded nodes: from Talos 1.13 neither the quorum
guard (LifecycleService.Upgrade, internal/app/lifecycle/lifecycle.go @v1.13.9) nor the readiness
checks of `talosctl health` with CNI none (pkg/cluster/check/default.go @v1.13.9) come from Talos.
A re-run plans again from the live state, so it resumes where a stop left off.

Which talosctl drives a hop: upgrade-k8s only accepts the Kubernetes upgrade paths compiled into
that talosctl (pkg/cluster/kubernetes/talos_managed.go: go-kubernetes upgrade.Path.IsSupported,
e.g. v1.13.9 refuses 1.36 → 1.37), and a talosctl ≥ 1.13 falls back to the legacy upgrade API for
older nodes (cmd/talosctl/cmd/talos/upgrade.go @v1.13.9). So every hop into Talos minor 1.N is
driven by $TALOSCTL_1_N when set, else by the default talosctl when it is at least 1.N.
"""

from __future__ import annotations

import base64
import json
import logging
import os
import shlex
from dataclasses import dataclass, replace
from pathlib import Path
from typing import Any

from .. import localconfig, progress, toolbox, yamlio
from ..errors import GateFailed, TalosProvError, ToolMissing, WorkflowError
from ..model import Cluster, Repo
from ..tools.kubectl import Kubectl, parse_nodes
from ..tools.run import Program, resolve, run
from ..tools.talosctl import Talosctl, parse_server_version
from ..versions import Version
from . import path as path_wf
from . import upgrade as up_wf
from .runtime import Journal, Poll, cluster_lock, parallel

log = logging.getLogger(__name__)


# -- observe --------------------------------------------------------------------------------------
def observe_kubernetes(repo: Repo, cluster: Cluster, kubectl: Program | None) -> Version | None:
    """The cluster's Kubernetes: the oldest kubelet (None without kubectl or a kubeconfig)."""
    kc = localconfig.kubeconfig_path(repo, cluster)
    if kubectl is None or not kc.exists():
        return None
    nodes = parse_nodes(run(kubectl, Kubectl(kc).get_nodes(), timeout=60).stdout)
    return min((Version.parse(n.kubelet) for n in nodes), default=None)


def _committed_install(repo: Repo, cluster: Cluster) -> dict[str, Any]:
    """.machine.install of the committed (generated/) control-plane config."""
    p = repo.generated_dir(cluster) / "controlplane.yaml"
    if not p.exists():
        return {}
    for doc in yamlio.load_all(p.read_text()):
        if isinstance(doc, dict) and isinstance(doc.get("machine"), dict):
            install = doc["machine"].get("install") or {}
            return install if isinstance(install, dict) else {}
    return {}


def talosconfig_has_client_auth(path: Path) -> bool:
    """Whether the talosconfig's client certificate carries the clientAuth extended key usage,
    which apid requires from Talos 1.12 (hack/release.toml @v1.12.0 "Feature Lock")."""
    from cryptography import x509
    from cryptography.x509.oid import ExtendedKeyUsageOID

    if not path.exists():
        return True  # nothing to reissue; the preflight names a missing talosconfig
    cfg = yamlio.load(path.read_text()) or {}
    ctx = (cfg.get("contexts") or {}).get(cfg.get("context")) or {}
    crt = ctx.get("crt")
    if not crt:
        return True
    cert = x509.load_pem_x509_certificate(base64.b64decode(crt))
    try:
        eku = cert.extensions.get_extension_for_class(x509.ExtendedKeyUsage).value
    except x509.ExtensionNotFound:
        return False
    return ExtendedKeyUsageOID.CLIENT_AUTH in eku


def facts(repo: Repo, cluster: Cluster) -> path_wf.Facts:
    install = _committed_install(repo, cluster)
    exts = tuple(
        str(e.get("image", e)) if isinstance(e, dict) else str(e)
        for e in install.get("extensions") or []
    )
    return path_wf.Facts(
        contract=cluster.contract,
        extensions=exts,
        kernel_args=tuple(str(a) for a in install.get("extraKernelArgs") or []),
        grub_uki_cmdline=bool(install.get("grubUseUKICmdline")),
        talosconfig_client_auth=talosconfig_has_client_auth(
            localconfig.talosconfig_path(repo, cluster)
        ),
    )


# -- which talosctl drives which hop -------------------------------------------------------------
def _client_version(prog: Program) -> Version | None:
    try:
        tag, _out = toolbox.client_tag(prog)
    except TalosProvError:  # not runnable, or not a talosctl: this one cannot drive a hop
        return None
    tag = tag.split("-", 1)[0]
    try:
        return Version.parse(tag)
    except ValueError:
        return None


def talosctl_for_hops(default: Program, minors: list[str]) -> dict[str, Program]:
    """The talosctl of every hop minor ("1.13" → program), or ToolMissing naming each gap."""
    out: dict[str, Program] = {}
    missing: list[str] = []
    default_v = _client_version(default)
    for m in sorted(set(minors), key=lambda s: tuple(int(x) for x in s.split("."))):
        var = "TALOSCTL_" + m.replace(".", "_")
        need = Version.parse(m + ".0")
        if os.environ.get(var):
            p = resolve_var(var, default)
            v = _client_version(p)
            if v is None or (v.major, v.minor) < (need.major, need.minor):
                raise ToolMissing(
                    f"{var}={os.environ[var]} is {f'talosctl {v}' if v else 'not a talosctl'}, "
                    f"not a talosctl {m} or newer: point it at one"
                )
            out[m] = p
            continue
        if default_v is not None and (default_v.major, default_v.minor) >= (need.major, need.minor):
            out[m] = default
            continue
        missing.append(var)
    if missing:
        have = f"talosctl {default_v}" if default_v else "no usable talosctl"
        wanted = [(v, v.removeprefix("TALOSCTL_").replace("_", ".")) for v in missing]
        raise ToolMissing(
            f"no talosctl for the hop(s) into Talos {', '.join(m for _, m in wanted)}: the "
            f"default is {have} ({default.source}). Set "
            + ", ".join(f"{v}=/path/to/talosctl-{m}" for v, m in wanted)
            + ", or point TALOSCTL at a talosctl at least as new as the target (it drives "
            "every hop; older nodes get the legacy upgrade API)"
        )
    return out


def resolve_var(var: str, default: Program) -> Program:
    explicit = os.environ[var]
    saved = os.environ.get("TALOSCTL")
    os.environ["TALOSCTL"] = explicit
    try:
        p = resolve("talosctl", emulator_state=default.emulator_state)
    except ToolMissing:
        raise ToolMissing(f"{var}={explicit} is not an executable file; fix or unset it") from None
    finally:
        if saved is None:
            os.environ.pop("TALOSCTL", None)
        else:
            os.environ["TALOSCTL"] = saved
    return replace(p, source=f"${var}")


# -- one Talos hop ---------------------------------------------------------------------------------
class _HopTalosctl(Talosctl):
    """talosctl upgrade with --legacy for GRUB nodes with kernel arguments (1.13+)."""

    def __init__(self, talosconfig: Path, legacy: bool) -> None:
        super().__init__(talosconfig)
        self.legacy = legacy

    def upgrade(self, node: str, image: str, **kw: Any) -> list[str]:
        argv = super().upgrade(node, image, **kw)
        if self.legacy and "--legacy" not in argv:
            argv.append("--legacy")
        return argv


class HopUpgrader(up_wf.Upgrader):
    def __init__(
        self,
        repo: Repo,
        cluster: Cluster,
        prog: Program,
        kubectl: Program | None,
        opts: up_wf.Options,
        legacy: bool,
    ) -> None:
        super().__init__(repo, cluster, prog, kubectl, opts)
        self.tc = _HopTalosctl(localconfig.talosconfig_path(repo, cluster), legacy)
        self.journal = Journal(repo, cluster, "upgrade-path")

    def run_plan(self, p: up_wf.UpgradePlan) -> None:
        """Like Upgrader.run_plan, but talosprov's own etcd health and quorum check comes first
        for a control plane: from 1.13 the server no longer makes it."""
        for i, batch in enumerate(p.batches, 1):
            names = ", ".join(s.ip for s in batch)
            progress.phase(f"Batch {i}/{len(p.batches)}: {names}")
            with self.journal.step("before-gates", None, nodes=[s.ip for s in batch]):
                for s in batch:
                    if s.role == "controlplane":
                        self.etcd_gate(self.nodes[s.ip])
                self.health_before(names)
                for s in batch:
                    if s.role == "controlplane":
                        self.snapshot(self.nodes[s.ip])
            self.upgrade_batch(batch, names)

    def k8s_ready(self, ips: list[str]) -> None:
        # independent read-only waits: the nodes Ready and their Cilium agents Ready
        parallel(lambda wait: wait(ips), [super().k8s_ready, self.cilium_ready], 2)

    def cilium_ready(self, ips: list[str]) -> None:
        """The Cilium agent pod of every upgraded node Ready (CNI none + Cilium manifest)."""
        kc = localconfig.kubeconfig_path(self.repo, self.cluster)
        if self.kubectl is None or not kc.exists() or not _declares_cilium(self.repo, self.cluster):
            return
        names = {self.nodes[ip].hostname: ip for ip in ips}
        poll = Poll(self.opts.health_timeout)
        while True:
            pods = json.loads(
                run(self.kubectl, Kubectl(kc).get_pods("kube-system"), timeout=60).stdout
            ).get("items", [])
            ready = {
                p["spec"].get("nodeName")
                for p in pods
                if (p["metadata"].get("labels") or {}).get("k8s-app") == "cilium"
                and p.get("status", {}).get("phase") == "Running"
                and all(c.get("ready") for c in p["status"].get("containerStatuses", []))
            }
            bad = sorted(f"{ip} ({h})" for h, ip in names.items() if h not in ready)
            if not bad:
                return
            if not poll.wait():
                raise GateFailed(
                    f"Cilium is not rolled out (no Ready cilium pod) on: {', '.join(bad)}"
                )


def _declares_cilium(repo: Repo, cluster: Cluster) -> bool:
    p = repo.generated_dir(cluster) / "controlplane.yaml"
    if not p.exists():
        return False
    for doc in yamlio.load_all(p.read_text()):
        if isinstance(doc, dict) and isinstance(doc.get("cluster"), dict):
            names = [str(m.get("name", "")) for m in doc["cluster"].get("inlineManifests") or []]
            return any("cilium" in n for n in names)
    return False


def hop_plan(cluster: Cluster, hop: path_wf.TalosHop, max_unavailable: int) -> up_wf.UpgradePlan:
    """The rolling plan of one Talos hop: control planes one per batch, workers in batches."""
    steps = [up_wf.NodeStep(m.ip, m.hostname, m.role, m.current, (hop.version,)) for m in hop.moves]
    batches: list[tuple[up_wf.NodeStep, ...]] = [(s,) for s in steps if s.role == "controlplane"]
    workers = [s for s in steps if s.role != "controlplane"]
    size = max(1, max_unavailable)
    batches += [tuple(workers[i : i + size]) for i in range(0, len(workers), size)]
    return up_wf.UpgradePlan(hop.version, tuple(batches))


# -- the whole path ------------------------------------------------------------------------------
@dataclass
class PathOutcome:
    path: path_wf.Path
    commands: list[str]


def _commands(cluster: Cluster, tc: Talosctl, p: path_wf.Path, opts: up_wf.Options) -> list[str]:
    out: list[str] = []
    cp = cluster.controlplanes[0].ip
    snap = Path(".state") / cluster.name / "backups" / "<UTC timestamp>.snapshot"
    for i, h in enumerate(p.hops, 1):
        # which talosctl runs it: $TALOSCTL_1_N, else the default one if it is at least 1.N
        who = f"  # hop {i}, talosctl ≥ {h.talosctl_minor}"
        if isinstance(h, path_wf.K8sHop):
            for dry in (True, False):
                out.append(
                    shlex.join(["talosctl", *tc.upgrade_k8s(cp, h.target, dry_run=dry)]) + who
                )
            continue
        htc = _HopTalosctl(tc.talosconfig, h.legacy)
        for m in h.moves:
            if m.role == "controlplane":
                out.append(shlex.join(["talosctl", *htc.etcd_snapshot(m.ip, snap)]) + who)
            argv = htc.upgrade(m.ip, h.image, preserve=opts.preserve, timeout=opts.timeout)
            out.append(shlex.join(["talosctl", *argv]) + who)
    return out


def upgrade_path(
    repo: Repo,
    cluster: Cluster,
    prog: Program,
    kubectl: Program | None,
    opts: up_wf.Options,
    *,
    target: str | None = None,
    via: list[str] | None = None,
) -> PathOutcome:
    want = Version.parse(target) if target else cluster.talos
    dirty = uncommitted(repo, cluster)
    if dirty:
        log.warning("%s", dirty)
    probe_up = up_wf.Upgrader(repo, cluster, prog, kubectl, opts)
    ips = [n.ip for n in cluster.nodes]
    progress.phase(f"Observe {len(ips)} node(s) of {cluster.name}")
    observed = probe_up.observe(ips)
    nodes = []
    for n in cluster.nodes:
        o = observed[n.ip]
        if o.version is None:
            raise WorkflowError(
                f"{n.ip} ({n.hostname}) did not report its Talos version (stage {o.stage}); "
                f"is it up and running {cluster.name}?"
            )
        nodes.append(path_wf.NodeNow(n.ip, n.hostname, n.role, Version.parse(o.version)))
    k8s = observe_kubernetes(repo, cluster, kubectl)
    if k8s is None:
        log.warning(
            "no kubectl or kubeconfig: taking Kubernetes %s from the cluster file",
            cluster.kubernetes.plain(),
        )
        k8s = cluster.kubernetes
    p = path_wf.plan_path(
        cluster,
        nodes,
        k8s,
        want,
        cluster.kubernetes,
        facts(repo, cluster),
        via=[Version.parse(v) for v in via or []],
        source=_cluster_file(repo, cluster) or "the cluster file",
    )
    progress.phase("Plan")
    for line in p.describe():
        log.info("%s", line)
    outcome = PathOutcome(p, _commands(cluster, probe_up.tc, p, opts))
    if opts.dry_run or p.noop:
        return outcome
    progs = talosctl_for_hops(prog, [h.talosctl_minor for h in p.hops])
    if p.k8s_hops and kubectl is None:
        raise ToolMissing("the path has Kubernetes hops: kubectl is needed (set KUBECTL)")
    journal = Journal(repo, cluster, "upgrade-path")
    if any(s.id == "reissue-talosconfig" for h in p.talos_hops for s in h.steps):
        # before the path, not at its 1.12 hop: a certificate with clientAuth works on every
        # version, and `certs --renew` takes the cluster lock itself
        from . import certs

        progress.phase("Reissue the talosconfig (clientAuth key usage, needed from Talos 1.12)")
        with journal.step("reissue-talosconfig", None):
            certs.renew(repo, cluster, prog)
    with cluster_lock(repo, cluster, "upgrade"):
        journal.write("path", "start", None, target=p.target, kubernetes=p.kubernetes_target)
        for i, h in enumerate(p.hops, 1):
            hp = progs[h.talosctl_minor]
            if isinstance(h, path_wf.K8sHop):
                progress.phase(f"Hop {i}/{len(p.hops)}: Kubernetes {h.current} → {h.target}")
                assert kubectl is not None
                with journal.step("upgrade-k8s", None, to=h.target):
                    k8s_hop(repo, cluster, hp, kubectl, h.target, opts.timeout)
                continue
            progress.phase(f"Hop {i}/{len(p.hops)}: Talos {h.version} on {len(h.moves)} node(s)")
            up = HopUpgrader(repo, cluster, hp, kubectl, opts, h.legacy)
            if hasattr(up, "talosctl_version"):
                v = _client_version(hp)
                up.talosctl_version = v.v() if v else None
            up.run_plan(hop_plan(cluster, h, opts.max_unavailable))
        progress.phase("Observe again")
        up_wf.require_at_target(probe_up.observe(ips), p.target, "the path")
        journal.write("path", "ok", None, target=p.target, kubernetes=p.kubernetes_target)
    return outcome


def k8s_hop(
    repo: Repo, cluster: Cluster, prog: Program, kubectl: Program, to: str, timeout: float
) -> None:
    """One upgrade-k8s minor (or patch): its dry run, the run, then every kubelet verified."""
    tc = Talosctl(localconfig.talosconfig_path(repo, cluster))
    kc = Kubectl(localconfig.kubeconfig_path(repo, cluster))
    cp = cluster.controlplanes[0].ip
    nodes = parse_nodes(run(kubectl, kc.get_nodes(), timeout=60).stdout)
    if (
        nodes
        and all(n.kubelet == to for n in nodes)
        and up_wf._control_plane_pods_ready(kubectl, kc)
    ):
        return  # done by an earlier, interrupted run
    run(prog, tc.upgrade_k8s(cp, to, dry_run=True), node=cp, timeout=timeout)
    run(prog, tc.upgrade_k8s(cp, to, dry_run=False), node=cp, timeout=timeout)
    poll = Poll(300)
    while True:
        nodes = parse_nodes(run(kubectl, kc.get_nodes(), timeout=60).stdout)
        behind = [f"{n.name} ({n.kubelet})" for n in nodes if n.kubelet != to]
        if not behind and up_wf._control_plane_pods_ready(kubectl, kc):
            return
        if not poll.wait():
            raise WorkflowError(
                f"after upgrade-k8s --to {to}: "
                + (
                    f"kubelets behind: {', '.join(behind)}"
                    if behind
                    else "control-plane pods not Ready"
                )
            )


# -- Kubernetes alone ------------------------------------------------------------------------------
def k8s_hops(current: Version, target: Version, talos: dict[str, Version]) -> list[Version]:
    """Kubernetes minors one at a time from current to target (each hop at the patch of
    data/versions.yaml, the last at target), refusing one a node's Talos does not support. Pure."""
    from ..errors import TalosProvError
    from ..versions import check_kubernetes_supported, kubernetes_patch

    if target < current:
        raise TalosProvError(
            f"refusing: Kubernetes cannot be downgraded ({current.plain()} → {target.plain()})"
        )
    if target.major != current.major:
        raise TalosProvError(f"no Kubernetes path from {current.plain()} to {target.plain()}")
    hops: list[Version] = []
    k = current
    while (k.major, k.minor) < (target.major, target.minor):
        nxt = (k.major, k.minor + 1)
        k = target if nxt == (target.major, target.minor) else kubernetes_patch(nxt)
        hops.append(k)
    if k < target:
        hops.append(target)
    for hop in hops:
        for ip, tag in sorted(talos.items()):
            why = check_kubernetes_supported(tag, hop)
            if why:
                raise TalosProvError(f"refusing: {why} (node {ip}); upgrade Talos first")
    return hops


def walk_k8s(
    repo: Repo,
    cluster: Cluster,
    prog: Program,
    kubectl: Program,
    *,
    to: str | None,
    dry_run: bool,
) -> list[up_wf.K8sOutcome]:
    """`invoke upgrade-k8s`: Kubernetes minor by minor to the target, each hop the workflow of
    upgrade.upgrade_k8s (its dry run, the run, every kubelet verified); re-runs resume."""
    target = Version.parse(to) if to else cluster.kubernetes
    kc = Kubectl(localconfig.kubeconfig_path(repo, cluster))
    tc = Talosctl(localconfig.talosconfig_path(repo, cluster))
    cp = cluster.controlplanes[0].ip
    nodes = parse_nodes(run(kubectl, kc.get_nodes(), timeout=60).stdout)
    if not nodes:
        raise WorkflowError(f"kubectl lists no nodes for {cluster.name}; run `invoke kubeconfig`")
    current = min(Version.parse(n.kubelet) for n in nodes)
    args = ["version", "--talosconfig", str(tc.talosconfig), "--nodes"]
    args += [",".join(n.ip for n in cluster.nodes), "--endpoints", cp]
    talos = parse_server_version(run(prog, args, timeout=60).stdout)
    hops = k8s_hops(current, target, {ip: Version.parse(t) for ip, t in talos.items()})
    if len(hops) <= 1:
        one = hops[0].plain() if hops else target.plain()
        return [up_wf.upgrade_k8s(repo, cluster, prog, kubectl, to=one, dry_run=dry_run)]
    if dry_run:
        # only the first hop can be dry-run against the cluster as it is now
        outs = [up_wf.upgrade_k8s(repo, cluster, prog, kubectl, to=hops[0].plain(), dry_run=True)]
        for prev, h in zip(hops, hops[1:], strict=False):
            cmds = [
                shlex.join(["talosctl", *tc.upgrade_k8s(cp, h.plain(), dry_run=d)])
                for d in (True, False)
            ]
            outs.append(up_wf.K8sOutcome(prev.plain(), h.plain(), None, cmds))
        return outs
    return [
        up_wf.upgrade_k8s(repo, cluster, prog, kubectl, to=h.plain(), dry_run=False) for h in hops
    ]


def uncommitted(repo: Repo, cluster: Cluster) -> str | None:
    """A warning when the cluster file or its generated/ configs differ from the last commit:
    the upgrade then carries out something nobody reviewed."""
    from .. import gitrepo

    if not gitrepo.is_repo(repo.root):
        return None
    cf = _cluster_file(repo, cluster)
    paths = [cf] if cf else []
    paths.append(repo.rel(repo.generated_dir(cluster)))
    changed = gitrepo.dirty(repo.root, paths)
    if not changed:
        return None
    return (
        f"upgrading {cluster.name} from uncommitted changes ({', '.join(changed[:5])}): commit "
        "and review them first (the upgrade carries out what the working tree says)"
    )


def _cluster_file(repo: Repo, cluster: Cluster) -> str | None:
    files = repo.cluster_files()
    named = [cluster.name] if cluster.name in files else repo.aliases_named(cluster.name)
    return repo.rel(files[named[0]]) if named else None


def check_node_hops(
    repo: Repo,
    cluster: Cluster,
    prog: Program,
    kubectl: Program | None,
    ip: str,
    target: str | None,
) -> None:
    """`upgrade --node` moves one node without Kubernetes hops: refuse a hop whose Talos does
    not support the cluster's Kubernetes (`invoke upgrade --cluster` interleaves them)."""
    from ..errors import TalosProvError
    from ..versions import check_kubernetes_supported
    from ..versions import upgrade_path as talos_hops

    k8s = observe_kubernetes(repo, cluster, kubectl)
    if k8s is None:
        return
    want = Version.parse(target) if target else cluster.talos
    seen = up_wf.Upgrader(repo, cluster, prog, kubectl, up_wf.Options()).observe([ip])[ip]
    if seen.version is None or Version.parse(seen.version) >= want:
        return
    for hop in talos_hops(Version.parse(seen.version), want):
        why = check_kubernetes_supported(hop, k8s)
        if why:
            raise TalosProvError(
                f"refusing to upgrade {ip} to {hop}: {why} and the cluster runs Kubernetes "
                f"{k8s.plain()}; `invoke upgrade --cluster {cluster.name}` moves Kubernetes "
                "between the Talos hops"
            )

"""The upgrade path of a cluster: Talos minors in turn, Kubernetes hops interleaved. Pure.

From what the nodes run and the cluster's Kubernetes version to the target, the path
1. visits every Talos minor in turn on every node, at the newest patch of each intermediate minor
   (the upgrade guides, docs v1.10..v1.14 upgrading-talos "Supported upgrade paths": migrations are
   tested only between adjacent minors),
2. moves Kubernetes one minor at a time (upgrade-k8s refuses anything else:
   pkg/cluster/kubernetes/talos_managed.go → go-kubernetes upgrade.Path.IsSupported) and as early
   as every node's Talos allows, so that at every moment every node's Talos supports the cluster's
   Kubernetes (pkg/machinery/compatibility/talosNNN/talosNNN.go; e.g. 1.31 before any node runs
   1.13, 1.32 before 1.14),
3. refuses a hop the target's installer would refuse (MinimumHostUpgradeVersion, "host version X is
   too old to upgrade to Talos Y", pkg/machinery/compatibility/talos_version.go),
4. carries the steps the source or guides require at a hop (data/versions.yaml `hops:`).

Nodes already at or past a level are skipped, so planning again from live state resumes.
"""

from __future__ import annotations

from dataclasses import dataclass, field

from ..errors import ClusterDefinitionError, WorkflowError
from ..model import Cluster
from ..versions import (
    HopStep,
    TalosMinor,
    Version,
    hop_steps,
    kubernetes_patch,
    matrix,
    talos_minor,
)

CONTRACT_DEFAULT_HELP = (
    "add `config_contract: v{m}` (the Talos minor the cluster was created with) to {file}"
)


@dataclass(frozen=True)
class NodeNow:
    ip: str
    hostname: str
    role: str
    version: Version


@dataclass(frozen=True)
class Facts:
    """What the planner needs besides versions: read from the cluster file and the node configs."""

    # the machine-config contract (gen config --talos-version)
    contract: tuple[int, int] | None = None
    extensions: tuple[str, ...] = ()  # .machine.install.extensions in the generated configs
    kernel_args: tuple[str, ...] = ()  # .machine.install.extraKernelArgs
    grub_uki_cmdline: bool = False  # .machine.install.grubUseUKICmdline
    talosconfig_client_auth: bool = True  # the talosconfig certificate has the clientAuth EKU


@dataclass(frozen=True)
class Move:
    ip: str
    hostname: str
    role: str
    current: str


@dataclass(frozen=True)
class TalosHop:
    version: str
    moves: tuple[Move, ...]
    image: str
    legacy: bool  # talosctl upgrade --legacy (GRUB kernel arguments, 1.13+)
    steps: tuple[HopStep, ...]
    talosctl_minor: str  # the oldest talosctl that can drive it

    kind = "talos"


@dataclass(frozen=True)
class K8sHop:
    current: str
    target: str
    talosctl_minor: str

    kind = "kubernetes"


Hop = TalosHop | K8sHop


@dataclass(frozen=True)
class Path:
    target: str
    kubernetes_target: str
    hops: tuple[Hop, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    noop: str | None = None
    warnings: tuple[str, ...] = field(default=())

    @property
    def talos_hops(self) -> list[TalosHop]:
        return [h for h in self.hops if isinstance(h, TalosHop)]

    @property
    def k8s_hops(self) -> list[K8sHop]:
        return [h for h in self.hops if isinstance(h, K8sHop)]

    def describe(self) -> list[str]:
        if self.noop:
            return [f"nothing to do: {self.noop}"]
        lines = [f"path to Talos {self.target}, Kubernetes {self.kubernetes_target}:"]
        for i, h in enumerate(self.hops, 1):
            if isinstance(h, K8sHop):
                lines.append(
                    f"{i}. Kubernetes {h.current} → {h.target} (upgrade-k8s, talosctl "
                    f"≥ {h.talosctl_minor})"
                )
                continue
            cps = [m for m in h.moves if m.role == "controlplane"]
            wk = [m for m in h.moves if m.role != "controlplane"]
            lines.append(
                f"{i}. Talos {h.version} on {len(h.moves)} node(s) (talosctl ≥ {h.talosctl_minor}"
                f"{', --legacy' if h.legacy else ''}; installer {h.image})"
            )
            lines += [
                f"   {m.ip} ({m.hostname}, {m.role}): {m.current} → {h.version}" for m in cps + wk
            ]
            for s in h.steps:
                lines.append(f"   [{s.kind}] {s.id}: {s.text} ({s.source})")
            if cps:
                lines.append(
                    "   gates: before each control plane (one at a time): etcd healthy and "
                    "quorum kept, snapshot; after each node/batch: kubectl Ready and Cilium "
                    "rolled out, talosctl health, Talos version = target"
                )
        lines += [f"   skip {ip}: {why}" for ip, why in self.skipped]
        lines += [f"warning: {w}" for w in self.warnings]
        return lines


def _k8s_max(v: Version) -> tuple[int, int]:
    return talos_minor(v).k8s_max


def _minor_row(major: int, minor: int, target: Version) -> TalosMinor:
    row = matrix().get(f"{major}.{minor}")
    if row is None:
        raise ClusterDefinitionError(
            f"no upgrade path to Talos {target}: Talos {major}.{minor} is not in "
            "talosprov/data/versions.yaml; add it there"
        )
    return row


def _levels(low: Version, target: Version, via: list[Version] | None) -> list[Version]:
    if via:
        return sorted({*(v for v in via if v < target), target})
    if (low.major, low.minor) == (target.major, target.minor):
        return [target]
    out = []
    for minor in range(low.minor + 1, target.minor):
        out.append(_minor_row(target.major, minor, target).latest)
    return [*out, target]


def plan_path(
    cluster: Cluster,
    nodes: list[NodeNow],
    kubernetes: Version,
    target: Version,
    kubernetes_target: Version,
    facts: Facts,
    *,
    via: list[Version] | None = None,
    source: str = "the cluster file",
) -> Path:
    """Every hop from the nodes' versions and the cluster's Kubernetes to the targets."""
    if not nodes:
        raise WorkflowError("no nodes to upgrade")
    for n in nodes:
        if n.version.major != target.major:
            raise ClusterDefinitionError(f"no upgrade path from Talos {n.version} to {target}")
        if n.version > target:
            raise ClusterDefinitionError(
                f"{n.ip} ({n.hostname}) runs Talos {n.version}, newer than the target {target}: "
                "downgrades are not supported; use `talosctl rollback` on the node if you need "
                "the previous version"
            )
    if kubernetes_target < kubernetes:
        raise ClusterDefinitionError(
            f"Kubernetes cannot be downgraded ({kubernetes.plain()} → {kubernetes_target.plain()})"
        )
    target_row = talos_minor(target)
    kt = (kubernetes_target.major, kubernetes_target.minor)
    if not target_row.k8s_min <= kt <= target_row.k8s_max:
        lo, hi = ("{}.{}".format(*x) for x in (target_row.k8s_min, target_row.k8s_max))
        raise ClusterDefinitionError(
            f"Kubernetes {kubernetes_target.plain()} is not supported by Talos {target} "
            f"(supported: {lo} to {hi})"
        )
    low = min(n.version for n in nodes)
    if facts.contract is None:
        if (low.major, low.minor) != (target.major, target.minor):
            raise ClusterDefinitionError(
                f"{cluster.name} has no config_contract: the machine-config contract must stay "
                "pinned across minors; "
                + CONTRACT_DEFAULT_HELP.format(m=f"{low.major}.{low.minor}", file=source)
            )
    elif facts.contract > (low.major, low.minor):
        oldest = next(n for n in nodes if n.version == low)
        raise ClusterDefinitionError(
            f"config_contract v{facts.contract[0]}.{facts.contract[1]} is newer than Talos {low} "
            f"on {oldest.ip} ({oldest.hostname}): a node rejects configuration fields it does not "
            "know; keep the contract at or below the oldest node's minor"
        )
    for n in nodes:
        row_n = talos_minor(n.version)
        if not row_n.k8s_min <= (kubernetes.major, kubernetes.minor) <= row_n.k8s_max:
            raise WorkflowError(
                f"the cluster runs Kubernetes {kubernetes.plain()}, which Talos {n.version} on "
                f"{n.ip} ({n.hostname}) does not support: fix that first"
            )
    cur = {n.ip: n.version for n in nodes}
    byip = {n.ip: n for n in nodes}
    hops: list[Hop] = []
    k = kubernetes

    def k8s_up_to(limit: tuple[int, int], driver: str) -> None:
        nonlocal k
        while (k.major, k.minor) < limit:
            nxt = (k.major, k.minor + 1)
            to = kubernetes_target if nxt == kt else kubernetes_patch(nxt)
            hops.append(K8sHop(k.plain(), to.plain(), driver))
            k = to

    def cap() -> tuple[int, int]:
        return min(min(_k8s_max(v) for v in cur.values()), kt)

    def newest_minor() -> str:
        v = max(cur.values())
        return f"{v.major}.{v.minor}"

    k8s_up_to(cap(), newest_minor())  # catch up first (a resumed path)
    for level in _levels(low, target, via):
        row = talos_minor(level)
        below = [ip for ip, v in cur.items() if v < level]
        if not below:
            continue
        for ip in below:
            if cur[ip] < row.min_host:
                n = byip[ip]
                raise WorkflowError(
                    f"refusing the hop {cur[ip]} → {level} on {ip} ({n.hostname}): Talos "
                    f"{row.minor}'s installer refuses hosts older than {row.min_host.plain()} "
                    f'("host version {cur[ip].plain()} is too old to upgrade to Talos '
                    f'{level.plain()}", pkg/machinery/compatibility/talos_version.go); visit every '
                    "minor in turn (drop --via, or add the missing minors to it)"
                )
        if (k.major, k.minor) < row.k8s_min:
            # every node must still support the next Kubernetes minor while it is raised
            if cap() < row.k8s_min:
                raise WorkflowError(
                    f"cannot reach Talos {level}: it needs Kubernetes ≥ "
                    f"{row.k8s_min[0]}.{row.k8s_min[1]}, which the nodes' current Talos or the "
                    f"target Kubernetes {kubernetes_target.plain()} does not allow"
                )
            k8s_up_to(row.k8s_min, newest_minor())
        crossed = sorted({(cur[ip].major, cur[ip].minor) for ip in below})[0]
        steps: list[HopStep] = []
        for minor in range(crossed[1] + 1, level.minor + 1):
            steps += hop_steps(Version(level.major, minor, 0))
        ids = {s.id for s in steps}
        _checks(cluster, facts, level, ids)
        legacy = level.minor_key_tuple >= _since("grub-kernel-args") and _needs_legacy(facts)
        order = [n.ip for n in cluster.controlplanes] + [n.ip for n in cluster.workers]
        moves = tuple(
            Move(ip, byip[ip].hostname, byip[ip].role, cur[ip].v()) for ip in order if ip in below
        )
        hops.append(
            TalosHop(
                level.v(),
                moves,
                cluster.installer_image(level.v()),
                legacy,
                tuple(s for s in steps if _applies(s, facts, legacy)),
                row.minor,
            )
        )
        for ip in below:
            cur[ip] = level
        k8s_up_to(cap(), row.minor)
    if k < kubernetes_target:
        hops.append(K8sHop(k.plain(), kubernetes_target.plain(), newest_minor()))
    skipped = tuple((n.ip, f"already at {target}") for n in nodes if n.version == target)
    if not hops:
        return Path(
            target.v(),
            kubernetes_target.plain(),
            (),
            skipped,
            noop=f"every node is already at Talos {target} and Kubernetes "
            f"{kubernetes_target.plain()}",
        )
    return Path(target.v(), kubernetes_target.plain(), tuple(hops), skipped)


def _since(step_id: str) -> tuple[int, int]:
    """The first Talos minor whose hop carries this step (data/versions.yaml hops:)."""
    for row in sorted(matrix().values(), key=lambda r: r.key):
        v = Version(row.key[0], row.key[1], 0)
        if any(s.id == step_id for s in hop_steps(v)):
            return row.key
    return (99, 0)


def _needs_legacy(facts: Facts) -> bool:
    # Nodes installed before 1.10 boot GRUB and keep it across upgrades (hack/release.toml
    # @v1.10.0); the contract is the minor the cluster was created with.
    grub = facts.contract is None or facts.contract < (1, 10)
    return grub and bool(facts.kernel_args) and not facts.grub_uki_cmdline


def _applies(step: HopStep, facts: Facts, legacy: bool) -> bool:
    if step.id == "grub-kernel-args":
        return legacy
    if step.id == "reissue-talosconfig":
        return not facts.talosconfig_client_auth
    if step.id == "extensions-in-schematic":
        return bool(facts.extensions)
    if step.id == "kernel-args-in-schematic":
        return bool(facts.kernel_args)
    return True


def _checks(cluster: Cluster, facts: Facts, level: Version, ids: set[str]) -> None:
    if "extensions-in-schematic" in ids and facts.extensions and not cluster.install.schematic:
        raise ClusterDefinitionError(
            f"refusing the hop to Talos {level}: .machine.install.extensions "
            f"({', '.join(facts.extensions)}) is ignored from Talos 1.10 (hack/release.toml "
            "@v1.10.0); build an Image Factory schematic with these extensions "
            "(https://factory.talos.dev) and set install.schematic to its id first"
        )

"""Adding one node to a running cluster, removing one cleanly, resetting one.

Each: observe (probes, etcd, Kubernetes) → plan (pure: ordered steps or a refusal with the
reason) → apply → observe again. Removal follows the Talos guide on scaling down
(website/content/v1.9/talos-guides/howto/scaling-down.md): cordon and drain, leave etcd, reset,
delete the Node object.
"""

from __future__ import annotations

import logging
import shlex
from dataclasses import dataclass, field
from pathlib import Path

from .. import localconfig, progress, render, yamlio
from ..errors import CommandFailed, WorkflowError
from ..model import Cluster, Node, Repo
from ..tools.kubectl import Kubectl, NodeInfo, parse_nodes
from ..tools.run import Program, run
from ..tools.talosctl import Talosctl
from . import etcd as etcd_wf
from . import generate as gen_wf
from .runtime import Journal, LogReporter, Probe, Reporter, cluster_lock, probe

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    kind: str  # cordon | drain | etcd-leave | etcd-remove | reset | delete | apply | wait | ready
    node: str
    why: str
    detail: str = ""  # etcd-remove: the member ID; otherwise unused


@dataclass(frozen=True)
class NodePlan:
    action: str
    target: Node
    steps: tuple[Step, ...] = ()
    noop: str | None = None
    after: tuple[str, ...] = ()  # what the operator does next

    def describe(self) -> list[str]:
        if self.noop:
            return [f"nothing to do: {self.noop}", *self.after]
        lines = [f"{i}. {s.kind} {s.node}: {s.why}" for i, s in enumerate(self.steps, 1)]
        return lines + list(self.after)


class Refused(WorkflowError):
    """A plan that would break the cluster (quorum, last control plane, wrong node state)."""


@dataclass(frozen=True)
class Observed:
    probe_mode: str  # of the target: maintenance | configured | foreign | unreachable | error
    etcd: etcd_wf.EtcdView | None
    kube: dict[str, NodeInfo] = field(default_factory=dict)


# -- plans (pure) ---------------------------------------------------------------------------------
def plan_add(cluster: Cluster, node: Node, observed: Observed) -> NodePlan:
    mode = observed.probe_mode
    kn = observed.kube.get(node.ip)
    if mode == "configured" and kn is not None and kn.ready:
        return NodePlan("add", node, noop=f"{node.ip} ({node.hostname}) is already in the cluster")
    if mode != "maintenance":
        raise Refused(
            f"{node.ip} ({node.hostname}) is not in maintenance mode ({mode}): `invoke node.add` "
            "installs a freshly booted node only; for a configured node use `invoke apply`, "
            "for one that belongs elsewhere `invoke reset --node` it first"
        )
    return NodePlan(
        "add",
        node,
        (
            Step("apply", node.ip, f"its {node.role} config (talosctl apply-config --insecure)"),
            Step("wait", node.ip, "installed and running"),
            Step("ready", node.ip, "registered and Ready in Kubernetes"),
        ),
    )


def plan_remove(cluster: Cluster, node: Node, observed: Observed) -> NodePlan:
    after = (
        f"then: remove {node.ip} ({node.hostname}) from clusters/<alias>.yaml, "
        "`invoke generate --cluster <alias> --commit`",
    )
    kn = observed.kube.get(node.ip)
    view = observed.etcd
    in_etcd = view is not None and node.ip in view.member_ips
    if observed.probe_mode != "configured" and kn is None and not in_etcd:
        return NodePlan(
            "remove", node, noop=f"{node.ip} is no longer part of {cluster.name}", after=after
        )
    steps: list[Step] = []
    name = kn.name if kn else node.hostname
    if kn is not None:
        steps += [
            Step("cordon", node.ip, f"kubectl cordon {name}"),
            Step("drain", node.ip, f"kubectl drain {name}"),
        ]
    if node.is_controlplane:
        _check_quorum(cluster, node, view)
        assert view is not None
        if in_etcd:
            if view.healthy.get(node.ip):
                steps.append(Step("etcd-leave", node.ip, "talosctl etcd leave"))
            else:
                other = next(ip for ip, ok in view.healthy.items() if ok and ip != node.ip)
                member = next(m for m in view.members if node.ip in m["peer_urls"])
                steps.append(
                    Step(
                        "etcd-remove",
                        other,
                        f"talosctl etcd remove-member {member['id']} (its etcd is down)",
                        member["id"],
                    )
                )
    if observed.probe_mode == "configured":
        steps.append(Step("reset", node.ip, "talosctl reset --graceful --reboot=false"))
    if kn is not None:
        steps.append(Step("delete", node.ip, f"kubectl delete node {name}"))
    return NodePlan("remove", node, tuple(steps), after=after)


def _check_quorum(cluster: Cluster, node: Node, view: etcd_wf.EtcdView | None) -> None:
    others = [n.ip for n in cluster.controlplanes if n.ip != node.ip]
    if not others:
        raise Refused(
            f"{node.ip} is the last control plane of {cluster.name}: removing it would "
            "destroy the cluster (use `invoke reset --node` on every node to tear it down)"
        )
    if view is None or not view.members:
        raise Refused(f"cannot read the etcd member list of {cluster.name}: etcd is down")
    members = view.member_ips
    rest = [ip for ip in members if ip != node.ip]
    down = [ip for ip in rest if not view.healthy.get(ip)]
    quorum = len(rest) // 2 + 1
    if down:
        why = ", ".join(f"{ip}: {view.errors.get(ip, 'down')}" for ip in down)
        raise Refused(
            f"etcd is not fully healthy ({why}); after removing {node.ip}, "
            f"{len(rest) - len(down)} of {len(rest)} member(s) would be up and {quorum} are "
            "needed for a majority: repair etcd first"
        )


def plan_reset(cluster: Cluster, node: Node, observed: Observed) -> NodePlan:
    if observed.probe_mode == "maintenance":
        return NodePlan("reset", node, noop=f"{node.ip} is already in maintenance mode")
    if observed.probe_mode != "configured":
        raise Refused(f"{node.ip} cannot be reset from here: it is {observed.probe_mode}")
    view = observed.etcd
    if node.is_controlplane and view is not None and node.ip in view.member_ips:
        raise Refused(
            f"{node.ip} ({node.hostname}) is a member of etcd: resetting it without leaving "
            "etcd leaves a dead member behind; use `invoke node.remove --node "
            f"{node.ip} --yes` (which leaves etcd first)"
        )
    return NodePlan(
        "reset",
        node,
        (Step("reset", node.ip, "talosctl reset --graceful --reboot (back to maintenance mode)"),),
    )


# -- apply ----------------------------------------------------------------------------------------
@dataclass
class NodeOutcome:
    plan: NodePlan
    commands: list[str]


class NodeOps:
    def __init__(
        self, repo: Repo, cluster: Cluster, prog: Program, kubectl: Program | None
    ) -> None:
        self.repo, self.cluster, self.prog, self.kubectl = repo, cluster, prog, kubectl
        self.tc = Talosctl(localconfig.talosconfig_path(repo, cluster))
        self.kc = Kubectl(localconfig.kubeconfig_path(repo, cluster))

    def observe(self, node: Node, with_etcd: bool) -> Observed:
        progress.phase(f"Observe {node.ip} ({node.hostname}) and {self.cluster.name}")
        p: Probe = probe(self.prog, self.tc, node.ip)
        log.info("%s: %s", node.ip, p.describe())
        view = None
        if with_etcd:
            view = etcd_wf.observe_etcd(
                self.prog, self.tc, [n.ip for n in self.cluster.controlplanes]
            )
        kube: dict[str, NodeInfo] = {}
        if self.kubectl is not None and self.kc.kubeconfig.exists():
            try:
                out = run(self.kubectl, self.kc.get_nodes(), timeout=30).stdout
                kube = {n.ip: n for n in parse_nodes(out)}
            except CommandFailed as e:
                log.warning("kubectl could not list nodes: %s", e.output.strip()[-200:])
        return Observed(p.mode, view, kube)

    def argv(self, s: Step, kube_name: str) -> tuple[str, list[str]]:
        tc, kc = self.tc, self.kc
        if s.kind == "cordon":
            return "kubectl", kc.cordon(kube_name)
        if s.kind == "drain":
            return "kubectl", kc.drain(kube_name)
        if s.kind == "delete":
            return "kubectl", kc.delete_node(kube_name)
        if s.kind == "etcd-leave":
            return "talosctl", tc.etcd_leave(s.node)
        if s.kind == "etcd-remove":
            return "talosctl", tc.etcd_remove_member(s.node, s.detail)
        if s.kind == "reset":
            reboot = s.why.endswith("(back to maintenance mode)")
            return "talosctl", tc.reset(s.node, graceful=True, reboot=reboot)
        if s.kind == "apply":
            cfg = Path("<private>") / "nodes" / f"{self.cluster.node(s.node).hostname}.yaml"
            return "talosctl", tc.apply_config(s.node, cfg, insecure=True)
        return "", []

    def commands(self, p: NodePlan, kube_name: str) -> list[str]:
        out = []
        for s in p.steps:
            tool, argv = self.argv(s, kube_name)
            if argv:
                out.append(shlex.join([tool, *argv]))
        return out

    def execute(self, p: NodePlan, kube_name: str, rep: Reporter, timeout: float) -> None:
        journal = Journal(self.repo, self.cluster, f"node-{p.action}")
        for s in p.steps:
            progress.phase(f"{s.kind} {s.node}: {s.why}")
            with journal.step(s.kind, s.node):
                if s.kind == "apply":
                    self._apply(p.target)
                elif s.kind == "wait":
                    etcd_wf.wait_running(self.prog, self.tc, [s.node], timeout, rep)
                elif s.kind == "ready":
                    etcd_wf.wait_k8s_ready(self.repo, self.cluster, self.kubectl, [s.node], timeout)
                else:
                    tool, argv = self.argv(s, kube_name)
                    prog = self.prog if tool == "talosctl" else self.kubectl
                    if prog is None:
                        raise WorkflowError("kubectl is needed to cordon, drain and delete nodes")
                    run(prog, argv, node=s.node, timeout=timeout + 60)
            rep.node(s.node, f"{s.kind} done")

    def _apply(self, node: Node) -> None:
        render.render(self.repo, self.cluster)
        with gen_wf.build(self.repo, self.cluster, self.prog) as build:
            config = build.config_for(node)
            mtype = (yamlio.load(config.read_text()).get("machine") or {}).get("type")
            if mtype != node.role:
                raise WorkflowError(
                    f"refusing to apply a {mtype} config to the {node.role} {node.ip}"
                )
            run(
                self.prog,
                self.tc.apply_config(node.ip, config, insecure=True),
                node=node.ip,
                timeout=120,
            )


def node_action(
    repo: Repo,
    cluster: Cluster,
    prog: Program,
    kubectl: Program | None,
    action: str,
    node: Node,
    *,
    confirmed: bool,
    dry_run: bool,
    timeout: float = 600,
    reporter: Reporter | None = None,
) -> NodeOutcome:
    """add | remove | reset one node: observe → plan → (confirmation) → apply → observe."""
    rep = reporter or LogReporter()
    ops = NodeOps(repo, cluster, prog, kubectl)
    if (
        action == "add"
        and not (repo.generated_dir(cluster) / "nodes" / f"{node.hostname}.yaml").exists()
    ):
        raise Refused(
            f"generated/{cluster.name}/nodes/{node.hostname}.yaml does not exist: run "
            f"`invoke generate --cluster {cluster.name}` (and commit) after adding the node"
        )
    if action in ("add", "remove") and (kubectl is None or not ops.kc.kubeconfig.exists()):
        # without Kubernetes a node could not be drained (remove) nor checked Ready (add)
        raise Refused(
            f"node.{action} needs kubectl and {repo.rel(ops.kc.kubeconfig)} "
            f"(`invoke kubeconfig --cluster {cluster.name}`)"
        )
    observed = ops.observe(node, with_etcd=action != "add" and node.is_controlplane)
    planner = {"add": plan_add, "remove": plan_remove, "reset": plan_reset}[action]
    p = planner(cluster, node, observed)
    kn = observed.kube.get(node.ip)
    kube_name = kn.name if kn else node.hostname
    progress.phase("Plan")
    for line in p.describe():
        log.info("%s", line)
    outcome = NodeOutcome(p, ops.commands(p, kube_name))
    if dry_run or p.noop:
        return outcome
    if not confirmed:
        raise etcd_wf.ConfirmationRequired(
            f"{action} of {node.ip} is destructive; read the plan above and re-run with the "
            "confirmation flag (--yes for node.remove, --yes-wipe for reset)"
        )
    with cluster_lock(repo, cluster, f"node-{action}"):
        ops.execute(p, kube_name, rep, timeout)
        progress.phase("Observe again")
        again = ops.observe(node, with_etcd=False)
        if action == "add" and not (again.kube.get(node.ip) and again.kube[node.ip].ready):
            raise WorkflowError(f"{node.ip} is not Ready in Kubernetes after the install")
        if action in ("remove", "reset") and again.probe_mode == "configured":
            raise WorkflowError(f"{node.ip} still runs its config after the reset")
    return outcome

"""Install a cluster: nodes in maintenance mode → a healthy, verified Kubernetes cluster.

observe (probe every node) → plan (pure) → apply (generate, apply control planes then workers,
bootstrap once, health, kubeconfig) → observe again (kubectl: every node registered and Ready).
"""

from __future__ import annotations

import logging
import shlex
import threading
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path

import yaml

from .. import gitrepo, localconfig, progress, render, toolbox, yamlio
from ..errors import CommandFailed, WorkflowError
from ..model import Cluster, Node, Repo
from ..render import write_folder
from ..tools.kubectl import Kubectl, parse_nodes
from ..tools.run import Program, run
from ..tools.talosctl import (
    ALREADY_BOOTSTRAPPED,
    Talosctl,
    parse_machineconfig,
    parse_machineconfig_many,
    parse_machinestatus,
)
from . import generate as gen_wf
from . import inputs as inputs_wf
from . import secrets as secrets_wf
from .runtime import (
    Journal,
    LogReporter,
    Poll,
    Probe,
    Reporter,
    cluster_lock,
    configured_probes,
    parallel,
    probe,
    wait_for,
)

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Step:
    kind: str  # apply | bootstrap | wait | health | kubeconfig | verify | record
    nodes: tuple[str, ...]
    why: str


@dataclass(frozen=True)
class Plan:
    steps: tuple[Step, ...]
    skipped: tuple[tuple[str, str], ...] = ()
    noop: str | None = None

    def describe(self) -> list[str]:
        if self.noop:
            return [f"nothing to do: {self.noop}"]
        lines = [
            f"{i}. {s.kind} {', '.join(s.nodes)}: {s.why}".replace("  ", " ")
            for i, s in enumerate(self.steps, 1)
        ]
        lines += [f"   skip {ip}: {why}" for ip, why in self.skipped]
        return lines


def _running_ready(p: Probe) -> bool:
    return (
        p.mode == "configured"
        and p.status is not None
        and p.status.stage == "running"
        and p.status.ready
    )


def plan(
    cluster: Cluster,
    observed: dict[str, Probe],
    live_types: dict[str, str] | None = None,
    kubeconfig_present: bool = True,
) -> Plan:
    """Ordered steps from the desired cluster and what the nodes answered. Pure.

    live_types: machine type of each configured node (controlplane | worker).
    kubeconfig_present: .state/<cluster>/kubeconfig exists (a no-op run leaves it alone).
    """
    problems = []
    for n in cluster.nodes:
        p = observed[n.ip]
        if p.mode in ("foreign", "unreachable", "error"):
            problems.append(f"{n.ip} ({n.hostname}): {p.describe()}")
        live = (live_types or {}).get(n.ip)
        if p.mode == "configured" and live and live != n.role:
            problems.append(
                f"{n.ip} ({n.hostname}) runs a {live} config but the cluster file "
                f"declares it {n.role}; fix the cluster file or reset the node"
            )
    if problems:
        raise WorkflowError(
            "cannot install "
            + cluster.name
            + ":\n  "
            + "\n  ".join(problems)
            + "\nnodes must be booted into maintenance mode (or run this cluster)"
        )
    fresh_cps = tuple(n.ip for n in cluster.controlplanes if observed[n.ip].mode == "maintenance")
    fresh_workers = tuple(n.ip for n in cluster.workers if observed[n.ip].mode == "maintenance")
    skipped = tuple(
        (n.ip, "already runs this cluster's config")
        for n in cluster.nodes
        if observed[n.ip].mode == "configured"
    )
    everyone = tuple(n.ip for n in cluster.nodes)
    bootstrapped = any(_running_ready(observed[n.ip]) for n in cluster.controlplanes)
    all_ready = all(_running_ready(observed[ip]) for ip in everyone)
    if all_ready:
        # A no-op re-run changes nothing: no new kubeconfig, no current-context switch in
        # ~/.kube/config, refs/applied left where it is; it only checks the nodes again.
        fetch = (
            ()
            if kubeconfig_present
            else (Step("kubeconfig", (cluster.controlplanes[0].ip,), "the kubeconfig is missing"),)
        )
        return Plan(
            (*fetch, Step("verify", everyone, "every node registered and Ready")),
            skipped,
            noop=f"all {len(everyone)} nodes run {cluster.name}'s config and are ready",
        )
    steps: list[Step] = []
    if fresh_cps:
        steps.append(Step("apply", fresh_cps, "control planes in maintenance mode (--insecure)"))
    if fresh_workers:
        steps.append(Step("apply", fresh_workers, "workers in maintenance mode (--insecure)"))
    first = cluster.controlplanes[0].ip
    steps.append(Step("wait", (first,), "first control plane running"))
    if not bootstrapped:
        steps.append(Step("bootstrap", (first,), "start etcd (once; AlreadyExists counts as done)"))
    steps.append(Step("wait", everyone, "every node running and ready"))
    steps.append(Step("health", (first,), "talosctl health with the explicit node lists"))
    steps.append(Step("kubeconfig", (first,), "admin kubeconfig to .state/ and ~/.kube/config"))
    steps.append(
        Step("verify", everyone, "every node registered and Ready at the expected kubelet version")
    )
    return Plan(tuple(steps), skipped)


@dataclass
class Options:
    dry_run: bool = False
    parallel: int = 5
    wait_timeout: float = 900
    health_timeout: float = 600
    command_timeout: float = 120
    reporter: Reporter = field(default_factory=LogReporter)


@dataclass
class Outcome:
    plan: Plan
    commands: list[str]
    applied_ref: str | None = None
    summary: list[dict[str, str]] = field(default_factory=list)


class Installer:
    def __init__(
        self,
        repo: Repo,
        cluster: Cluster,
        prog: Program,
        opts: Options,
        kubectl: Program | None = None,
    ) -> None:
        self.repo, self.cluster, self.prog, self.opts = repo, cluster, prog, opts
        self.kubectl = kubectl
        self.tc = Talosctl(localconfig.talosconfig_path(repo, cluster))
        self.journal = Journal(repo, cluster, "install")
        self.commands: list[str] = []

    def _run(self, args: list[str], **kw: object) -> str:
        self.commands.append(self.prog.display(args))
        return run(self.prog, args, **kw).stdout  # type: ignore[arg-type]

    # -- observe -----------------------------------------------------------------------------
    def observe(self) -> dict[str, Probe]:
        progress.phase(f"Observe {len(self.cluster.nodes)} nodes of {self.cluster.name}")
        ips = [n.ip for n in self.cluster.nodes]
        known = configured_probes(self.prog, self.tc, ips, self._cps())
        probes = parallel(
            lambda ip: probe(self.prog, self.tc, ip),
            [ip for ip in ips if ip not in known],
            self.opts.parallel * 2,
        )
        got = {**known, **{p.ip: p for p in probes}}
        for ip in ips:
            self.opts.reporter.node(ip, got[ip].describe())
        return {ip: got[ip] for ip in ips}

    def live_types(self, observed: dict[str, Probe]) -> dict[str, str]:
        """machine.type of every configured node (to refuse a wrong-role node)."""
        configured = [ip for ip, p in observed.items() if p.mode == "configured"]
        found: dict[str, str] = {}
        if len(configured) > 1:  # one call through the control planes for all of them
            try:
                out = run(
                    self.prog,
                    self.tc.machineconfig_many(configured, self._cps()),
                    timeout=60,
                    ok_codes=(0, 1),
                ).stdout
                found = {
                    ip: str((doc.get("machine") or {}).get("type", ""))
                    for ip, doc in parse_machineconfig_many(out).items()
                    if ip in configured
                }
            except (CommandFailed, ValueError, KeyError, TypeError, yaml.YAMLError) as e:
                log.debug("several-node machineconfig failed: %s", e)

        def one(ip: str) -> tuple[str, str]:
            doc = parse_machineconfig(
                run(self.prog, self.tc.machineconfig(ip), timeout=30, node=ip).stdout
            )
            return ip, str((doc.get("machine") or {}).get("type", ""))

        missing = [ip for ip in configured if ip not in found]
        return {**found, **dict(parallel(one, missing, self.opts.parallel))}

    def _cps(self) -> list[str]:
        return [n.ip for n in self.cluster.controlplanes]

    def wait_reachable(self, stop: threading.Event | None = None) -> dict[str, Probe]:
        """Wait until every node is in maintenance mode or runs this cluster's config (or
        until `stop` is set: the configs could not be built, nothing will be applied)."""
        ips = [n.ip for n in self.cluster.nodes]
        progress.phase(f"Wait for {len(ips)} nodes (maintenance mode or configured)")
        # the nodes that already run this cluster answer one call through the control planes
        probes = configured_probes(self.prog, self.tc, ips, self._cps())
        for p in probes.values():
            self.opts.reporter.node(p.ip, p.describe())

        def check(ip: str) -> tuple[bool, str]:
            if stop is not None and stop.is_set():
                raise WorkflowError("stopped waiting for the nodes: the install failed")
            p = probe(self.prog, self.tc, ip)
            probes[ip] = p
            return p.mode in ("maintenance", "configured", "foreign"), p.describe()

        wait_for(
            [ip for ip in ips if ip not in probes],
            check,
            timeout=self.opts.wait_timeout,
            reporter=self.opts.reporter,
            what="nodes to answer",
        )
        return probes

    # -- apply -------------------------------------------------------------------------------
    def _apply_one(self, node: Node, build: gen_wf.Build) -> None:
        config = build.config_for(node)
        doc = yamlio.load(config.read_text())
        mtype = (doc.get("machine") or {}).get("type")
        if mtype != node.role:
            # never a worker config on a control plane, or the reverse
            raise WorkflowError(
                f"refusing to apply a {mtype} config to {node.ip}, which "
                f"{self.cluster.name} declares as {node.role}"
            )
        with self.journal.step("apply", node.ip, role=node.role):
            self._run(
                self.tc.apply_config(node.ip, config, insecure=True),
                node=node.ip,
                timeout=self.opts.command_timeout,
            )
        self.opts.reporter.node(node.ip, "config applied, installing")

    def _wait_status(self, ips: list[str], *, ready: bool, what: str) -> None:
        def check(ip: str) -> tuple[bool, str]:
            try:
                out = run(
                    self.prog, self.tc.machinestatus(ip, insecure=False), timeout=20, node=ip
                ).stdout
            except CommandFailed as e:
                return (
                    False,
                    "unreachable (rebooting?)"
                    if "connection refused" in e.output
                    else e.output.strip().splitlines()[-1][:120],
                )
            ms = parse_machinestatus(out)
            done = ms.stage == "running" and (ms.ready or not ready)
            text = f"{ms.stage}, {'ready' if ms.ready else 'not ready'}"
            if ms.unmet and not ms.ready:
                text += f" ({'; '.join(ms.unmet)})"
            return done, text

        with self.journal.step("wait", None, what=what, nodes=ips):
            wait_for(
                ips,
                check,
                timeout=self.opts.wait_timeout,
                reporter=self.opts.reporter,
                what=what,
                workers=self.opts.parallel * 2,
            )

    def bootstrap(self, ip: str) -> None:
        with self.journal.step("bootstrap", ip):
            try:
                self._run(self.tc.bootstrap(ip), node=ip, timeout=self.opts.command_timeout)
                log.info("%s: etcd bootstrapped", ip)
            except CommandFailed as e:
                if ALREADY_BOOTSTRAPPED not in e.output:
                    raise
                log.info("%s: already bootstrapped (AlreadyExists)", ip)

    def _health(self, ip: str) -> None:
        cps = [n.ip for n in self.cluster.controlplanes]
        workers = [n.ip for n in self.cluster.workers]
        with self.journal.step("health", ip):
            self._run(
                self.tc.health(ip, cps, workers, self.opts.health_timeout),
                node=ip,
                timeout=self.opts.health_timeout + 60,
                on_stderr_line=lambda line: log.debug("health: %s", line),
            )

    def kubeconfig(self, ip: str) -> None:
        path = localconfig.kubeconfig_path(self.repo, self.cluster)
        with self.journal.step("kubeconfig", ip):
            self._run(self.tc.kubeconfig(ip, path), node=ip, timeout=self.opts.command_timeout)
            path.chmod(0o600)
            target, ctx = localconfig.merge_operator_kubeconfig(self.repo, self.cluster)
        log.info("kubeconfig: %s; context %s is current in %s", self.repo.rel(path), ctx, target)

    def verify(self) -> list[dict[str, str]]:
        """Every node registered in Kubernetes, Ready, at the cluster's kubelet version."""
        if self.kubectl is None:
            raise WorkflowError("kubectl is needed to verify the nodes")
        k = Kubectl(localconfig.kubeconfig_path(self.repo, self.cluster))
        want = {n.ip: n for n in self.cluster.nodes}
        poll = Poll(self.opts.wait_timeout)
        while True:
            nodes = parse_nodes(run(self.kubectl, k.get_nodes(), timeout=60).stdout)
            seen = {n.ip: n for n in nodes}
            problems = []
            for ip, node in want.items():
                kn = seen.get(ip)
                if kn is None:
                    problems.append(f"{ip} ({node.hostname}) is not registered")
                elif not kn.ready:
                    problems.append(f"{ip} ({kn.name}) is not Ready")
                elif kn.kubelet != self.cluster.kubernetes_version:
                    problems.append(
                        f"{ip} ({kn.name}) runs kubelet {kn.kubelet}, expected "
                        f"{self.cluster.kubernetes_version}"
                    )
            if not problems:
                return [
                    {
                        "ip": ip,
                        "name": seen[ip].name,
                        "role": want[ip].role,
                        "kubelet": seen[ip].kubelet,
                        "os": seen[ip].os_image,
                        "ready": "yes",
                    }
                    for ip in want
                ]
            if not poll.wait():
                raise WorkflowError("Kubernetes check failed:\n  " + "\n  ".join(problems))

    def record(self) -> str | None:
        root = self.repo.root
        if not gitrepo.is_repo(root):
            return None
        rel = self.repo.rel(self.repo.generated_dir(self.cluster))
        if gitrepo.dirty(root, [rel]):
            log.warning(
                "generated/%s has uncommitted changes: refs/applied/%s not updated; "
                "commit them (invoke generate --commit) and re-run",
                self.cluster.name,
                self.cluster.name,
            )
            return None
        head = gitrepo.head(root)
        if head:
            gitrepo.update_ref(root, secrets_wf.applied_ref(self.cluster), head)
            self.journal.write(
                "record", "ok", None, ref=secrets_wf.applied_ref(self.cluster), commit=head
            )
        return head

    def run(self) -> Outcome:
        c = self.cluster
        kc_present = localconfig.kubeconfig_path(self.repo, c).exists()
        if self.opts.dry_run:
            observed = self.observe()
            p = plan(c, observed, self.live_types(observed), kc_present)
            self._print_dry_run(p)
            return Outcome(p, self.commands)
        with cluster_lock(self.repo, c, "install"):
            self.journal.write("install", "start", None)
            progress.phase("Preflight")
            log.info(
                "talosctl %s (%s)", toolbox.check_talosctl_version(self.prog, c), self.prog.source
            )
            progress.phase("Secrets and generated configs")
            secrets_wf.ensure(self.repo, c, self.prog)
            render.render(self.repo, c)
            seen: tuple[dict[str, Probe], dict[str, str]] | None = None
            if self._configs_current():
                # a re-run on installed nodes applies nothing: look before building anything
                observed = self.wait_reachable()
                seen = observed, self.live_types(observed)
                p = plan(c, *seen, kc_present)
                if not any(s.kind == "apply" for s in p.steps):
                    log.info("%s: generated/ is current; no node needs a config", c.name)
                    if not p.noop:  # a no-op run leaves the operator's current context alone
                        localconfig.merge_operator_talosconfig(self.repo, c)
                    return self._finish(self._execute_plan(p, None))
            # generate while the nodes are still coming up (issue #16): the wait runs beside
            # the build, so the first apply starts as soon as both are done
            stop = threading.Event()
            waiter = ThreadPoolExecutor(max_workers=1)
            reachable = None if seen else waiter.submit(self.wait_reachable, stop)
            try:
                with gen_wf.build(self.repo, c, self.prog, parallel=self.opts.parallel) as build:
                    write_folder(self.repo.generated_dir(c), build.redacted)
                    localconfig.write_talosconfig(self.repo, c, build.talosconfig)
                    if reachable is not None:
                        observed = reachable.result()
                        seen = observed, self.live_types(observed)
                    assert seen is not None
                    p = plan(c, *seen, kc_present)
                    if not p.noop:  # a no-op run leaves the operator's current context alone
                        localconfig.merge_operator_talosconfig(self.repo, c)
                    outcome = self._execute_plan(p, build)
            finally:
                stop.set()  # a failed build ends the wait at its next poll
                waiter.shutdown(wait=True)
            return self._finish(outcome)

    def _configs_current(self) -> bool:
        """generated/ is what a build from today's inputs would write (the generate record)
        and the talosconfig exists: nothing needs building unless a node needs a config."""
        if not localconfig.talosconfig_path(self.repo, self.cluster).is_file():
            return False
        version = inputs_wf.talosctl_version(self.repo, self.prog)
        ins = inputs_wf.input_digests(self.repo, self.cluster, version)
        return inputs_wf.unchanged(self.repo, self.cluster, ins)

    def _execute_plan(self, p: Plan, build: gen_wf.Build | None) -> Outcome:
        progress.phase("Plan")
        for line in p.describe():
            log.info("%s", line)
        outcome = Outcome(p, self.commands)
        for step in p.steps:
            self._execute(step, build)
        return outcome

    def _finish(self, outcome: Outcome) -> Outcome:
        c, p = self.cluster, outcome.plan
        progress.phase("Record")
        existing = (
            gitrepo.ref(self.repo.root, secrets_wf.applied_ref(c))
            if gitrepo.is_repo(self.repo.root)
            else None
        )
        # nothing was applied on a no-op run: refs/applied keeps marking what was
        outcome.applied_ref = existing if p.noop and existing else self.record()
        self.journal.write("install", "ok", None)
        return outcome

    def _execute(self, step: Step, build: gen_wf.Build | None) -> None:
        nodes = {n.ip: n for n in self.cluster.nodes}
        if step.kind == "apply":
            assert build is not None, "an apply step runs inside a build"
            progress.phase(f"Apply configs: {step.why}")
            parallel(
                lambda ip: self._apply_one(nodes[ip], build), list(step.nodes), self.opts.parallel
            )
        elif step.kind == "wait":
            progress.phase(f"Wait: {step.why}")
            self._wait_status(list(step.nodes), ready=len(step.nodes) > 1, what=step.why)
        elif step.kind == "bootstrap":
            progress.phase(f"Bootstrap etcd on {step.nodes[0]}")
            self.bootstrap(step.nodes[0])
        elif step.kind == "health":
            progress.phase("Health")
            self._health(step.nodes[0])
        elif step.kind == "kubeconfig":
            progress.phase("Kubeconfig")
            self.kubeconfig(step.nodes[0])
        elif step.kind == "verify":
            progress.phase("Verify nodes in Kubernetes")
            with self.journal.step("verify", None):
                self.verified = self.verify()

    def _print_dry_run(self, p: Plan) -> None:
        c = self.cluster
        tc = self.tc
        nodes = {n.ip: n for n in c.nodes}
        cfg = Path("<private>") / "nodes"
        for line in p.describe():
            log.info("%s", line)
        log.info("commands (configs are generated into a private temporary folder):")
        cmds: list[list[str]] = []
        for s in p.steps:
            if s.kind == "apply":
                cmds += [
                    tc.apply_config(ip, cfg / f"{nodes[ip].hostname}.yaml", insecure=True)
                    for ip in s.nodes
                ]
            elif s.kind == "bootstrap":
                cmds.append(tc.bootstrap(s.nodes[0]))
            elif s.kind == "health":
                cmds.append(
                    tc.health(
                        s.nodes[0],
                        [n.ip for n in c.controlplanes],
                        [n.ip for n in c.workers],
                        self.opts.health_timeout,
                    )
                )
            elif s.kind == "kubeconfig":
                cmds.append(tc.kubeconfig(s.nodes[0], localconfig.kubeconfig_path(self.repo, c)))
        for argv in cmds:
            log.info("  %s", shlex.join(["talosctl", *argv]))
        self.commands = [shlex.join(["talosctl", *a]) for a in cmds]


def install(
    repo: Repo, cluster: Cluster, prog: Program, kubectl: Program | None, opts: Options
) -> Outcome:
    inst = Installer(repo, cluster, prog, opts, kubectl)
    outcome = inst.run()
    outcome.summary = getattr(inst, "verified", [])
    return outcome

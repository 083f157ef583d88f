"""talosctl >= 1.13's LifecycleService upgrade as it reports on a non-terminal stderr: image
pull, install, drain, reboot (the action tracker), uncordon.

The reporter (pkg/reporter/reporter.go @v1.13.9 and @v1.14.0-rc.1 L125-137) is not colorized
when stderr is no terminal (talosim's never is) or with --progress plain; it then writes each
update's message, trimmed and with tabs as four spaces, only when it differs from the previous
one. Writers for several nodes report one block per update: every node's latest line, sorted
(cmd/talosctl/cmd/talos/lifecycle/lifecycle.go PrintLayerProgress, drain ProgressWriter).
"""

from __future__ import annotations

import hashlib
from typing import Any

from ..machine import nodes as N
from ..machine.kubeapi import objects
from ..machine.state import State
from .command import Ctx


class Reporter:
    """reporter.Reporter in plain mode."""

    def __init__(self, ctx: Ctx) -> None:
        self.ctx = ctx
        self.last: str | None = None

    def report(self, message: str) -> None:
        msg = message.strip().replace("\t", "    ")
        if msg != self.last:
            self.ctx.err(msg + "\n")
            self.last = msg


class Blocks:
    """A progress writer for several nodes: one block of every node's latest line per update."""

    def __init__(self, rep: Reporter, prefix: bool) -> None:
        self.rep, self.prefix = rep, prefix
        self.latest: dict[str, str] = {}

    def update(self, node: str, message: str) -> None:
        self.latest[node] = f"{node}: {message}" if self.prefix else message
        self.rep.report("\n".join(self.latest[n] for n in sorted(self.latest)) + "\n")


def pinned(image: str) -> str:
    """The reference the node reports pulling: a tagged image pinned to its digest, the tag
    dropped (internal/app/images/images.go @v1.14.0-rc.1 L134-151). talosim has no registry,
    so the digest is a stand-in derived from the reference."""
    if "@" in image:
        return image
    name = image.rsplit(":", 1)[0] if ":" in image.rsplit("/", 1)[-1] else image
    return f"{name}@sha256:{hashlib.sha256(image.encode()).hexdigest()}"


def pulled(rep: Reporter, ips: list[str], image: str) -> None:
    # imagePullInternal (cmd/talosctl/cmd/talos/image.go @v1.14.0-rc.1 L255-325): layer progress
    # only when colorized, then one summary (Go map order; talosim's is sorted)
    rep.report("".join(f"{ip}: pulled image {pinned(image)}\n" for ip in sorted(ips)))


def installed(rep: Reporter, ips: list[str], failures: dict[str, int], new_wording: bool) -> None:
    """upgradeInternal (upgrade.go @v1.14.0-rc.1 L176-243, @v1.13.9 L200-240): each node's
    exit code, then the summary. talosim runs no installer, so the installer's own log lines
    (Go log format, e.g. `running Talos installer v1.14.0`) are not reproduced."""
    install = Blocks(rep, prefix=True)
    for ip in sorted(ips):
        install.update(ip, f"Exit code: {failures.get(ip, 0)}")
    lines = []
    for ip in sorted(ips):
        code = failures.get(ip)
        if code is None:
            lines.append(f"{ip}: upgrade completed")
        elif new_wording:  # lifecycle.ProgressWriter.Failure (v1.14.0-rc.1 L67-82)
            desc = EXIT_CODES.get(code)
            lines.append(
                f"{ip}: upgrade failed with exit code {code}" + (f" ({desc})" if desc else "")
            )
        else:
            lines.append(f"{ip}: upgrade failed with exit code {code}")
    rep.report("\n".join(lines) + "\n")


# constants.Exit* as lifecycle.go exitCodeDescription names them (@v1.14.0-rc.1)
EXIT_CODES = {
    2: "invalid input",
    3: "unsupported operation",
    4: "environment error",
    5: "dependency error",
    6: "I/O error",
    7: "installation error",
}


def evictable_pods(state: State, node: dict[str, Any]) -> list[str]:
    """`<ns>/<name>` of the pods a drain evicts from the node: the kubectl drain library skips
    mirror (static) and DaemonSet pods (go-kubernetes v0.2.41 kubernetes/nodedrain/nodedrain.go
    L59-120, IgnoreAllDaemonSets)."""
    cluster = N.cluster_of(state, node)
    if not cluster:
        return []
    name = N.hostname(node)
    out = []
    for pod in objects.pod_objects(state, cluster):
        meta = pod["metadata"]
        if pod["spec"].get("nodeName") != name:
            continue
        if "kubernetes.io/config.mirror" in (meta.get("annotations") or {}):
            continue
        if any(o.get("kind") == "DaemonSet" for o in meta.get("ownerReferences") or []):
            continue
        out.append(f"{meta['namespace']}/{meta['name']}")
    return out


def drained(rep: Reporter, pods: dict[str, list[str]]) -> None:
    """CordonAndDrain per Kubernetes node (cmd/talosctl/pkg/talos/nodedrain/nodedrain.go
    @v1.14.0-rc.1 L60-110): labelled by node name, not address."""
    drain = Blocks(rep, prefix=False)
    for name in sorted(pods):
        steps = [f"{name}: cordoning node", f"{name}: node cordoned", f"{name}: draining node"]
        for pod in pods[name]:
            steps += [f"{name}: evicting pod {pod}", f"{name}: evicted pod {pod}"]
        for msg in [*steps, f"{name}: node drained"]:
            drain.update(name, msg)


def uncordoned(rep: Reporter, names: list[str]) -> None:
    """uncordonNodes (cmd/talosctl/cmd/talos/drain.go @v1.14.0-rc.1 L116-174), the last lines."""
    blocks = Blocks(rep, prefix=False)
    for name in sorted(names):
        for msg in ("waiting for node to become Ready", "uncordoning node", "node uncordoned"):
            blocks.update(name, f"{name}: {msg}")

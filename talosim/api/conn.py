"""The mTLS session of a talosctl call with the (emulated) nodes.

Connection rules (contract §1.1, §1.3): with --insecure the nodes are dialled directly, no
client certificate, and only maintenance mode answers; otherwise the first reachable endpoint
must present the talosconfig CA and accept its client certificate, and proxies to the target
node (errors then carry a `<node>: ` prefix).
"""

from __future__ import annotations

from typing import Any
from urllib.parse import urlsplit

from ..machine import nodes as N
from ..machine import pki, releases
from ..machine.clock import catch_interrupts, now, wait_until
from ..machine.faults import take_fault
from .command import Ctx, Fail
from .errors import CERT_REQUIRED, RPC, UNKNOWN_AUTHORITY, multierror, refused


def endpoint_host(ep: str) -> str:
    if "://" in ep:
        return urlsplit(ep).hostname or ep
    if ep.startswith("["):
        return ep[1:].split("]")[0]
    return ep.rsplit(":", 1)[0] if ep.count(":") == 1 else ep


class Conn:
    """An authenticated (or insecure) session with a set of target nodes."""

    def __init__(self, ctx: Ctx, insecure: bool, need_nodes: bool = True) -> None:
        catch_interrupts()  # talosctl's WithClient*: Ctrl-C aborts a node session
        self.ctx = ctx
        self.state = ctx.state
        self.insecure = insecure
        self.nodes: list[str] = list(ctx["nodes"])
        self.endpoint: dict[str, Any] | None = None
        if insecure:
            if not self.nodes:
                raise Fail("failed to determine endpoints")
            return
        cfg = ctx.talosconfig()
        context = ctx.context(cfg)
        endpoints = list(ctx["endpoints"]) or list((context or {}).get("endpoints") or [])
        if not endpoints:
            raise Fail("error constructing client: failed to determine endpoints")
        if context is None:
            name = ctx["context"] or cfg.get("context")
            if not cfg["contexts"]:
                raise Fail(
                    "error constructing client: failed to create client connection: "
                    "failed to resolve configuration context: talos config file is empty"
                )
            raise Fail(
                "error constructing client: failed to create client connection: failed to "
                f'resolve configuration context: context "{name}" not found in config'
            )
        if not self.nodes:
            self.nodes = list(context.get("nodes") or [])
        if need_nodes and not self.nodes:
            raise Fail(
                "nodes are not set for the command: please use `--nodes` flag or "
                "configuration file to set the nodes to run the command against"
            )
        self.context = context
        self.endpoints = [endpoint_host(e) for e in endpoints]

    def _resolve_endpoint(self, host: str) -> dict[str, Any] | None:
        node = N.load(self.state, host)
        if node is not None:
            return node
        # A VIP answers on the running control plane that holds it (after bootstrap).
        for n in self.state.nodes():
            n = N.refresh(self.state, n)
            if not N.is_controlplane(n) or n["stage"] != "running":
                continue
            ifaces = ((n["config"].get("machine") or {}).get("network") or {}).get(
                "interfaces"
            ) or []
            if any((i.get("vip") or {}).get("ip") == host for i in ifaces):
                cl = N.cluster_of(self.state, n)
                if cl and cl.get("bootstrapped"):
                    return n
        return None

    def dial(self) -> dict[str, Any]:
        """Connect to the first reachable endpoint and authenticate (mTLS)."""
        if self.endpoint is not None:
            return self.endpoint
        for host in self.endpoints:
            node = self._resolve_endpoint(host)
            if node is None or N.is_unreachable(self.state, node):
                continue
            if not node.get("config"):
                raise UNKNOWN_AUTHORITY  # maintenance mode presents a self-signed certificate
            ca = pki.unb64(node["config"]["machine"]["ca"]["crt"])
            if self.context.get("ca") and pki.unb64(self.context["ca"]) != ca:
                raise UNKNOWN_AUTHORITY
            crt = self.context.get("crt")
            key_usage = releases.client_key_usage_enforced(node["talos_version"], node["config"])
            if key_usage and crt and not releases.has_client_auth_usage(pki.unb64(crt)):
                crt = None  # apid wants the clientAuth extended key usage: "bad certificate"
            if not crt or not pki.signed_by(pki.unb64(crt), ca):
                raise RPC(
                    "Unavailable",
                    'connection error: desc = "transport: authentication '
                    'handshake failed: remote error: tls: bad certificate"',
                )
            self.endpoint = node
            self._ensure_kubeapi(node)
            return node
        raise refused(self.endpoints[0])

    def _ensure_kubeapi(self, node: dict[str, Any]) -> None:
        """A bootstrapped cluster's API server runs whenever the cluster is used: it stops
        after an idle period, and the next talosctl call starts it again."""
        cluster = N.cluster_of(self.state, node)
        if cluster and cluster.get("bootstrapped") and cluster.get("k8s_ca"):
            from ..machine import kubeapi

            kubeapi.ensure(self.state, cluster)

    def target(self, ip: str, command: str) -> dict[str, Any]:
        """The node record of `ip`, reached through the endpoint (or directly when insecure)."""
        if self.insecure:
            node = N.load(self.state, ip)
            if N.is_unreachable(self.state, node):
                raise refused(ip)
            assert node is not None
            if node.get("config"):
                raise CERT_REQUIRED
        else:
            ep = self.dial()
            node = ep if ep["ip"] == ip else N.load(self.state, ip)
            if N.is_unreachable(self.state, node):
                raise refused(ip)
            assert node is not None
            if not node.get("config") or node.get("cluster_id") != ep.get("cluster_id"):
                raise UNKNOWN_AUTHORITY
        self._faults(ip, command)
        return node

    def _faults(self, ip: str, command: str) -> None:
        with self.state.locked():
            hang = take_fault(self.state, ip, command, ("hang",))
            # The end of the hang is set under the lock that takes the fault, which `fleet clock`
            # takes too: whoever sees the fault used up and then moves the clock moves it after
            # this moment (else the advance could land before it and the hang outlive it).
            until = now() + float(hang.get("seconds", 0)) if hang else None
        if until is not None:
            # on the fleet clock: a frozen clock holds the call until a test advances it
            wait_until(until, self.state.root)
        with self.state.locked():
            err = take_fault(self.state, ip, command, ("error",))
        if err:
            raise RPC(err.get("code", "Unknown"), err.get("message", "injected failure"))

    def label(self, ip: str) -> str:
        """How a per-node error is prefixed: proxied calls carry the node, insecure ones not."""
        return "" if self.insecure else f"{ip}: "


def for_each(conn: Conn, command: str, fn: Any, wrap: str) -> None:
    """Run fn(node) per target; collect per-node errors into talosctl's multierror."""
    errs = []
    for ip in conn.nodes:
        try:
            node = conn.target(ip, command)
            fn(node)
        except RPC as e:
            if conn.insecure or e.code == "Unavailable" and conn.endpoint is None:
                raise Fail(f"{wrap}: {e}") from None
            errs.append(f"{conn.label(ip)}{e}")
    if errs:
        raise Fail(f"{wrap}: " + multierror(errs))


def single(conn: Conn, name: str) -> str:
    if len(conn.nodes) > 1:
        raise Fail(f'command "{name}" is not supported with multiple nodes')
    return conn.nodes[0]

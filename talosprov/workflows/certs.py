"""Certificate expiry of a cluster's client configs and CAs, and renewing the client configs.

observe (read the certificates: .state/<cluster>/talosconfig and kubeconfig, the CAs from the
decrypted bundle when a key is available) → pure report against a date → renew (a new
talosconfig from the bundle with `talosctl gen config --output-types talosconfig`, a new
kubeconfig with `talosctl kubeconfig`; both replace the old ones atomically, 0600, and are merged
into ~/.talos/config and ~/.kube/config as install does) → observe again.
"""

from __future__ import annotations

import base64
import datetime as dt
import logging
from dataclasses import dataclass
from pathlib import Path
from typing import TYPE_CHECKING

import yaml

from .. import localconfig, progress, secrets, yamlio
from ..errors import TalosProvError, WorkflowError
from ..model import Cluster, Repo
from ..tools.run import Program, run
from ..tools.talosctl import Talosctl
from ..yamlio import atomic_write
from .runtime import Journal, cluster_lock

if TYPE_CHECKING:
    from cryptography import x509

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Cert:
    name: str
    source: str
    subject: str
    not_after: dt.datetime


@dataclass(frozen=True)
class Row:
    name: str
    source: str
    subject: str
    expires: str
    days_left: int
    status: str  # ok | expiring | expired

    def as_dict(self) -> dict[str, str]:
        return {
            "name": self.name,
            "source": self.source,
            "subject": self.subject,
            "expires": self.expires,
            "days_left": str(self.days_left),
            "status": self.status,
        }


def _load(pem_b64: str | None) -> x509.Certificate | None:
    if not pem_b64:
        return None
    # here, not at the top: the day-2 tasks that import this module need no certificate parsed
    from cryptography import x509

    return x509.load_pem_x509_certificate(base64.b64decode(pem_b64))


def _cert(name: str, source: str, pem_b64: str | None) -> Cert | None:
    c = _load(pem_b64)
    if c is None:
        return None
    return Cert(name, source, c.subject.rfc4514_string(), c.not_valid_after_utc)


def observe(repo: Repo, cluster: Cluster) -> tuple[list[Cert], list[str]]:
    """The certificates that can be read now, and notes about those that cannot."""
    certs: list[Cert] = []
    notes: list[str] = []
    tc_path = localconfig.talosconfig_path(repo, cluster)
    kc_path = localconfig.kubeconfig_path(repo, cluster)
    if tc_path.exists():
        ctx = (yamlio.load(tc_path.read_text()).get("contexts") or {}).get(cluster.name) or {}
        c = _cert("talosconfig client", repo.rel(tc_path), ctx.get("crt"))
        certs += [c] if c else []
    else:
        notes.append(f"{repo.rel(tc_path)} does not exist (run `invoke install` or `--renew`)")
    if kc_path.exists():
        users = yamlio.load(kc_path.read_text()).get("users") or []
        pem = (users[0].get("user") or {}).get("client-certificate-data") if users else None
        c = _cert("kubeconfig client", repo.rel(kc_path), pem)
        certs += [c] if c else []
    else:
        notes.append(f"{repo.rel(kc_path)} does not exist (run `invoke kubeconfig`)")
    try:
        bundle = yamlio.load(secrets.decrypt(repo, cluster)) or {}
    except TalosProvError as e:
        notes.append(f"CAs not checked: {str(e).splitlines()[0]}")
        bundle = {}
    src = repo.rel(repo.secrets_file(cluster))
    for key, name in (("os", "Talos CA"), ("k8s", "Kubernetes CA"), ("etcd", "etcd CA")):
        c = _cert(
            name, f"{src} certs.{key}", ((bundle.get("certs") or {}).get(key) or {}).get("crt")
        )
        certs += [c] if c else []
    return certs, notes


def report(certs: list[Cert], at: dt.datetime, warn_days: int) -> list[Row]:
    """Each certificate against a date: ok, expiring (within warn_days) or expired. Pure."""
    rows = []
    for c in sorted(certs, key=lambda c: c.not_after):
        left = c.not_after - at
        days = int(left.total_seconds() // 86400)
        status = (
            "expired" if left.total_seconds() <= 0 else "expiring" if days < warn_days else "ok"
        )
        rows.append(
            Row(
                c.name,
                c.source,
                c.subject,
                c.not_after.strftime("%Y-%m-%d %H:%M UTC"),
                days,
                status,
            )
        )
    return rows


def nearest(repo: Repo, cluster: Cluster, at: dt.datetime) -> str:
    """`<name> in <n> days` for the certificate that expires first (for `invoke status`)."""
    certs, _ = observe(repo, cluster)
    if not certs:
        return "no certificates readable"
    r = report(certs, at, 0)[0]
    return f"{r.name} expires {r.expires} ({r.days_left} days)"


@dataclass
class RenewOutcome:
    talosconfig: Path
    kubeconfig: Path
    commands: list[str]


def renew(repo: Repo, cluster: Cluster, prog: Program, *, dry_run: bool = False) -> RenewOutcome:
    """A new admin talosconfig from the bundle and a new kubeconfig; atomic, 0600, merged."""
    tc_path = localconfig.talosconfig_path(repo, cluster)
    kc_path = localconfig.kubeconfig_path(repo, cluster)
    tc = Talosctl(tc_path)
    node = cluster.controlplanes[0].ip
    cmds = [
        "talosctl "
        + " ".join(
            Talosctl.gen_talosconfig(
                cluster.name,
                cluster.endpoint,
                Path("<private>/secrets.yaml"),
                Path("<private>/talosconfig"),
            )
        ),
        "talosctl " + " ".join(tc.kubeconfig(node, kc_path)),
    ]
    out = RenewOutcome(tc_path, kc_path, cmds)
    if dry_run:
        return out
    with cluster_lock(repo, cluster, "certs-renew"):
        journal = Journal(repo, cluster, "certs-renew")
        progress.phase("New talosconfig (admin) from the secrets bundle")
        with journal.step("talosconfig", None), secrets.private_dir() as tmp:
            bundle = secrets.decrypt_to(repo, cluster, tmp)
            # a single output type: --output names the file (talosctl gen config --help)
            gen = tmp / "talosconfig"
            run(prog, Talosctl.gen_talosconfig(cluster.name, cluster.endpoint, bundle.path, gen))
            new = yamlio.load(gen.read_text())
            ctx = dict(new["contexts"][new["context"]])
            ctx["endpoints"] = [n.ip for n in cluster.controlplanes]
            ctx.pop("nodes", None)
            text = yaml.safe_dump(
                {"context": cluster.name, "contexts": {cluster.name: ctx}},
                sort_keys=False,
                default_flow_style=False,
                indent=4,
            )
            atomic_write(tc_path, text, mode=0o600)
            localconfig.merge_operator_talosconfig(repo, cluster)
        progress.phase("New kubeconfig")
        with journal.step("kubeconfig", node):
            # talosctl writes the file; a half-written one must not replace the old one
            part = kc_path.with_name("kubeconfig.renew")
            run(prog, tc.kubeconfig(node, part), node=node, timeout=120)
            part.chmod(0o600)
            part.replace(kc_path)
            localconfig.merge_operator_kubeconfig(repo, cluster)
        certs, _ = observe(repo, cluster)
        if not any(c.name == "talosconfig client" for c in certs):
            raise WorkflowError(f"{repo.rel(tc_path)} has no client certificate after renewing")
    return out

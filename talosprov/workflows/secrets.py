"""Create, check and re-encrypt a cluster's secrets bundle; never replace one silently."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass

from .. import gitrepo, secrets
from ..errors import CommandFailed, SecretsError
from ..model import Cluster, Repo
from ..tools.run import Program, run
from ..tools.talosctl import CERT_REQUIRED, UNKNOWN_AUTHORITY, Talosctl

log = logging.getLogger(__name__)


def applied_ref(cluster: Cluster) -> str:
    return f"refs/applied/{cluster.name}"


def installed_evidence(repo: Repo, cluster: Cluster, prog: Program) -> str | None:
    """Why the cluster counts as installed (a PKI exists somewhere), or None."""
    if gitrepo.is_repo(repo.root) and gitrepo.ref(repo.root, applied_ref(cluster)):
        return f"{applied_ref(cluster)} exists in this repository"
    tc = Talosctl(repo.state_dir(cluster) / "talosconfig")

    def probe(ip: str) -> str | None:
        try:
            run(prog, tc.machinestatus(ip, insecure=True), timeout=15, node=ip)
        except CommandFailed as e:
            if CERT_REQUIRED in e.output or UNKNOWN_AUTHORITY in e.output:
                return f"node {ip} is configured (it refuses the maintenance API)"
        return None

    with ThreadPoolExecutor(max_workers=8) as pool:
        for why in pool.map(probe, [n.ip for n in cluster.nodes]):
            if why:
                return why
    return None


@dataclass(frozen=True)
class SecretsOutcome:
    action: str  # "exists" | "created" | "replaced" | "rotated"
    path: str


def ensure(repo: Repo, cluster: Cluster, prog: Program, *, replace: bool = False) -> SecretsOutcome:
    """The bundle exists and decrypts, or is created for a cluster that has no PKI yet."""
    path = repo.secrets_file(cluster)
    if cluster.emulated:
        secrets.ensure_demo_identity(repo)
    if path.exists() and not replace:
        secrets.decrypt(repo, cluster)  # fail now, with the reason, if it cannot be read
        return SecretsOutcome("exists", repo.rel(path))
    if not replace:
        why = installed_evidence(repo, cluster, prog)
        if why:
            raise SecretsError(
                f"{repo.rel(path)} is missing but {cluster.name} is already installed ({why}); "
                "refusing to create a new PKI. " + secrets.RESTORE_HINT.format(name=cluster.name)
            )
    with secrets.private_dir() as tmp:
        out = tmp / "secrets.yaml"
        run(prog, Talosctl.gen_secrets(out, cluster.talos_version))
        secrets.store(repo, cluster, out.read_bytes(), replace=replace)
    log.info(
        "%s %s (age-encrypted to %d recipient(s))",
        "replaced" if replace else "created",
        repo.rel(path),
        len(secrets.recipients(repo, cluster)),
    )
    return SecretsOutcome("replaced" if replace else "created", repo.rel(path))


def rotate(repo: Repo, cluster: Cluster) -> SecretsOutcome:
    if not secrets.rotate(repo, cluster):
        raise SecretsError(
            f"{repo.rel(repo.secrets_file(cluster))} does not exist; nothing to rotate"
        )
    return SecretsOutcome("rotated", repo.rel(repo.secrets_file(cluster)))

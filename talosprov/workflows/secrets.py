"""Create, check and re-encrypt a cluster's secrets bundle; never replace one silently."""

from __future__ import annotations

import logging
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass
from pathlib import Path

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
    action: str  # exists | created | replaced | rotated | would create | would replace | ...
    path: str
    commands: tuple[str, ...] = ()
    warning: str | None = None


def own_recipients(repo: Repo) -> list[tuple[str, str]]:
    """(where, public key) of the operator's own age identities (not the emulated clusters'
    local key)."""
    local = repo.rel(secrets.demo_key_path(repo))
    out = []
    for where, text in secrets.identity_sources(repo):
        if where == local:
            continue
        for ident in secrets._identities_from_text(text, where):
            out.append((where, str(ident.to_public())))  # type: ignore[attr-defined]
    return out


def self_check(repo: Repo, cluster: Cluster) -> str | None:
    """A warning when none of the operator's own identities is a recipient of the bundle: it
    would be written, but its author could not read it back."""
    if cluster.emulated:
        return None
    recs = set(secrets.recipients(repo, cluster))
    mine = own_recipients(repo)
    if any(pub in recs for _, pub in mine):
        return None
    rel = repo.rel(repo.secrets_file(cluster))
    if not mine:
        return (
            f"{rel} is encrypted to .age-recipients, but no age identity of yours was found "
            "(TALOSPROV_AGE_KEY_FILE, SOPS_AGE_KEY_FILE, SOPS_AGE_KEY, "
            "~/.config/sops/age/keys.txt): you will not be able to decrypt it"
        )
    where, pub = mine[0]
    return (
        f"your age identity ({where}) is not a recipient of {rel}: you will not be able to "
        f"decrypt it. Add {pub} to .age-recipients and run `invoke secrets "
        f"--rotate-recipients --cluster {cluster.name}` (a current recipient must run it)"
    )


def ensure(
    repo: Repo,
    cluster: Cluster,
    prog: Program,
    *,
    replace: bool = False,
    dry_run: bool = False,
) -> SecretsOutcome:
    """The bundle exists and decrypts, or is created for a cluster that has no PKI yet."""
    path = repo.secrets_file(cluster)
    rel = repo.rel(path)
    if cluster.emulated and not dry_run:
        secrets.ensure_demo_identity(repo)
    if path.exists() and not replace:
        if not dry_run:
            secrets.decrypt(repo, cluster)  # fail now, with the reason, if it cannot be read
        return SecretsOutcome("exists", rel)
    if not replace:
        why = installed_evidence(repo, cluster, prog)
        if why:
            raise SecretsError(
                f"{rel} is missing but {cluster.name} is already installed ({why}); "
                "refusing to create a new PKI. " + secrets.RESTORE_HINT.format(name=cluster.name)
            )
    warning = self_check(repo, cluster)
    gen = Talosctl.gen_secrets(Path("<private>") / "secrets.yaml", cluster.talos_version)
    if dry_run:
        return SecretsOutcome(
            "would be replaced" if replace else "would be created",
            rel,
            (prog.display(gen), f"(encrypt to the recipients of {_recipients_of(cluster)})"),
            warning,
        )
    with secrets.private_dir() as tmp:
        out = tmp / "secrets.yaml"
        run(prog, Talosctl.gen_secrets(out, cluster.talos_version))
        secrets.store(repo, cluster, out.read_bytes(), replace=replace)
    log.info(
        "%s %s (age-encrypted to %d recipient(s))",
        "replaced" if replace else "created",
        rel,
        len(secrets.recipients(repo, cluster)),
    )
    return SecretsOutcome("replaced" if replace else "created", rel, warning=warning)


def _recipients_of(cluster: Cluster) -> str:
    return "the local key .state/age/keys.txt" if cluster.emulated else secrets.RECIPIENTS_FILE


def rotate(repo: Repo, cluster: Cluster, *, dry_run: bool = False) -> SecretsOutcome:
    path = repo.secrets_file(cluster)
    if not path.exists():
        raise SecretsError(f"{repo.rel(path)} does not exist; nothing to rotate")
    if dry_run:
        return SecretsOutcome(
            "would be re-encrypted",
            repo.rel(path),
            (f"(decrypt, then encrypt to the recipients of {_recipients_of(cluster)})",),
            self_check(repo, cluster),
        )
    secrets.rotate(repo, cluster)
    return SecretsOutcome("rotated", repo.rel(path), warning=self_check(repo, cluster))


def rotate_all(
    repo: Repo, clusters: list[Cluster], *, dry_run: bool = False
) -> tuple[list[SecretsOutcome], list[tuple[str, str]]]:
    """Re-encrypt every existing bundle; returns (outcomes, [(cluster, why skipped)])."""
    done, skipped = [], []
    for cl in clusters:
        if cl.emulated:
            skipped.append((cl.name, "emulated: encrypted to the local key only"))
        elif not repo.secrets_file(cl).exists():
            skipped.append((cl.name, f"no bundle ({repo.rel(repo.secrets_file(cl))})"))
        else:
            done.append(rotate(repo, cl, dry_run=dry_run))
    return done, skipped

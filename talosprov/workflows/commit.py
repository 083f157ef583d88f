"""Commit a cluster's regenerated files for review, with a message that says what changed."""

from __future__ import annotations

import logging
from dataclasses import dataclass
from pathlib import Path

import yaml

from .. import gitrepo
from ..errors import SecretLeakError, TalosProvError
from ..model import Cluster, Repo
from ..scan import scan_paths

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class Snapshot:
    talos: str | None
    kubernetes: str | None
    files: dict[str, str]
    had_secrets: bool


def _versions(path: Path) -> tuple[str | None, str | None]:
    if not path.exists():
        return None, None
    doc = yaml.safe_load(path.read_text()) or {}
    image = ((doc.get("machine") or {}).get("install") or {}).get("image", "")
    kubelet = ((doc.get("machine") or {}).get("kubelet") or {}).get("image", "")
    return (image.rsplit(":", 1)[-1] or None, kubelet.rsplit(":", 1)[-1].lstrip("v") or None)


def snapshot(repo: Repo, cluster: Cluster) -> Snapshot:
    gen = repo.generated_dir(cluster)
    talos, k8s = _versions(gen / "controlplane.yaml")
    files = (
        {str(p.relative_to(gen)): p.read_text() for p in gen.rglob("*.yaml")}
        if gen.is_dir()
        else {}
    )
    return Snapshot(talos, k8s, files, repo.secrets_file(cluster).exists())


def message(repo: Repo, cluster: Cluster, before: Snapshot) -> str:
    after = snapshot(repo, cluster)
    parts = []
    if before.talos and after.talos and before.talos != after.talos:
        parts.append(f"Talos {before.talos} → {after.talos}")
    if before.kubernetes and after.kubernetes and before.kubernetes != after.kubernetes:
        parts.append(f"Kubernetes {before.kubernetes} → {after.kubernetes}")
    changed_nodes = [
        f for f in after.files if f.startswith("nodes/") and before.files.get(f) != after.files[f]
    ]
    removed = [f for f in before.files if f not in after.files and f.startswith("nodes/")]
    if not before.files:
        parts.append(f"generated configs for {len(cluster.nodes)} nodes")
    elif changed_nodes:
        parts.append(
            f"{len(changed_nodes)} node{'s' if len(changed_nodes) != 1 else ''} regenerated"
        )
    if removed:
        parts.append(f"{len(removed)} node config(s) removed")
    if not before.had_secrets and after.had_secrets:
        parts.append("new secrets bundle (age-encrypted)")
    return f"{cluster.name}: " + (", ".join(parts) if parts else "patches regenerated")


def commit(repo: Repo, cluster: Cluster, before: Snapshot) -> tuple[str | None, str]:
    """Commit exactly patches/<c>, generated/<c> and (when new) secrets/<c>.yaml.age."""
    root = repo.root
    if not gitrepo.is_repo(root):
        raise TalosProvError(f"{root} is not a git repository: cannot --commit")
    paths = [repo.rel(repo.patches_dir(cluster)), repo.rel(repo.generated_dir(cluster))]
    if repo.secrets_file(cluster).exists():
        paths.append(repo.rel(repo.secrets_file(cluster)))
    unrelated = [
        p for p in gitrepo.staged(root) if not any(p == q or p.startswith(q + "/") for q in paths)
    ]
    if unrelated:
        raise TalosProvError(
            "refusing to commit: unrelated files are staged ("
            + ", ".join(unrelated[:5])
            + "); commit or unstage them first (git restore --staged <file>)"
        )
    changed = gitrepo.dirty(root, paths)
    if not changed:
        return None, ""
    findings = scan_paths(root / p for p in changed if (root / p).exists())
    if findings:
        lines = "\n".join(f"  {f}" for f in findings[:10])
        raise SecretLeakError(f"refusing to commit: the scanner found secret material:\n{lines}")
    msg = message(repo, cluster, before)
    sha = gitrepo.commit_paths(root, paths, msg)
    log.info("committed %s", msg)
    return sha, msg

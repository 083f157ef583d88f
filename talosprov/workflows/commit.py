"""Commit a cluster's regenerated files for review, with a message that says what changed."""

from __future__ import annotations

import logging
import os
from dataclasses import dataclass
from pathlib import Path

from .. import gitrepo, yamlio
from ..errors import CommandFailed, SecretLeakError, TalosProvError
from ..model import Cluster, Repo
from ..scan import scan_paths
from ..tools.run import resolve, run
from .inputs import RECORD

log = logging.getLogger(__name__)


def _git(root: Path, *args: str, ok: tuple[int, ...] = (0,)) -> str:
    return run(resolve("git"), ["-C", str(root), *args], ok_codes=ok).stdout


def _versions(text: str | None) -> tuple[str | None, str | None]:
    """(Talos, Kubernetes) of a generated controlplane.yaml: the installer and kubelet tags."""
    if not text:
        return None, None
    doc = next(iter(yamlio.load_all(text)), None) or {}
    machine = doc.get("machine") or {}
    image = (machine.get("install") or {}).get("image", "")
    kubelet = (machine.get("kubelet") or {}).get("image", "")
    return (image.rsplit(":", 1)[-1] or None, kubelet.rsplit(":", 1)[-1].lstrip("v") or None)


def _head_text(root: Path, rel: str) -> str | None:
    try:
        return _git(root, "show", f"HEAD:{rel}")
    except CommandFailed:
        return None


def cluster_file(repo: Repo, cluster: Cluster) -> str | None:
    """clusters/<alias>.yaml of this cluster (repository-relative)."""
    for alias, path in repo.cluster_files().items():
        if alias == cluster.name or repo.load(alias).name == cluster.name:
            return repo.rel(path)
    return None


def inputs(repo: Repo, cluster: Cluster) -> list[str]:
    """The files that make the cluster's output: its cluster file and its own extra patches."""
    paths = [p for p in [cluster_file(repo, cluster)] if p]
    paths += list(cluster.patches) + [p for n in cluster.nodes for p in n.patches]
    return list(dict.fromkeys(paths))


def outputs(repo: Repo, cluster: Cluster) -> tuple[list[str], list[str]]:
    """(expected, unexpected) changed files under patches/<c>/ and generated/<c>/.

    generate writes only *.yaml there and removes the *.yaml it no longer produces, so after it
    ran every changed .yaml is its output; anything else is something it did not write.
    """
    folders = [repo.rel(repo.patches_dir(cluster)), repo.rel(repo.generated_dir(cluster))]
    expected: list[str] = []
    unexpected: list[str] = []
    for rel in gitrepo.dirty(repo.root, folders):
        # generate also writes its record of inputs (workflows/inputs.py)
        ok = rel.endswith(".yaml") or rel.endswith("/" + RECORD)
        (expected if ok else unexpected).append(rel)
    return expected, unexpected


def identity_problem(root: Path) -> str | None:
    """Why git cannot record an author and committer, or None."""
    missing = []
    for role in ("AUTHOR", "COMMITTER"):
        for part, key in (("NAME", "user.name"), ("EMAIL", "user.email")):
            if os.environ.get(f"GIT_{role}_{part}"):
                continue
            if _git(root, "config", "--get", key, ok=(0, 1)).strip():
                continue
            missing.append(key)
    if missing:
        keys = sorted(set(missing))
        return (
            f"git has no identity to commit with ({', '.join(keys)} unset): run "
            '`git config user.name "Your Name"` and `git config user.email you@example.com`'
        )
    return None


@dataclass(frozen=True)
class Change:
    talos: tuple[str | None, str | None]
    kubernetes: tuple[str | None, str | None]
    nodes_added: int
    nodes_changed: int
    nodes_removed: int
    first_generation: bool
    new_bundle: bool
    cluster_file: bool
    patches_only: bool


def describe(repo: Repo, cluster: Cluster, files: list[str]) -> Change:
    """What the commit of `files` changes, compared with HEAD."""
    root = repo.root
    gen = repo.rel(repo.generated_dir(cluster))
    cp = f"{gen}/controlplane.yaml"
    now = (root / cp).read_text() if (root / cp).exists() else None
    before_talos, before_k8s = _versions(_head_text(root, cp))
    after_talos, after_k8s = _versions(now)
    status = {
        line[3:]: line[:2]
        for line in _git(
            root, "status", "--porcelain", "--untracked-files=all", "--", gen
        ).splitlines()
        if line.strip()
    }
    nodes = {p: s for p, s in status.items() if p.startswith(f"{gen}/nodes/")}
    head_files = _git(root, "ls-tree", "-r", "--name-only", "HEAD", "--", gen, ok=(0, 128))
    secrets_rel = repo.rel(repo.secrets_file(cluster))
    return Change(
        talos=(before_talos, after_talos),
        kubernetes=(before_k8s, after_k8s),
        nodes_added=sum(1 for s in nodes.values() if "?" in s or "A" in s),
        nodes_changed=sum(1 for s in nodes.values() if "M" in s),
        nodes_removed=sum(1 for s in nodes.values() if "D" in s),
        first_generation=not head_files.strip(),
        new_bundle=secrets_rel in files and _head_text(root, secrets_rel) is None,
        cluster_file=any(f.startswith("clusters/") for f in files),
        patches_only=not status,
    )


def message(cluster: Cluster, ch: Change) -> str:
    """`talos-cloudkoffer-v3: Talos v1.7.0 → v1.7.4, 10 nodes regenerated`."""
    parts = []
    for what, (old, new) in (("Talos", ch.talos), ("Kubernetes", ch.kubernetes)):
        if old and new and old != new:
            parts.append(f"{what} {old} → {new}")
    plural = lambda n: "s" if n != 1 else ""  # noqa: E731
    if ch.first_generation:
        parts.append(f"generated configs for {len(cluster.nodes)} nodes")
    else:
        if ch.nodes_changed:
            parts.append(f"{ch.nodes_changed} node{plural(ch.nodes_changed)} regenerated")
        if ch.nodes_added:
            parts.append(f"{ch.nodes_added} node{plural(ch.nodes_added)} added")
        if ch.nodes_removed:
            parts.append(f"{ch.nodes_removed} node{plural(ch.nodes_removed)} removed")
    if ch.new_bundle:
        parts.append("new secrets bundle (age-encrypted)")
    if not parts:
        parts.append(
            "patches re-rendered, machine configs unchanged"
            if ch.patches_only
            else "machine configs regenerated"
        )
    if ch.cluster_file and not (ch.talos[0] != ch.talos[1] or ch.nodes_added or ch.nodes_removed):
        parts.append("cluster file updated")
    return f"{cluster.name}: " + ", ".join(parts)


def preflight(repo: Repo) -> None:
    """What must hold before generate runs with --commit (nothing staged or written yet)."""
    root = repo.root
    if not gitrepo.is_repo(root):
        raise TalosProvError(f"{root} is not a git repository: cannot --commit")
    problem = identity_problem(root)
    if problem:
        raise TalosProvError(f"cannot --commit: {problem}")


def commit(repo: Repo, cluster: Cluster) -> tuple[str | None, str]:
    """Commit the cluster's regenerated outputs and the inputs that caused them, nothing else:
    patches/<c>/*.yaml, generated/<c>/*.yaml, its cluster file, its extra patch files and (when
    new) its secrets bundle."""
    root = repo.root
    preflight(repo)
    expected, unexpected = outputs(repo, cluster)
    if unexpected:
        raise TalosProvError(
            "refusing to commit: these files are not written by `invoke generate` ("
            + ", ".join(unexpected[:5])
            + "); move or delete them, then re-run"
        )
    extra = inputs(repo, cluster)
    secrets_file = repo.secrets_file(cluster)
    if secrets_file.exists() and not cluster.emulated:
        extra.append(repo.rel(secrets_file))
    files = expected + (gitrepo.dirty(root, extra) if extra else [])
    staged = set(gitrepo.staged(root))
    unrelated = sorted(staged - set(files))
    if unrelated:
        raise TalosProvError(
            "refusing to commit: unrelated files are staged ("
            + ", ".join(unrelated[:5])
            + "); commit or unstage them first (git restore --staged <file>)"
        )
    if not files:
        return None, ""
    findings = scan_paths(root / p for p in files if (root / p).exists())
    if findings:
        lines = "\n".join(f"  {f}" for f in findings[:10])
        raise SecretLeakError(f"refusing to commit: the scanner found secret material:\n{lines}")
    msg = message(cluster, describe(repo, cluster, files))
    sha = gitrepo.commit_paths(root, files, msg)
    log.info("committed %s", msg)
    return sha, msg

"""Apply the current generated configs to running nodes (mTLS), only where they differ."""

from __future__ import annotations

import logging
from dataclasses import dataclass

from .. import localconfig, progress, render, secrets, yamlio
from ..errors import CommandFailed, WorkflowError
from ..model import Cluster, Node, Repo
from ..redact import bundle_values
from ..render import diff_folder
from ..tools.run import Program, run
from ..tools.talosctl import Talosctl
from . import generate as gen_wf
from .runtime import Journal, cluster_lock, parallel

log = logging.getLogger(__name__)


@dataclass(frozen=True)
class ApplyResult:
    ip: str
    action: str  # "unchanged" | "would change" | "applied (<details>)"
    diff: str


def _redact_text(text: str, values: dict[str, str]) -> str:
    for secret, path in values.items():
        if len(secret) >= 12:
            text = text.replace(secret, f"<secret:{path}>")
    return text


def apply(
    repo: Repo,
    cluster: Cluster,
    prog: Program,
    *,
    node: str | None,
    mode: str,
    dry_run: bool,
    workers: int = 5,
) -> list[ApplyResult]:
    targets = [cluster.node(node)] if node else cluster.nodes
    tc = Talosctl(localconfig.talosconfig_path(repo, cluster))
    journal = Journal(repo, cluster, "apply")
    values = bundle_values(yamlio.load(secrets.decrypt(repo, cluster)))
    # Apply exactly what was reviewed: refuse when patches/ or generated/ lag behind the sources.
    if render.check(repo, cluster):
        raise WorkflowError(
            f"patches/{cluster.name} is stale: run `invoke generate --cluster "
            f"{cluster.name}`, review and commit, then apply"
        )
    with cluster_lock(repo, cluster, "apply"), gen_wf.build(repo, cluster, prog) as b:
        stale = diff_folder(repo.generated_dir(cluster), f"generated/{cluster.name}", b.redacted)
        if stale:
            raise WorkflowError(
                f"generated/{cluster.name} is stale: run `invoke generate "
                f"--cluster {cluster.name}`, review and commit, then apply"
            )

        def one(n: Node) -> ApplyResult:
            cfg = b.config_for(n)
            try:
                res = run(
                    prog,
                    tc.apply_config(n.ip, cfg, insecure=False, mode=mode, dry_run=True),
                    node=n.ip,
                    timeout=60,
                )
            except CommandFailed as e:
                e.hint = "is the node running this cluster's config? (`invoke status`)"
                raise
            text = _redact_text(res.stderr, values)
            diff = text.split("Config diff:", 1)[-1].strip()
            if diff == "No changes.":
                return ApplyResult(n.ip, "unchanged", "")
            if dry_run:
                return ApplyResult(n.ip, "would change", diff)
            with journal.step("apply", n.ip, mode=mode):
                res = run(
                    prog,
                    tc.apply_config(n.ip, cfg, insecure=False, mode=mode),
                    node=n.ip,
                    timeout=120,
                )
            return ApplyResult(n.ip, f"applied ({res.stderr.strip().splitlines()[0]})", diff)

        progress.phase(f"Apply generated configs to {len(targets)} node(s) of {cluster.name}")
        return parallel(one, targets, workers)

"""Generate machine configs: render → gen config → per-node patch → validate → redact.

Full configs (with secrets) exist only inside a private folder for the length of a `build()`;
what is written to generated/<cluster>/ is redacted and byte-stable.
"""

from __future__ import annotations

import contextlib
import logging
import os
from collections.abc import Iterator
from concurrent.futures import ThreadPoolExecutor
from dataclasses import dataclass, field
from pathlib import Path
from typing import Any

from .. import progress, render, secrets, yamlio
from ..errors import SecretsError
from ..model import Cluster, Node, Repo
from ..redact import redact
from ..render import RenderedFile, diff_folder, unexpected_files, write_folder
from ..tools.run import Program, run
from ..tools.talosctl import Talosctl
from . import inputs as inputs_wf
from . import manifests

log = logging.getLogger(__name__)


@dataclass
class Build:
    """Full and redacted configs of one cluster, alive while the build context is open."""

    folder: Path
    role_configs: dict[str, Path]
    node_configs: dict[str, Path]  # hostname -> full config
    talosconfig: Path
    redacted: list[RenderedFile] = field(default_factory=list)

    def config_for(self, node: Node) -> Path:
        return self.node_configs[node.hostname]


def _patch_paths(repo: Repo, cluster: Cluster) -> tuple[list[Path], list[Path], list[Path]]:
    d = repo.patches_dir(cluster)
    extra = [repo.root / p for p in cluster.patches]
    return [d / "all.yaml", *extra], [d / "controlplane.yaml"], [d / "worker.yaml"]


@contextlib.contextmanager
def build(
    repo: Repo,
    cluster: Cluster,
    prog: Program,
    *,
    throwaway: bool = False,
    parallel: int | None = None,
) -> Iterator[Build]:
    """Build every config in a private folder; `throwaway` uses a fresh bundle (no keys).

    Processes: gen secrets (throwaway only), gen config, then per node `machineconfig patch`
    and `validate`, and one `validate` per role: 2 x nodes + 3 (+1), the per-node and role
    steps run concurrently, at most `parallel` (default: the cores) at a time.
    """
    workers = parallel or max(1, os.cpu_count() or 1)
    with secrets.private_dir(repo) as tmp:
        bundle_path = tmp / "secrets.yaml"
        if throwaway:
            run(prog, Talosctl.gen_secrets(bundle_path, cluster.talos_version))
        else:
            if not repo.secrets_file(cluster).exists():
                raise SecretsError(
                    f"{repo.rel(repo.secrets_file(cluster))} does not exist: run "
                    f"`invoke secrets --cluster {cluster.name}` first (or `invoke generate "
                    "--check`, which needs no keys)"
                )
            secrets.decrypt_to(repo, cluster, tmp)
        bundle: dict[str, Any] = yamlio.load(bundle_path.read_text())
        all_p, cp_p, w_p = _patch_paths(repo, cluster)
        gen = tmp / "gen"
        run(
            prog,
            Talosctl.gen_config(
                cluster.name,
                cluster.endpoint,
                secrets=bundle_path,
                out=gen,
                patches_all=all_p,
                patches_cp=cp_p,
                patches_worker=w_p,
                kubernetes_version=cluster.kubernetes_version,
                # the pinned contract, not the installed version (docs v1.13 "Reproducible
                # Machine Configuration"; pkg/machinery/config/contract.go)
                talos_version=cluster.contract_version(),
                install_image=cluster.installer_image(),
                install_disk=cluster.install.disk,
            ),
        )
        roles = {"controlplane": gen / "controlplane.yaml", "worker": gen / "worker.yaml"}
        nodes_dir = tmp / "nodes"
        nodes_dir.mkdir()

        def one(node: Node) -> tuple[str, Path]:
            out = nodes_dir / f"{node.hostname}.yaml"
            patches = [
                repo.patches_dir(cluster) / "nodes" / f"{node.hostname}.yaml",
                *[repo.root / p for p in node.patches],
            ]
            run(prog, Talosctl.machineconfig_patch(roles[node.role], patches, out))
            run(prog, Talosctl.validate(out), node=node.ip)
            return node.hostname, out

        with ThreadPoolExecutor(max_workers=workers) as pool:
            # every node's patch+validate and the role validates are independent of each other
            role_checks = [pool.submit(run, prog, Talosctl.validate(p)) for p in roles.values()]
            node_configs = dict(pool.map(one, cluster.nodes))
            for f in role_checks:
                f.result()
        for p in tmp.rglob("*"):  # talosctl writes its outputs 0644; nobody else may read them
            if p.is_file():
                p.chmod(0o600)
        b = Build(tmp, roles, node_configs, gen / "talosconfig")
        label = f"generated/{cluster.name}"
        for role, p in roles.items():
            b.redacted.append(
                RenderedFile(f"{role}.yaml", redact(p.read_text(), bundle, f"{label}/{role}.yaml"))
            )
        for host, p in sorted(node_configs.items()):
            rel = f"nodes/{host}.yaml"
            b.redacted.append(RenderedFile(rel, redact(p.read_text(), bundle, f"{label}/{rel}")))
        yield b


@dataclass
class GenerateResult:
    cluster: Cluster
    written: list[str]
    removed: list[str]
    unchanged: int
    patches_written: list[str]


def generate(
    repo: Repo,
    cluster: Cluster,
    prog: Program,
    *,
    throwaway: bool = False,
    allow_manifest_removal: bool = False,
    full: bool = False,
) -> GenerateResult:
    """Render, build and write the redacted configs (unchanged files are not rewritten).

    Nothing is built when generated/<cluster>/.inputs.json says the inputs and outputs are the
    ones of the last build (see inputs.py), unless `full`.
    """
    progress.phase(f"Generate {cluster.name}")
    rendered = render.render(repo, cluster)
    ins = inputs_wf.input_digests(repo, cluster, inputs_wf.talosctl_version(repo, prog))
    if not full and inputs_wf.unchanged(repo, cluster, ins):
        if not throwaway:
            # nothing to build, but the bundle must still open (in-process, no talosctl): an
            # operator without a key learns it now, not in the middle of the next change
            secrets.decrypt(repo, cluster)
        n = len(inputs_wf.output_digests(repo, cluster))
        log.info("%s: inputs and generated/ unchanged since the last generate", cluster.name)
        return GenerateResult(cluster, [], [], n, rendered.written)
    with build(repo, cluster, prog, throwaway=throwaway) as b:
        old = repo.generated_dir(cluster) / "controlplane.yaml"
        new = next(f for f in b.redacted if f.relpath == "controlplane.yaml")
        gone = manifests.guard(
            cluster,
            old.read_text() if old.exists() else None,
            new.text,
            allow=allow_manifest_removal,
            where=repo.rel(old),
        )
        for name, objs in gone.items():
            log.warning("inline manifest %s dropped; upgrade-k8s may delete: %s", name, objs)
        written, removed, unchanged = write_folder(repo.generated_dir(cluster), b.redacted)
        outs = inputs_wf.digests_of([(f.relpath, f.text) for f in b.redacted])
    inputs_wf.write_record(repo, cluster, inputs_wf.Record(ins, outs))
    for rel in written:
        log.info("wrote generated/%s/%s", cluster.name, rel)
    return GenerateResult(cluster, written, removed, unchanged, rendered.written)


def check(repo: Repo, cluster: Cluster, prog: Program, *, full: bool = False) -> str:
    """Diff of patches/ and generated/ against a regeneration with a throwaway bundle, and the
    files in them that generate would not write.

    Without `full`, an unchanged record (inputs.py) stands for the regeneration: nothing runs.
    """
    files = render.render_cluster(repo, cluster)
    pdir, plabel = repo.patches_dir(cluster), f"patches/{cluster.name}"
    diff = diff_folder(pdir, plabel, files)
    extra = unexpected_files(pdir, plabel, files)
    if diff:
        # generate from what the templates say now, without touching the repository
        return (
            diff + extra + "\n(generated/ not checked: patches/ are stale; run `invoke generate`)\n"
        )
    gdir, glabel = repo.generated_dir(cluster), f"generated/{cluster.name}"
    if not full:
        ins = inputs_wf.input_digests(repo, cluster, inputs_wf.talosctl_version(repo, prog))
        if inputs_wf.unchanged(repo, cluster, ins):
            return extra
    with build(repo, cluster, prog, throwaway=True) as b:
        return (
            extra
            + diff_folder(gdir, glabel, b.redacted)
            # the record is generate's own output too
            + unexpected_files(gdir, glabel, [*b.redacted, RenderedFile(inputs_wf.RECORD, "")])
        )

"""Render the Jinja patch templates of a cluster into patches/<cluster>/ (comments kept)."""

from __future__ import annotations

import difflib
import logging
import traceback
from dataclasses import dataclass
from pathlib import Path
from typing import Any

import jinja2

from .errors import TemplateError
from .model import Cluster, Node, Repo
from .yamlio import atomic_write, dump_rt, load_rt

log = logging.getLogger(__name__)

ROLE_TEMPLATES = ("all", "controlplane", "worker")
NODE_TEMPLATE = "node"
# Top-level keys of a Talos v1alpha1 strategic-merge patch document
# (https://www.talos.dev/v1.7/talos-guides/configuration/patching/).
V1ALPHA1_KEYS = {"version", "debug", "persist", "machine", "cluster"}


@dataclass(frozen=True)
class RenderedFile:
    relpath: str  # relative to patches/<cluster>/
    text: str


def _env(templates_dir: Path) -> jinja2.Environment:
    return jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
    )


def _template_error(repo: Repo, name: str, exc: Exception) -> TemplateError:
    path = repo.templates_dir / name
    lineno = getattr(exc, "lineno", None)
    if lineno is None:
        for frame in reversed(traceback.extract_tb(exc.__traceback__)):
            if frame.filename.endswith(name) or frame.filename == str(path):
                lineno = frame.lineno
                break
    where = f"{repo.rel(path)}:{lineno}" if lineno else repo.rel(path)
    msg = str(exc)
    if isinstance(exc, jinja2.UndefinedError):
        hint = "define it under `vars:` in the cluster file or fix the template"
        msg = f"undefined name: {msg} ({hint})"

    lines = [f"{where}: template error: {msg}"]
    if lineno and path.exists():
        src = path.read_text().splitlines()
        for i in range(max(1, lineno - 2), min(len(src), lineno + 2) + 1):
            mark = ">" if i == lineno else " "
            lines.append(f"  {mark} {i:4d} | {src[i - 1]}")
    return TemplateError("\n".join(lines))


def _render_one(repo: Repo, env: jinja2.Environment, name: str, ctx: dict[str, Any]) -> str:
    try:
        text = env.get_template(name).render(**ctx)
    except jinja2.TemplateNotFound:
        raise TemplateError(
            f"{repo.rel(repo.templates_dir / name)}: template missing; every fleet repository "
            f"needs templates/{{{','.join(ROLE_TEMPLATES)},{NODE_TEMPLATE}}}.yaml.j2"
        ) from None
    except jinja2.TemplateError as e:
        raise _template_error(repo, name, e) from None
    return _normalise(repo, name, text)


def _normalise(repo: Repo, name: str, text: str) -> str:
    """Parse the rendered text back, check it is a Talos patch, re-dump it (comments kept)."""
    source = f"{repo.rel(repo.templates_dir / name)} (rendered)"
    try:
        data = load_rt(text, source)
    except ValueError as e:
        raise TemplateError(f"{e}\nthe template rendered into invalid YAML") from None
    if data is None:
        return ""
    if not isinstance(data, dict):
        raise TemplateError(f"{source}: a Talos patch must be a mapping, got {type(data).__name__}")
    unknown = sorted(set(map(str, data)) - V1ALPHA1_KEYS)
    if unknown and not ("apiVersion" in data and "kind" in data):
        raise TemplateError(
            f"{source}: not a Talos strategic-merge patch: unknown top-level key(s) "
            f"{', '.join(unknown)} (allowed: {', '.join(sorted(V1ALPHA1_KEYS))})"
        )
    return dump_rt(data)


def render_cluster(repo: Repo, cluster: Cluster) -> list[RenderedFile]:
    """All patch files of a cluster, rendered in memory; nothing is written."""
    env = _env(repo.templates_dir)
    base = {"cluster": cluster, "vars": cluster.vars}
    out = [
        RenderedFile(f"{role}.yaml", _render_one(repo, env, f"{role}.yaml.j2", base))
        for role in ROLE_TEMPLATES
    ]
    for node in cluster.nodes:
        out.append(
            RenderedFile(f"nodes/{node.hostname}.yaml", render_node(repo, env, cluster, node))
        )
    return out


def render_node(repo: Repo, env: jinja2.Environment, cluster: Cluster, node: Node) -> str:
    ctx = {"cluster": cluster, "vars": cluster.vars, "node": node}
    return _render_one(repo, env, f"{NODE_TEMPLATE}.yaml.j2", ctx)


@dataclass
class RenderResult:
    cluster: Cluster
    written: list[str]
    removed: list[str]
    unchanged: int

    @property
    def changed(self) -> bool:
        return bool(self.written or self.removed)


def _existing(folder: Path) -> dict[str, str]:
    if not folder.is_dir():
        return {}
    return {
        str(p.relative_to(folder)): p.read_text()
        for p in sorted(folder.rglob("*.yaml"))
        if p.is_file()
    }


def diff_folder(folder: Path, label: str, files: list[RenderedFile]) -> str:
    """Unified diff between what is on disk under folder and what `files` says should be."""
    have = _existing(folder)
    want = {f.relpath: f.text for f in files}
    chunks: list[str] = []
    for rel in sorted(set(have) | set(want)):
        a, b = have.get(rel), want.get(rel)
        if a == b:
            continue
        chunks.extend(
            difflib.unified_diff(
                (a or "").splitlines(keepends=True),
                (b or "").splitlines(keepends=True),
                fromfile=f"a/{label}/{rel}" if a is not None else "/dev/null",
                tofile=f"b/{label}/{rel}" if b is not None else "/dev/null",
            )
        )
    return "".join(chunks)


def write_folder(folder: Path, files: list[RenderedFile]) -> tuple[list[str], list[str], int]:
    """Write changed files atomically and remove files no longer produced."""
    have = _existing(folder)
    written, unchanged = [], 0
    for f in files:
        if have.get(f.relpath) == f.text:
            unchanged += 1
            continue
        atomic_write(folder / f.relpath, f.text)
        written.append(f.relpath)
    wanted = {f.relpath for f in files}
    removed = [rel for rel in have if rel not in wanted]
    for rel in removed:
        (folder / rel).unlink()
    return written, removed, unchanged


def render(repo: Repo, cluster: Cluster) -> RenderResult:
    files = render_cluster(repo, cluster)
    written, removed, unchanged = write_folder(repo.patches_dir(cluster), files)
    for rel in written:
        log.info("wrote patches/%s/%s", cluster.name, rel)
    return RenderResult(cluster, written, removed, unchanged)


def check(repo: Repo, cluster: Cluster) -> str:
    """The diff that `render` would apply; empty when patches/ is up to date."""
    return diff_folder(
        repo.patches_dir(cluster), f"patches/{cluster.name}", render_cluster(repo, cluster)
    )

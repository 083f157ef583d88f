"""Render the Jinja patch templates of a cluster into patches/<cluster>/ (comments kept)."""

from __future__ import annotations

import difflib
import logging
import re
import secrets
import traceback
from dataclasses import dataclass, field
from pathlib import Path
from typing import TYPE_CHECKING, Any

from ruamel.yaml.comments import CommentedMap, CommentedSeq
from ruamel.yaml.tokens import CommentToken

from .errors import TemplateError
from .model import Cluster, Node, Repo
from .yamlio import atomic_write, brief, dump_rt, load_rt

# Jinja is imported where a template is rendered: install, apply and the day-2 workflows import
# this module and, when generated/ is current, render nothing (~20 ms of CPU per process).
if TYPE_CHECKING:
    import jinja2

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


@dataclass
class _Values:
    """Every value a template prints, replaced by a placeholder token while Jinja renders.

    The YAML structure of a patch thus comes from the template alone: the rendered text (tokens
    only) is parsed, and each token is then swapped for its value *inside* the parsed scalar (or
    comment). A value can never become a key, a list item or a second document, whatever
    characters it holds; the dumper quotes it as YAML needs. The nonce is random so that no
    template text or value can forge a token.
    """

    nonce: str = field(default_factory=lambda: secrets.token_hex(6))
    items: list[Any] = field(default_factory=list)

    @property
    def pattern(self) -> re.Pattern[str]:
        return re.compile(rf"tpv{self.nonce}n(\d+)e")

    def token(self, value: Any) -> str:
        import jinja2

        if isinstance(value, jinja2.Undefined):
            str(value)  # StrictUndefined raises here, inside the template: its line is known
        self.items.append(value)
        return f"tpv{self.nonce}n{len(self.items) - 1}e"

    def text(self, m: re.Match[str]) -> str:
        v = self.items[int(m.group(1))]
        if isinstance(v, dict | list):
            raise TemplateError(
                f"the list or mapping {brief(v)} can only fill a whole YAML value, not part of "
                "a string: print one of its items instead"
            )
        return str(v)


@dataclass
class _Env:
    """A Jinja environment and the values its current template printed."""

    values: _Values = field(default_factory=_Values)
    jinja: jinja2.Environment = field(init=False)  # set by _env (its finalize reads `values`)


def _env(templates_dir: Path) -> _Env:
    import jinja2

    env = _Env()
    env.jinja = jinja2.Environment(
        loader=jinja2.FileSystemLoader(str(templates_dir)),
        undefined=jinja2.StrictUndefined,
        keep_trailing_newline=True,
        autoescape=False,
        finalize=lambda v: env.values.token(v),
    )
    return env


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
    import jinja2

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


def _render_one(repo: Repo, env: _Env, name: str, ctx: dict[str, Any]) -> str:
    import jinja2

    env.values = _Values()
    try:
        text = env.jinja.get_template(name).render(**ctx)
    except jinja2.TemplateNotFound:
        raise TemplateError(
            f"{repo.rel(repo.templates_dir / name)}: template missing; every fleet repository "
            f"needs templates/{{{','.join(ROLE_TEMPLATES)},{NODE_TEMPLATE}}}.yaml.j2"
        ) from None
    except jinja2.TemplateError as e:
        raise _template_error(repo, name, e) from None
    return _normalise(repo, name, text, env.values)


def _normalise(repo: Repo, name: str, text: str, values: _Values | None = None) -> str:
    """Parse the rendered text back, put the values in, check it is a Talos patch, re-dump it
    (comments kept)."""
    values = values or _Values()
    source = f"{repo.rel(repo.templates_dir / name)} (rendered)"
    try:
        data = load_rt(text, source)
    except ValueError as e:
        msg = values.pattern.sub(lambda m: brief(values.text(m))[1:-1], str(e))
        raise TemplateError(f"{msg}\nthe template rendered into invalid YAML") from None
    try:
        data = _fill(data, values)
        _fill_comments(data, values)
    except TemplateError as e:
        raise TemplateError(f"{source}: {e}") from None
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
    out = dump_rt(data)
    if values.pattern.search(out):  # a place _fill does not reach: fail loudly, never half-filled
        raise TemplateError(f"{source}: a value could not be placed (template layout unsupported)")
    return out


def _fill(node: Any, values: _Values) -> Any:
    """The parsed template with every token replaced by its value (see _Values)."""
    if isinstance(node, CommentedMap):
        for k in list(node):
            node[k] = _fill(node[k], values)
            if isinstance(k, str) and values.pattern.search(k):
                _rename(node, k, _fill_text(k, values), values)
        return node
    if isinstance(node, CommentedSeq):
        for i, v in enumerate(node):
            node[i] = _fill(v, values)
        return node
    if isinstance(node, str):
        m = values.pattern.fullmatch(node)
        if m and type(node) is str:
            # a plain scalar that is exactly one value: the value itself, as data (an int stays
            # an int, a string that looks like a number or `true` gets quoted by the dumper)
            v = values.items[int(m.group(1))]
            return str(v) if isinstance(v, str) else v
        return _fill_text(node, values)
    return node


def _fill_text(s: str, values: _Values) -> str:
    if not values.pattern.search(s):
        return s
    text = values.pattern.sub(values.text, s)
    if type(s) is str:
        return text
    new = type(s)(text)  # keep the template's style: "quoted", |, >
    slots = getattr(type(s), "__slots__", ())
    for attr in (slots,) if isinstance(slots, str) else slots:
        if hasattr(s, attr):
            setattr(new, attr, getattr(s, attr))
    return new


def _rename(node: CommentedMap, old: str, new: str, values: _Values) -> None:
    if new in node:
        raise TemplateError(f"the key {brief(new)} appears twice")
    pos = list(node).index(old)
    comment = node.ca.items.pop(old, None)
    node.insert(pos, new, node.pop(old))
    if comment is not None:
        node.ca.items[new] = comment


def _fill_comments(node: Any, values: _Values) -> None:
    """Values printed into comments: on one line, or they would end the comment."""

    def fix(obj: Any) -> None:
        if isinstance(obj, CommentToken):

            def one_line(m: re.Match[str]) -> str:
                text = values.text(m)
                if any(ch in text for ch in "\r\n\x85\u2028\u2029"):
                    raise TemplateError(f"{brief(text)} in a comment must be on one line")
                return text

            obj.value = values.pattern.sub(one_line, obj.value)
        elif isinstance(obj, list | tuple):
            for x in obj:
                fix(x)

    if isinstance(node, CommentedMap | CommentedSeq):
        fix(node.ca.comment)
        fix(list(node.ca.items.values()))
        fix(node.ca.end)
        for child in node.values() if isinstance(node, CommentedMap) else node:
            _fill_comments(child, values)
    elif isinstance(node, str):
        fix(getattr(node, "comment", None))


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


def render_node(repo: Repo, env: _Env, cluster: Cluster, node: Node) -> str:
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


def unexpected_files(folder: Path, label: str, files: list[RenderedFile]) -> str:
    """One line per file under folder that `files` does not produce (a stale temporary file of
    a killed run, a hand-made file): `generate --check` fails on them, `--commit` skips them."""
    if not folder.is_dir():
        return ""
    wanted = {f.relpath for f in files}
    extra = sorted(
        str(p.relative_to(folder))
        for p in folder.rglob("*")
        if (p.is_file() or p.is_symlink()) and str(p.relative_to(folder)) not in wanted
    )
    return "".join(
        f"unexpected file {label}/{rel}: not produced by `invoke generate`; remove it\n"
        for rel in extra
    )


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
    """The diff that `render` would apply, and files it would not write; empty when patches/
    is up to date."""
    files = render_cluster(repo, cluster)
    folder, label = repo.patches_dir(cluster), f"patches/{cluster.name}"
    return diff_folder(folder, label, files) + unexpected_files(folder, label, files)

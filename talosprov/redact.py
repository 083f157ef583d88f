"""Replace every value that comes from the secrets bundle by a placeholder naming its source.

So generated/ is a pure function of clusters/, templates/ and the versions: a reviewer sees where
each secret goes (`<secret:certs.os.key>`) without seeing it, and CI can check it with a
throwaway bundle. See ../shared/design.md (Redaction).

The bytes written are those of ruamel's round trip (`_redact_rt`, the reference). Most configs
take a faster path with the same bytes (`_redact_fast`): libyaml's composer reads the text, and a
small writer that lays nodes out as ruamel does (`_Layout`) must give back the text exactly;
then only the scalars that change are written again. Whatever that path cannot vouch for
(comments, anchors, tags, flow collections, escapes, another indentation...) goes the ruamel way.
"""

from __future__ import annotations

import io
import re
from typing import Any

import yaml as pyyaml
from ruamel.yaml import YAML
from ruamel.yaml.resolver import implicit_resolvers
from ruamel.yaml.scalarstring import LiteralScalarString

from . import yamlio
from .errors import SecretLeakError
from .scan import scan_text

# A bundle value this long is also replaced inside longer strings (a manifest, a URL).
_EMBEDDED_MIN = 16


def bundle_values(bundle: dict[str, Any], prefix: str = "") -> dict[str, str]:
    """value -> dotted path in the bundle (certs.os.key, trustdinfo.token, ...)."""
    out: dict[str, str] = {}
    for k, v in bundle.items():
        path = f"{prefix}{k}"
        if isinstance(v, dict):
            out.update(bundle_values(v, path + "."))
        elif isinstance(v, str) and v:
            out[v] = path
    return out


def _yaml() -> YAML:
    y = YAML(typ="rt")
    # the layout talosctl writes (yaml.v3, 4 spaces, lists indented)
    y.indent(mapping=4, sequence=6, offset=4)
    y.width = 1 << 16
    y.preserve_quotes = True
    return y


def _redacted_str(node: str, values: dict[str, str]) -> str:
    if node in values:
        return f"<secret:{values[node]}>"
    # a bundle value embedded in a longer string (e.g. a manifest) is replaced in place
    if len(node) >= _EMBEDDED_MIN:
        for secret, path in values.items():
            if len(secret) >= _EMBEDDED_MIN and secret in node:
                node = node.replace(secret, f"<secret:{path}>")
    return node


def _walk(node: Any, values: dict[str, str]) -> Any:
    if isinstance(node, dict):
        for k in list(node):
            node[k] = _walk(node[k], values)
        return node
    if isinstance(node, list):
        for i, v in enumerate(node):
            node[i] = _walk(v, values)
        return node
    if isinstance(node, str):
        # ruamel keeps a quoted or literal value's style when a plain str is assigned over it
        # (CommentedMap.__setitem__, CommentedSeq.__setsingleitem__; ScalarString.replace)
        return _redacted_str(node, values)
    return node


def redacted(doc: Any, values: dict[str, str]) -> Any:
    """A parsed config with its bundle values replaced by placeholders, in place."""
    return _walk(doc, values)


def redacted_config(doc: Any, values: dict[str, str]) -> Any:
    """A parsed machine config redacted as `redact` redacts generated/ files (bundle values and
    the data of inline-manifest Secrets), in place: what a live config is compared as."""
    return _manifest_secrets(_walk(doc, values))


def redact_manifest_secrets(contents: str) -> str | None:
    """An inline manifest with the values of its Secret objects replaced by placeholders
    (`<redacted:secret kube-system/name:key>`), or None when it holds no Secret data.

    Inline manifests are applied as written (cluster.inlineManifests, Talos
    pkg/machinery/config/types/v1alpha1): a Secret there carries its data into generated/."""
    try:
        objs = yamlio.load_all(contents)
    except pyyaml.YAMLError:
        return None
    changed = False
    for o in objs:
        if not isinstance(o, dict) or o.get("kind") != "Secret":
            continue
        meta = o.get("metadata") or {}
        ident = f"{meta.get('namespace', 'default')}/{meta.get('name', '?')}"
        for field in ("data", "stringData"):
            if isinstance(o.get(field), dict) and o[field]:
                o[field] = {k: f"<redacted:secret {ident}:{k}>" for k in o[field]}
                changed = True
    if not changed:
        return None
    return pyyaml.safe_dump_all(objs, sort_keys=False, default_flow_style=False)


def _manifest_secrets(doc: Any) -> Any:
    cluster = doc.get("cluster") if isinstance(doc, dict) else None
    manifests = cluster.get("inlineManifests") if isinstance(cluster, dict) else None
    for m in manifests if isinstance(manifests, list) else []:
        if isinstance(m, dict) and isinstance(m.get("contents"), str):
            new = redact_manifest_secrets(m["contents"])
            if new is not None:
                m["contents"] = LiteralScalarString(new)
    return doc


def _redact_rt(config_text: str, values: dict[str, str]) -> str:
    """The reference: ruamel's round trip of the redacted documents."""
    y = _yaml()
    docs = list(y.load_all(config_text))
    buf = io.StringIO()
    y.dump_all([_manifest_secrets(_walk(d, values)) for d in docs if d is not None], buf)
    return buf.getvalue()


# -- the fast path -------------------------------------------------------------------------------
# Rules below restate ruamel.yaml 0.19's emitter (emitter.py: analyze_scalar, choose_scalar_style,
# write_plain, write_literal, determine_block_hints) for the one layout `_yaml()` writes, only as
# far as talosctl's output needs; anything else returns None and the ruamel path decides.
# tests/unit/test_redact.py holds both paths to the same bytes.


class _Unsure(Exception):
    """The fast path cannot vouch for ruamel's bytes here."""


# Characters every style below writes as themselves: printable, no tab, no line break, no BOM
# (analyze_scalar's "special characters"; U+0085, U+2028 and U+2029 are line breaks to it).
_PLAIN_CHARS = "\x20-\x7e\xa0-\u2027\u202a-\ud7ff\ue000-\ufefe\uff00-\ufffd"
# A whole text outside this set (CR, control characters, a BOM, astral characters) is left to
# the ruamel path: its reader refuses some, and its writer escapes others.
_ODD_CHAR = re.compile(f"[^\t\n{_PLAIN_CHARS}]")
_PLAIN_OK = re.compile(f"[{_PLAIN_CHARS}]+")
_LITERAL_OK = re.compile(f"[\t\n{_PLAIN_CHARS}]+")
# Not plain in block context (analyze_scalar's block_indicators), or where libyaml's and ruamel's
# scanners could disagree (a leading ? or :), or leading/trailing space: quoted by ruamel.
_NOT_PLAIN = re.compile(
    r"""[\s#,\[\]{}&*!|>'"%@`?:]|-(?:\s|\Z)|---|\.\.\.|.*(?::(?:\s|\Z)|\s#|\s\Z)"""
)
# Plain scalars that are not strings and that ruamel writes back as read (bool, decimal int).
# Ints stay short: ruamel converts them with int(), which refuses more than
# sys.get_int_max_str_digits() digits (ValueError), and that limit can be set lower.
_BOOL_INT = re.compile(r"true|false|0|-?[1-9][0-9]{0,17}")
# ruamel writes no line longer than its width (1 << 16); scalars stay far below it here.
_MAX_SCALAR = 30000
# ruamel writes a longer key as a complex key (`? key`): Emitter.MAX_SIMPLE_KEY_LENGTH is 128.
_MAX_KEY = 100
# Deeper than this is no machine config; the ruamel path takes it (and its own recursion limit).
_MAX_INDENT = 400
# libyaml's composer; without libyaml every text takes the ruamel path.
_COMPOSER: Any = getattr(pyyaml, "CSafeLoader", None) if pyyaml.__with_libyaml__ else None


def _implicit_1_2() -> dict[str, list[Any]]:
    """YAML 1.2 implicit resolvers (bool, int, float, null, timestamp, ...) by first character,
    as ruamel's VersionedResolver applies them to plain scalars (patterns compiled lazily)."""
    table: dict[str, list[Any]] = {}
    for versions, _tag, regexp, first in implicit_resolvers:
        if (1, 2) in versions:
            for ch in first:
                table.setdefault(ch, []).append(regexp)
    return table


_IMPLICIT = _implicit_1_2()


def _is_str(v: str) -> bool:
    """Whether a plain scalar `v` reads as a string in ruamel (and so is written plain)."""
    return not any(r.match(v) for r in _IMPLICIT.get(v[:1], ()))


def _plain_ok(v: str) -> bool:
    """Whether ruamel writes the string `v` as a plain scalar, unchanged, in block context."""
    return (
        0 < len(v) <= _MAX_SCALAR
        and _PLAIN_OK.fullmatch(v) is not None
        and _NOT_PLAIN.match(v) is None
        and _is_str(v)
    )


def _scalar(value: str, style: str, indent: int) -> str:
    """How ruamel writes a string scalar of this (kept) style after `key: ` or `- `, with its
    line break; `indent` is where a literal block's lines start."""
    if style == "":
        if _plain_ok(value):
            return value + "\n"
    elif style in "'\"":
        if not value or (len(value) <= _MAX_SCALAR and _PLAIN_OK.fullmatch(value)):
            if style == "'":
                return "'" + value.replace("'", "''") + "'\n"
            if '"' not in value and "\\" not in value:
                return '"' + value + '"\n'
    elif (
        style == "|"
        and value
        and _LITERAL_OK.fullmatch(value)
        # no indentation indicator (a leading space or break) and no keep chomping (`|+`)
        # (determine_block_hints); choose_scalar_style keeps `|` whatever analyze_scalar found
        and value[0] not in " \n"
        and not value.endswith("\n\n")
    ):
        body = value[:-1] if value.endswith("\n") else value
        lines = [(" " * indent + line if line else "") for line in body.split("\n")]
        return ("|\n" if value.endswith("\n") else "|-\n") + "\n".join(lines) + "\n"
    raise _Unsure


class _Layout:
    """Writes composed documents as ruamel does with `_yaml()`'s settings, keeping the slot of
    every string value so that it can be written again with another value."""

    def __init__(self) -> None:
        self.parts: list[str] = []
        # (index in parts, node, style, literal indent) of every string value
        self.slots: list[tuple[int, Any, str, int]] = []

    def document(self, node: Any) -> None:
        if not isinstance(node, pyyaml.MappingNode) or node.flow_style or not node.value:
            raise _Unsure
        self.mapping(node, 0, inline=False)

    def mapping(self, node: Any, indent: int, *, inline: bool) -> None:
        if indent > _MAX_INDENT:
            raise _Unsure
        seen: set[str] = set()
        for i, (k, v) in enumerate(node.value):
            key = k.value if isinstance(k, pyyaml.ScalarNode) and k.style == "" else None
            if key is None or len(key) > _MAX_KEY or not _plain_ok(key) or key in seen:
                raise _Unsure  # ruamel refuses duplicate keys (DuplicateKeyError)
            seen.add(key)
            self.parts.append(key + ":" if inline and i == 0 else " " * indent + key + ":")
            if isinstance(v, pyyaml.ScalarNode) and v.value == "" and not v.style:
                self.parts.append("\n")  # an empty value (null): ruamel writes `key:`, as read
            elif isinstance(v, pyyaml.ScalarNode):
                self.parts.append(" ")
                self.scalar(v, indent + 4)
            elif v.flow_style or not v.value:
                if v.value or not v.flow_style:
                    raise _Unsure
                self.parts.append(" {}\n" if isinstance(v, pyyaml.MappingNode) else " []\n")
            elif isinstance(v, pyyaml.MappingNode):
                self.parts.append("\n")
                self.mapping(v, indent + 4, inline=False)
            else:
                self.parts.append("\n")
                self.sequence(v, indent + 4)

    def sequence(self, node: Any, dash: int) -> None:
        for item in node.value:
            self.parts.append(" " * dash + "- ")
            if isinstance(item, pyyaml.ScalarNode):
                self.scalar(item, dash + 2)  # a literal block's lines start under its `|`
            elif isinstance(item, pyyaml.MappingNode) and not item.flow_style and item.value:
                self.mapping(item, dash + 2, inline=True)
            else:
                raise _Unsure

    def scalar(self, node: Any, indent: int) -> None:
        v, style = node.value, node.style or ""
        if style == "" and not _is_str(v):
            if not _BOOL_INT.fullmatch(v):
                raise _Unsure
            self.parts.append(v + "\n")
            return
        self.slots.append((len(self.parts), node, style, indent))
        self.parts.append(_scalar(v, style, indent))


def _node_get(node: Any, key: str) -> Any:
    if isinstance(node, pyyaml.MappingNode):
        for k, v in node.value:
            if k.value == key:
                return v
    return None


def _redact_fast(config_text: str, values: dict[str, str]) -> str | None:
    """`_redact_rt`'s bytes without ruamel, or None when this path cannot vouch for them."""
    if _COMPOSER is None or not config_text.endswith("\n") or _ODD_CHAR.search(config_text):
        return None
    try:
        docs = list(pyyaml.compose_all(str(config_text), Loader=_COMPOSER))
    except (pyyaml.YAMLError, RecursionError, ValueError):
        return None  # whatever libyaml refuses, ruamel reads (or reports in its own words)
    layout = _Layout()
    try:
        for i, doc in enumerate(docs):
            if i:
                layout.parts.append("---\n")
            layout.document(doc)
        if not docs or "".join(layout.parts) != config_text:
            return None
        # today's redaction on the values, then Secret data in inline manifests (_walk, then
        # _manifest_secrets on the walked values)
        new = {id(n): _redacted_str(n.value, values) for _, n, _, _ in layout.slots}
        literal: set[int] = set()
        for doc in docs:
            manifests = _node_get(_node_get(doc, "cluster"), "inlineManifests")
            for m in manifests.value if isinstance(manifests, pyyaml.SequenceNode) else []:
                c = _node_get(m, "contents")
                if id(c) in new:
                    text = redact_manifest_secrets(new[id(c)])
                    if text is not None:
                        new[id(c)] = text
                        literal.add(id(c))
        for at, node, style, indent in layout.slots:
            if id(node) in literal:
                layout.parts[at] = _scalar(new[id(node)], "|", indent)
            elif new[id(node)] != node.value:
                layout.parts[at] = _scalar(new[id(node)], style, indent)
    except (_Unsure, RecursionError):
        return None
    return "".join(layout.parts)


def redact(config_text: str, bundle: dict[str, Any], where: str) -> str:
    """The redacted config; raises SecretLeakError if anything secret-shaped survives."""
    values = bundle_values(bundle)
    text = _redact_fast(config_text, values)
    if text is None:
        text = _redact_rt(config_text, values)
    findings = scan_text(text, where)
    if findings:
        lines = "\n".join(f"  {f}" for f in findings[:10])
        raise SecretLeakError(
            f"refusing to write {where}: secret-shaped values survived redaction:\n{lines}\n"
            "keep secrets out of templates and cluster files (they belong in the age-encrypted "
            "bundle), or report a redaction gap"
        )
    return text

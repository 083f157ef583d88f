"""The documentation comments `talosctl gen config --with-docs` writes into a machine config
(upgrade-k8s --with-docs re-encodes node configs with the same encoder).

pkg/machinery/config/encoder/encoder.go `addToMap` (v1.7.0 .. v1.14.0-rc.1) gives every field
the LineComment of its docgen doc, which tools/docgen/main.go `parseComment` takes from the first
line of the field's description: a scalar value carries it as a line comment
(`key: value # text`), a mapping or sequence value (flow `{}`/`[]` included) as a head comment
line above the key. Map entries get none (`addToMap(node, nil, ...)`), nor do the inline
`apiVersion`/`kind` of the meta.Meta documents, nor the document itself (real talosctl
v1.7.1 output starts `version: v1alpha1 # Indicates ...`).

The texts come from the published JSON schema of the talosctl release, whose
`markdownDescription` is the same description (checked: the first lines equal the docgen
LineComments of every field of the v1.7.0 and v1.14.0-rc.1 *_doc.go files). Fields the schema
hides (docgen:nodoc) have no field doc upstream, so they get no comment here either; upstream
they fall back to the doc of their Go type (`mergeDoc`), which the schema does not carry: a
known gap for deprecated struct fields kept under an old contract.
"""

from __future__ import annotations

import io
import re
from typing import Any

from ruamel.yaml import YAML
from ruamel.yaml.comments import CommentedMap, CommentedSeq

from . import releases

_META = ("apiVersion", "kind")


def _resolve(s: dict[str, Any] | None, root: dict[str, Any]) -> dict[str, Any]:
    s = s or {}
    while "$ref" in s:
        s = root["$defs"].get(s["$ref"].split("/")[-1], {})
    return s


def _doc_def(doc: dict[str, Any], root: dict[str, Any]) -> dict[str, Any]:
    if "kind" not in doc:
        return dict(root["$defs"].get("v1alpha1.Config", {}))
    kind = doc["kind"]
    for d in root["$defs"].values():
        enum = ((d.get("properties") or {}).get("kind") or {}).get("enum") or []
        # the v1.14.0-rc.1 schema names UnattendedInstallConfig's kind UnattendedInstall
        if kind in enum or kind.removesuffix("Config") in enum:
            return dict(d)
    return {}


def _line(prop: dict[str, Any]) -> str:
    return str(prop.get("markdownDescription") or "").split("\n")[0].strip()


def _value_schema(s: dict[str, Any], key: str, root: dict[str, Any]) -> tuple[dict[str, Any], str]:
    """The schema of a mapping's value under `key`, and the key's comment ("" for map entries)."""
    props = s.get("properties") or {}
    if key in props:
        return props[key], _line(props[key])
    pattern = s.get("patternProperties")
    if pattern:
        return next(iter(pattern.values())), ""
    addl = s.get("additionalProperties")
    return (addl if isinstance(addl, dict) else {}), ""


def _build(node: Any, s: dict[str, Any], root: dict[str, Any], literal: Any, meta: bool) -> Any:
    s = _resolve(s, root)
    if isinstance(node, dict):
        out = CommentedMap()
        for k, v in node.items():
            sub, text = _value_schema(s, k, root)
            if meta and k in _META:
                text = ""
            out[k] = _build(v, sub, root, literal, False)
            if not text:
                continue
            if isinstance(v, dict | list):
                out.yaml_set_comment_before_after_key(k, before=text, indent=0)
            elif isinstance(v, str) and "\n" in v:
                # ruamel writes it below the block; _block_line_comments moves it up
                out.yaml_add_eol_comment(f"# {_BLOCK}{text}", k, column=0)
            else:
                out.yaml_add_eol_comment(f"# {text}", k, column=0)
        return out
    if isinstance(node, list):
        return CommentedSeq(_build(v, s.get("items") or {}, root, literal, False) for v in node)
    return literal(node)


# ruamel writes a head comment on the first key of a sequence item below a bare `-`; yaml.v3
# writes it after the dash (`- # text`, encoder_test.go v1.14.0-rc.1 L416-421)
_DASH_HEAD = re.compile(r"^( *)-\n( +)# (.*)\n", re.M)


_BLOCK = "\x01"  # marks the line comment of a block scalar
_BLOCK_HEAD = re.compile(r": [|>][-+]?\d*$")


def _block_line_comments(text: str) -> str:
    """The line comment of a block scalar after its indicator (`key: | # text`), as yaml.v3
    writes it; ruamel writes it as a line below the block."""
    lines = text.split("\n")
    out: list[str] = []
    for line in lines:
        mark = line.find("# " + _BLOCK)
        if mark < 0:
            out.append(line)
            continue
        comment = line[mark + 2 + len(_BLOCK) :]
        before = line[:mark].rstrip()
        for i in range(len(out) - 1, -1, -1):
            if _BLOCK_HEAD.search(out[i]):
                out[i] += f" # {comment}"
                break
        if before:
            out.append(before)
    return "\n".join(out)


def _indent_heads(text: str) -> str:
    """Head comments at their key's column (ruamel writes them where `indent` says)."""
    lines = text.split("\n")
    for i in range(len(lines) - 2, -1, -1):
        if lines[i].startswith("#"):
            j = i + 1
            while j < len(lines) and lines[j].startswith("#"):
                j += 1
            if j < len(lines):
                col = len(lines[j]) - len(lines[j].lstrip(" "))
                lines[i] = " " * col + lines[i]
    return "\n".join(lines)


def encode(docs: list[Any], talosctl: str, literal: Any) -> str:
    """`docs` (already in Go field order) as yaml.v3 writes them with docs comments on."""
    root = releases.exact_schema(releases.minor_of(talosctl))
    y = YAML(typ="rt")
    y.indent(mapping=4, sequence=6, offset=4)
    y.width = 1 << 16
    out = []
    for d in docs:
        built = _build(d, _doc_def(d, root), root, literal, meta="kind" in d)
        buf = io.StringIO()
        y.dump(built, buf)
        text = _indent_heads(_block_line_comments(buf.getvalue()))
        out.append(_DASH_HEAD.sub(lambda m: f"{m[1]}- # {m[3]}\n", text))
    return "---\n".join(out)
